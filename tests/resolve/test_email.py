from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentmw.resolve.email import (
    capture_fields,
    claimed_email_from_header,
    normalize_email,
)


def _address(length: int) -> str:
    """A valid-looking address of exactly ``length`` characters."""
    domain_length = length - 65
    return "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * (domain_length - 132) + ".com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("alice@example.com", "alice@example.com", id="plain"),
        pytest.param("Alice.Smith@Example.COM", "alice.smith@example.com", id="lower-cased"),
        pytest.param("  bob@example.org ", "bob@example.org", id="spaces-stripped"),
        pytest.param("a+tag@mail.example.co.uk", "a+tag@mail.example.co.uk", id="plus-tag"),
        pytest.param("o'neil@example.ie", "o'neil@example.ie", id="apostrophe"),
        pytest.param("x@b\u00fccher.example", "x@xn--bcher-kva.example", id="idn-to-a-label"),
        pytest.param("x@B\u00dcCHER.example", "x@xn--bcher-kva.example", id="idn-upper"),
        pytest.param("x@xn--bcher-kva.example", "x@xn--bcher-kva.example", id="a-label-kept"),
        pytest.param("x@123.example", "x@123.example", id="numeric-label"),
        pytest.param("a" * 64 + "@example.com", "a" * 64 + "@example.com", id="local-64"),
        pytest.param("a" * 65 + "@example.com", None, id="local-65"),
        pytest.param("a@" + "b" * 63 + ".com", "a@" + "b" * 63 + ".com", id="label-63"),
        pytest.param(_address(254), _address(254), id="address-254"),
        pytest.param(_address(255), None, id="address-255"),
        pytest.param("a@" + "b" * 64 + ".com", None, id="label-64"),
        pytest.param("a@" + ".".join(["b" * 60] * 5) + ".com", None, id="address-over-254"),
        pytest.param("alice@example.com\r\nBcc: x@y.z", None, id="crlf-injection"),
        pytest.param("alice@example.com\n", None, id="trailing-lf"),
        pytest.param("ali\x00ce@example.com", None, id="nul"),
        pytest.param("alice\t@example.com", None, id="tab"),
        pytest.param("alice@exa\u2028mple.com", None, id="line-separator"),
        pytest.param("Alice <alice@example.com>", None, id="display-name"),
        pytest.param("<alice@example.com>", None, id="angle-brackets"),
        pytest.param("alice@example.com (Alice)", None, id="comment"),
        pytest.param("alice(x)@example.com", None, id="comment-in-local"),
        pytest.param('"alice smith"@example.com', None, id="quoted-local"),
        pytest.param("a@b@example.com", None, id="two-ats"),
        pytest.param("@example.com", None, id="empty-local"),
        pytest.param("alice@", None, id="empty-domain"),
        pytest.param("alice", None, id="no-at"),
        pytest.param("alice@localhost", None, id="dotless-domain"),
        pytest.param("alice@example.com.", None, id="trailing-dot"),
        pytest.param("alice@example..com", None, id="empty-label"),
        pytest.param(".alice@example.com", None, id="leading-dot-local"),
        pytest.param("al..ice@example.com", None, id="double-dot-local"),
        pytest.param("alice@-example.com", None, id="leading-hyphen-label"),
        pytest.param("alice@exam_ple.com", None, id="underscore-label"),
        pytest.param("alice@[192.0.2.1]", None, id="domain-literal"),
        pytest.param("alice@192.0.2.1", None, id="numeric-tld"),
        pytest.param("alice@xn--a-ecp.com", None, id="bad-punycode"),
        pytest.param("j\u00f6rg@example.de", None, id="non-ascii-local"),
        pytest.param("alice@ex ample.com", None, id="space-in-domain"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param("a@" + "b" * 5000 + ".com", None, id="huge"),
    ],
)
def test_normalize_email(text: str | None, expected: str | None) -> None:
    assert normalize_email(text) == expected


def test_normalised_address_is_a_fixed_point() -> None:
    first = normalize_email("Z\u00fcrich@Z\u00dcRICH.example")
    assert first is None  # non-ASCII local part
    first = normalize_email("Info@Z\u00dcRICH.example")
    assert first == "info@xn--zrich-kva.example"
    assert normalize_email(first) == first


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("googlebot@googlebot.com", "googlebot@googlebot.com", id="bare"),
        pytest.param("Bingbot <bingbot@microsoft.com>", None, id="display-name-rejected"),
        pytest.param("googlebot(at)googlebot.com", None, id="obfuscated"),
        pytest.param("a@b.example\r\nX: y", None, id="crlf"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_claimed_email_from_header(header: str | None, expected: str | None) -> None:
    assert claimed_email_from_header(header) == expected


@pytest.mark.parametrize(
    ("form", "fields", "expected"),
    [
        pytest.param(
            {"email": ["a@b.example", "second"], "password": ["x"]},
            ["email"],
            {"email": "a@b.example"},
            id="first-value-only-configured",
        ),
        pytest.param({"email": []}, ["email"], {}, id="no-values"),
        pytest.param({"email": [""]}, ["email"], {}, id="empty-value"),
        pytest.param({}, ["email"], {}, id="absent"),
        pytest.param({"email": "whole"}, ["email"], {"email": "whole"}, id="bare-string"),
        pytest.param({"n": [b"bytes"]}, ["n"], {}, id="not-text"),
        pytest.param({"n": 5}, ["n"], {}, id="not-a-sequence"),
        pytest.param({"n": ["x" * 5000]}, ["n"], {"n": "x" * 1000}, id="capped"),
    ],
)
def test_capture_fields(
    form: dict[str, object], fields: list[str], expected: dict[str, str]
) -> None:
    assert capture_fields(form, fields) == expected  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_normalize_email_never_raises_and_is_idempotent(text: str) -> None:
    result = normalize_email(text)
    if result is not None:
        assert result == result.lower()
        assert result.isascii()
        assert len(result) <= 254
        assert normalize_email(result) == result


@given(
    local=st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9+_-]{1,10}){0,2}", fullmatch=True),
    labels=st.lists(
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
    ),
    tld=st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
def test_valid_addresses_survive_in_any_case(local: str, labels: list[str], tld: str) -> None:
    address = f"{local}@{'.'.join([*labels, tld])}"
    assert normalize_email(address.upper()) == address

"""Cookie header parsing and Set-Cookie rendering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw.cookies import (
    CookieNames,
    CookieWriter,
    find_cookies,
    is_deletion,
    parent_domains,
    set_cookie_name,
    split_cookie_header,
)

NAMES = ("cmw_prefs", "cmw_session", "cmw_cart")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, {}, id="missing"),
        pytest.param("", {}, id="empty"),
        pytest.param(";;;", {}, id="semicolons"),
        pytest.param("cmw_prefs=abc", {"cmw_prefs": ["abc"]}, id="plain"),
        pytest.param('cmw_prefs="abc"', {"cmw_prefs": ["abc"]}, id="quoted"),
        pytest.param("a=1; cmw_prefs=x; cmw_prefs=y", {"cmw_prefs": ["x", "y"]}, id="duplicates"),
        pytest.param("CMW_PREFS=x; Cmw_Prefs=y", {}, id="case-variants-ignored"),
        pytest.param(
            'bad"cookie; {=}; cmw_cart=c; x', {"cmw_cart": ["c"]}, id="malformed-neighbours"
        ),
        pytest.param("cmw_prefs", {}, id="no-equals"),
        pytest.param("  cmw_session =  s1  ", {"cmw_session": ["s1"]}, id="spaces"),
        pytest.param("cmw_prefs=\xc3\xa9\xff", {"cmw_prefs": ["\xc3\xa9\xff"]}, id="latin1-bytes"),
    ],
)
def test_find_cookies(header: str | None, expected: dict[str, list[str]]) -> None:
    assert find_cookies(header, NAMES) == expected


def test_huge_header_is_capped() -> None:
    header = "x=" + "a" * 200_000 + "; cmw_prefs=late"
    assert find_cookies(header, NAMES) == {}


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=400))
def test_parsers_never_raise(header: str) -> None:
    found = find_cookies(header, NAMES)
    assert set(found) <= set(NAMES)
    split_cookie_header(header)
    set_cookie_name(header)
    is_deletion(header, 0.0)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        pytest.param("a=1; Path=/", "a", id="simple"),
        pytest.param(" _ga_X = 1", "_ga_X", id="spaces"),
        pytest.param("novalue", "", id="no-equals-is-empty-name"),
        pytest.param("=x", "", id="empty-name"),
        pytest.param("a=b=c", "a", id="equals-in-value"),
    ],
)
def test_set_cookie_name(value: str, name: str) -> None:
    assert set_cookie_name(value) == name


@pytest.mark.parametrize(
    ("value", "deleted"),
    [
        pytest.param("a=; Max-Age=0", True, id="max-age-0"),
        pytest.param("a=; max-age=-1", True, id="negative"),
        pytest.param("a=1; Max-Age=10", False, id="positive"),
        pytest.param("a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", True, id="past-expires"),
        pytest.param("a=1; Expires=Thu, 01 Jan 2099 00:00:00 GMT", False, id="future-expires"),
        pytest.param(
            "a=1; Max-Age=10; Expires=Thu, 01 Jan 1970 00:00:00 GMT", False, id="max-age-wins"
        ),
        pytest.param("a=1", False, id="plain"),
        pytest.param("a=1; Expires=garbage", False, id="bad-date"),
        pytest.param("a=x; Max-Age=0; Max-Age=31536000", False, id="last-max-age-wins"),
        pytest.param("a=x; Max-Age=-1; Max-Age=31536000", False, id="last-max-age-wins-neg"),
        pytest.param("a=x; Max-Age=31536000; Max-Age=0", True, id="last-max-age-deletes"),
        pytest.param("a=x; Max-Age=0; Max-Age=soon", True, id="invalid-max-age-ignored"),
        pytest.param("a=x; Max-Age=abc", False, id="only-invalid-max-age"),
        pytest.param(
            "a=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Expires=Thu, 01 Jan 2099 00:00:00 GMT",
            False,
            id="last-expires-wins",
        ),
    ],
)
def test_is_deletion(value: str, deleted: bool) -> None:
    assert is_deletion(value, 1_800_000_000.0) is deleted


def test_names_get_prefixes_when_secure() -> None:
    assert CookieNames.for_settings(secure=False, domain=None).all == NAMES
    assert CookieNames.for_settings(secure=True, domain=None).all == (
        "__Host-cmw_prefs",
        "__Host-cmw_session",
        "__Host-cmw_cart",
    )
    assert (
        CookieNames.for_settings(secure=True, domain=".example.test").prefs == "__Secure-cmw_prefs"
    )


def test_delete_uses_the_same_attributes_as_set() -> None:
    w = CookieWriter(secure=True, samesite="Lax", path="/", domain="example.test")
    set_attrs = {
        a.split("=")[0].strip().lower()
        for a in w.set("__Secure-cmw_prefs", "v", max_age=10, shared=True).split(";")[1:]
    }
    del_value = w.delete("__Secure-cmw_prefs", shared=True)
    del_attrs = {a.split("=")[0].strip().lower() for a in del_value.split(";")[1:]}
    assert set_attrs == del_attrs
    assert "Domain=example.test" in del_value and "Max-Age=0" in del_value
    host = w.set("__Host-cmw_session", "v", max_age=None)
    assert "Domain" not in host and "Path=/" in host and "Secure" in host and "HttpOnly" in host


def test_parent_domains() -> None:
    assert parent_domains("a.shop.example.test:8000", ".example.test") == [
        None,
        "example.test",
        "a.shop.example.test",
        "shop.example.test",
    ]
    assert parent_domains("127.0.0.1:5000", None) == [None]
    assert parent_domains("[::1]:80", None) == [None]
    assert parent_domains("localhost", None) == [None]

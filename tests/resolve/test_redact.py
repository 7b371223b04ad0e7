from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw.events import Event
from consentmw.resolve.redact import (
    TRUNCATED,
    Redactor,
    card_brand,
    luhn_valid,
    normalize_phone,
    redact_emails,
    redact_text,
)

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"


def make_event(**fields: Any) -> Event:
    base: dict[str, Any] = {
        "id": "e1",
        "type": "action",
        "name": "checkout",
        "ts": "2026-03-01T00:00:00.000000Z",
        "site": "shop.example.test",
        "policy_version": "2014-12-12",
        "purposes": ("analytics",),
    }
    base.update(fields)
    return Event(**base)


# -- an independent checker -------------------------------------------------------------------


def card_windows(text: str) -> Iterator[str]:
    """Every span of whole digit groups with 13-19 digits, in every maximal run of digits
    separated by single spaces or dashes (the module's definition, written out plainly)."""
    for run in re.finditer(r"\d(?:[ -]?\d)*", text, flags=re.ASCII):
        groups = re.split(r"[ -]", run.group())
        for i in range(len(groups)):
            for j in range(i, len(groups)):
                digits = "".join(groups[i : j + 1])
                if 13 <= len(digits) <= 19:
                    yield digits


def has_valid_card(text: str) -> bool:
    return any(luhn_valid(d) for d in card_windows(text))


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


# -- Luhn, brands, text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        pytest.param(VISA, True, id="visa"),
        pytest.param("4111111111111112", False, id="visa-off-by-one"),
        pytest.param(AMEX, True, id="amex"),
        pytest.param("79927398713", True, id="textbook"),
        pytest.param("0", True, id="zero"),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("digits", "brand"),
    [
        pytest.param("4012888888881881", "visa", id="visa"),
        pytest.param("5105105105105100", "mastercard", id="mastercard-51"),
        pytest.param("2223003122003222", "mastercard", id="mastercard-2-series"),
        pytest.param("371449635398431", "amex", id="amex"),
        pytest.param("6011000990139424", "discover", id="discover-6011"),
        pytest.param("6445644564456445", "discover", id="discover-644"),
        pytest.param("30569309025904", "diners", id="diners-305"),
        pytest.param("36227206271667", "diners", id="diners-36"),
        pytest.param("3566002020360505", "jcb", id="jcb"),
        pytest.param("6200000000000005", "unionpay", id="unionpay"),
        pytest.param("9999999999999995", "card", id="unknown"),
        pytest.param("12", "card", id="too-short"),
    ],
)
def test_card_brand(digits: str, brand: str) -> None:
    assert card_brand(digits) == brand


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"card {VISA} ok", "card visa ****1111 ok", id="plain"),
        pytest.param("4111 1111 1111 1111", "visa ****1111", id="spaces"),
        pytest.param("4111-1111-1111-1111", "visa ****1111", id="dashes"),
        pytest.param("3782 822463 10005", "amex ****0005", id="amex-grouping"),
        pytest.param(f"{VISA}/{MASTERCARD}", "visa ****1111/mastercard ****4444", id="two"),
        pytest.param("4111 1111 1111 1111 123", "visa ****1111 123", id="card-then-cvc"),
        pytest.param("12 4111 1111 1111 1111", None, id="digits-before-card"),
        pytest.param("4111111111111112", "4111111111111112", id="fails-luhn"),
        # Only single separators join groups (the documented definition): two spaces end a run,
        # leaving runs of 4 and 12 digits.
        pytest.param("4111  1111 1111 1111", "4111  1111 1111 1111", id="double-space-splits"),
        pytest.param("411111111111", "411111111111", id="twelve-digits"),
        pytest.param("12345678901234567890123", "12345678901234567890123", id="long-id"),
        pytest.param("tel +49 30 1234567", "tel +49 30 1234567", id="phone"),
        pytest.param("", "", id="empty"),
    ],
)
def test_redact_text(text: str, expected: str | None) -> None:
    result = redact_text(text)
    if expected is not None:
        assert result == expected
    assert not has_valid_card(result)
    if "  " not in text:
        assert VISA not in result.replace(" ", "").replace("-", "")


def test_redact_text_leaves_no_card_even_when_masks_form_new_runs() -> None:
    # The mask's last four digits followed by more digit groups can form a new valid run;
    # redaction repeats until there is none.
    text = "4111 1111 1111 1111 " + " ".join(["4242"] * 12)
    assert not has_valid_card(redact_text(text))


def test_redact_text_on_a_huge_string_is_linear_enough() -> None:
    text = ("a1 " * 200_000) + VISA
    assert redact_text(text).endswith("visa ****1111")


# -- phones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("+1 (555) 010-9999", "+15550109999", id="e164-formatted"),
        pytest.param("030 / 123.456-78", "03012345678", id="national"),
        pytest.param("0049 30 12345678", "00493012345678", id="international-prefix"),
        pytest.param(5550109999, "5550109999", id="int"),
        pytest.param("+1234", None, id="too-short"),
        pytest.param("+1234567890123456", None, id="over-e164"),
        pytest.param("1" * 19, None, id="absurd"),
        pytest.param("555-1234 ext 5", None, id="extension"),
        pytest.param("++49 30 1234567", None, id="two-pluses"),
        pytest.param("call me", None, id="words"),
        pytest.param(True, None, id="bool"),
        pytest.param(None, None, id="none"),
    ],
)
def test_normalize_phone(value: object, expected: str | None) -> None:
    assert normalize_phone(value) == expected


# -- the redactor -------------------------------------------------------------------------------


def test_secret_keys_are_dropped_anywhere_in_props() -> None:
    event = make_event(
        props={
            "Password": "hunter2",
            "user": {"API-Key": "k", "apiKey": "k", "name": "Ann", "tokens": ["a"]},
            "items": [{"csrf_token": "x", "sku": "A1"}, {"session_id": "s", "qty": 2}],
            "X-Authorization": "Bearer x",
            "card_cvc": "123",
            "cvv2": "123",
            "pin": "0000",
            "shipping": "express",
            "author": "Ann",
        }
    )
    Redactor().redact(event)
    assert event.props == {
        "user": {"name": "Ann"},
        "items": [{"sku": "A1"}, {"qty": 2}],
        "shipping": "express",
        "author": "Ann",
    }


@pytest.mark.parametrize(
    ("purposes", "kept"),
    [
        pytest.param(("analytics",), set(), id="neither-purpose"),
        pytest.param(("marketing",), {"phone"}, id="marketing-keeps-phone"),
        pytest.param(("necessary", "marketing"), {"phone", "billing_address"}, id="both"),
    ],
)
def test_personal_fields_follow_the_events_purposes(
    purposes: tuple[str, ...], kept: set[str]
) -> None:
    event = make_event(
        purposes=purposes,
        props={"phone": "+1 555 010 9999", "billing_address": "1 Main St", "sku": "A1"},
        path="/checkout?phone=%2B15550109999&sku=A1",
    )
    Redactor().redact(event)
    assert set(event.props) == kept | {"sku"}
    assert ("phone=" in (event.path or "")) is ("phone" in kept)
    if "phone" in kept:
        assert event.props["phone"] == "+15550109999"


def test_configured_field_purposes_replace_the_defaults() -> None:
    redactor = Redactor(field_purposes={"Street": ["billing"]})
    event = redactor.redact(make_event(purposes=("analytics",), props={"street": "x"}))
    assert event.props == {}
    event = redactor.redact(make_event(purposes=("billing",), props={"street": "x"}))
    assert event.props == {"street": "x"}


def test_an_unusable_phone_is_removed() -> None:
    event = make_event(purposes=("marketing",), props={"phone": "call me maybe"})
    assert Redactor().redact(event).props == {}


def test_cards_are_redacted_in_every_string_and_number() -> None:
    event = make_event(
        props={
            "note": f"paid with {VISA}",
            VISA: "as a key",
            "nested": [{"deep": [f"{MASTERCARD}"]}, int(AMEX), float(VISA)],
            "amount": 12.5,
            "count": 3,
        }
    )
    Redactor().redact(event)
    assert event.props == {
        "note": "paid with visa ****1111",
        "visa ****1111": "as a key",
        "nested": [{"deep": ["mastercard ****4444"]}, "amex ****0005", "visa ****1111"],
        "amount": 12.5,
        "count": 3,
    }


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/shop/cart", "/shop/cart", id="plain"),
        pytest.param(
            "/pay?card=4111+1111+1111+1111&sku=A1",
            "/pay?card=visa+****1111&sku=A1",
            id="plus-separated-card",
        ),
        pytest.param(
            f"/cards/{quote('4111 1111 1111 1111')}/edit",
            "/cards/visa%20****1111/edit",
            id="card-in-path",
        ),
        pytest.param(
            "/login?next=/a&password=x&Token=y&api_key=z&sku=1",
            "/login?next=/a&sku=1",
            id="secret-params-removed",
        ),
        pytest.param("/cb?code=abc&state=1", "/cb?state=1", id="oauth-code-removed"),
        pytest.param("/p#access_token=abc&x=1", "/p#x=1", id="fragment-token-removed"),
        pytest.param("/p?", "/p?", id="empty-query"),
    ],
)
def test_paths(path: str, expected: str) -> None:
    assert Redactor().redact(make_event(path=path)).path == expected


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        pytest.param(
            "https://user:pw@partner.example/p?q=1",
            "https://partner.example/p?q=1",
            id="credentials-removed",
        ),
        pytest.param(
            "https://search.example/?q=4111-1111-1111-1111&session=s",
            "https://search.example/?q=visa+****1111",
            id="card-and-session",
        ),
        pytest.param("https://[::1/x?token=1", "https://[::1/x", id="unparseable-loses-query"),
        pytest.param("not a url at all", "not a url at all", id="junk-kept-as-text"),
    ],
)
def test_referrers(referrer: str, expected: str) -> None:
    assert Redactor().redact(make_event(referrer=referrer)).referrer == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/unsubscribe/alice@example.com", "/unsubscribe/[email]", id="raw"),
        pytest.param("/reset/alice%40example.com", "/reset/[email]", id="encoded"),
        pytest.param("/reset/alice%2540example.com/x", "/reset/[email]/x", id="encoded-twice"),
        pytest.param(
            # Card redaction re-encodes the path: the address must not come back as "%40".
            f"/u/alice@example.com/{quote('4111 1111 1111 1111')}",
            "/u/[email]/visa%20****1111",
            id="with-a-card",
        ),
        pytest.param(
            "/list?email=alice%40example.com&page=2&bob@example.org=1",
            "/list?email=[email]&page=2&[email]=1",
            id="query-values-and-names",
        ),
        pytest.param(
            "/confirm?to=alice+news%40mail.example.co.uk",
            "/confirm?to=[email]",
            id="plus-in-query",
        ),
        pytest.param("/p#alice@example.com", "/p#[email]", id="fragment"),
        pytest.param(
            "/cdn/npm/react@18.2.0/umd/x.js", "/cdn/npm/react@18.2.0/umd/x.js", id="version-pin"
        ),
        pytest.param("/@alice.example/posts", "/@alice.example/posts", id="handle"),
        pytest.param("/users/[email]/orders", "/users/[email]/orders", id="already-redacted"),
    ],
)
def test_addresses_in_paths_become_a_marker(path: str, expected: str) -> None:
    assert Redactor().redact(make_event(path=path)).path == expected
    assert redact_emails(expected) == expected


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        pytest.param(
            "https://mail.example/reset/alice%40example.com?u=bob@example.org",
            "https://mail.example/reset/[email]?u=[email]",
            id="path-and-query",
        ),
        pytest.param("mailto:alice@example.com", "[email]", id="mailto"),
        pytest.param(
            "https://[::1/x/alice@example.com?token=1", "https://[::1/x/[email]", id="unparseable"
        ),
    ],
)
def test_addresses_in_referrers_become_a_marker(referrer: str, expected: str) -> None:
    assert Redactor().redact(make_event(referrer=referrer)).referrer == expected


def test_properties_keep_the_addresses_the_operator_chose_to_record() -> None:
    # Properties are the operator's choice (a captured "email" moves to the email field);
    # only URLs, which nobody chooses to fill with addresses, are searched.
    event = Redactor().redact(make_event(props={"contact": "alice@example.com"}))
    assert event.props == {"contact": "alice@example.com"}


def test_deep_nesting_is_cut_with_a_marker() -> None:
    value: Any = "bottom"
    for _ in range(50):
        value = {"d": value}
    event = Redactor(max_depth=4).redact(make_event(props={"v": value}))
    assert event.props == {"v": {"d": {"d": {"d": TRUNCATED}}}}


def test_cycles_and_huge_containers_are_cut() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    big = list(range(5000))
    event = Redactor(max_items=100).redact(make_event(props={"loop": loop, "big": big}))
    assert event.props["big"][-1] == TRUNCATED
    assert len(event.props["big"]) == 101
    event.to_json()  # serialisable: the cycle is gone


def test_huge_strings_are_capped_after_redaction() -> None:
    text = "x" * 4090 + VISA + "y" * 100_000
    event = Redactor(max_string=4096).redact(make_event(props={"t": text}))
    assert event.props["t"] == "x" * 4090 + "visa ****1111"[:6] + TRUNCATED
    assert not has_valid_card(event.props["t"])


def test_cutting_a_long_number_cannot_leave_a_card() -> None:
    # The first 16 digits of this 30-digit id pass Luhn: cut at 16, they would be a card.
    number = VISA + "0" * 14
    event = Redactor(max_string=16).redact(make_event(props={"t": number}))
    assert not has_valid_card(event.props["t"])


def test_hostile_objects_never_raise() -> None:
    class BadStr:
        def __str__(self) -> str:
            raise RuntimeError("no")

    class BadMapping(dict[str, Any]):
        def items(self) -> Any:
            raise RuntimeError("no")

    event = Redactor().redact(
        make_event(
            props={
                "obj": BadStr(),
                "bytes": b"4111111111111111",
                "set": {1},
                "nan": float("nan"),
                "inf": float("-inf"),
                "huge": 10**400,
                3: "int key",
                None: "none key",
            }
        )
    )
    assert event.props == {
        "obj": "[unrepresentable]",
        "bytes": "visa ****1111",
        "set": [1],
        "nan": None,
        "inf": None,
        "huge": TRUNCATED,
        "3": "int key",
        "None": "none key",
    }
    event.to_json()
    failing = Redactor().redact(make_event(props=BadMapping(a=VISA)))
    assert failing.props == {TRUNCATED: True}


def test_unreadable_purposes_remove_every_purpose_bound_field() -> None:
    event = make_event(props={"phone": "+15550109999", "sku": "A1"})
    event.purposes = None  # type: ignore[assignment]
    assert Redactor().redact(event).props == {"sku": "A1"}


def test_redact_returns_the_same_event() -> None:
    event = make_event(props={"a": 1})
    assert Redactor()(event) is event


# -- properties -------------------------------------------------------------------------------


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


@st.composite
def written_card(draw: st.DrawFn) -> tuple[str, str]:
    """A card number as people write it: grouped by spaces or dashes, or not at all."""
    digits = draw(card_numbers())
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return digits, digits
    groups = []
    rest = digits
    while rest:
        size = draw(st.integers(1, 6))
        groups.append(rest[:size])
        rest = rest[size:]
    return digits, sep.join(groups)


# Text around an embedded card ends (and starts) with a character that is not a digit, so
# the card stays a number of its own rather than part of a longer one.
around = st.text(max_size=30).map(lambda s: s + "|")


@st.composite
def text_with_card(draw: st.DrawFn) -> tuple[str, str]:
    digits, written = draw(written_card())
    return digits, draw(around) + written + draw(around)[::-1]


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    text_with_card().map(lambda pair: pair[1]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=12), children, max_size=5),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(cards=st.lists(text_with_card(), min_size=1, max_size=4), extra=json_values)
def test_no_card_survives_in_any_string_of_the_output(
    cards: list[tuple[str, str]], extra: Any
) -> None:
    props = {f"field{i}": text for i, (_, text) in enumerate(cards)}
    props["nested"] = {"list": [text for _, text in cards], "extra": extra}
    event = make_event(
        props=props,
        path="/p/" + quote(cards[0][1]) + "?q=" + quote_plus(cards[-1][1]),
        referrer="https://ref.example/?q=" + quote(cards[0][1], safe=""),
    )
    Redactor().redact(event)
    outputs = [*strings_in(event.props), event.path or "", event.referrer or ""]
    for text in outputs:
        assert not has_valid_card(text), text
    joined = " ".join(s.replace(" ", "").replace("-", "") for s in outputs)
    for digits, _ in cards:
        assert digits not in joined
    json.loads(event.to_json())


@settings(max_examples=300, deadline=None)
@given(props=st.dictionaries(st.text(max_size=20), json_values, max_size=8), text=st.text())
def test_redact_never_raises_and_stays_serialisable(props: dict[str, Any], text: str) -> None:
    event = make_event(props=props, path=text, referrer=text)
    Redactor().redact(event)
    json.loads(event.to_json())
    for value in strings_in(event.props):
        assert not has_valid_card(value)


@given(st.text())
def test_redact_text_never_raises(text: str) -> None:
    assert not has_valid_card(redact_text(text))


# -- e-mail addresses in URLs -----------------------------------------------------------------

# A simple e-mail address, as the checker below finds them.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")

addresses = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,10}", fullmatch=True),
    st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,8}", fullmatch=True), min_size=1,
             max_size=3),
    st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True),
)  # fmt: skip


@st.composite
def hidden_address(draw: st.DrawFn) -> str:
    """An address with text around it, as it is, percent-encoded once or twice."""
    text = draw(st.text(max_size=8)) + draw(addresses) + draw(st.text(max_size=8))
    encode = draw(
        st.sampled_from(
            [
                lambda t: t,
                lambda t: quote(t, safe=""),
                lambda t: quote(quote(t, safe=""), safe=""),
                lambda t: quote_plus(t),
                lambda t: quote(t, safe="@"),
            ]
        )
    )
    encoded: str = encode(text)
    return encoded


def addresses_in(text: str) -> list[str]:
    """The addresses in ``text`` as it is and decoded again and again."""
    found = []
    for _ in range(4):
        found += EMAIL.findall(text)
        text = unquote(text)
    return found


@settings(max_examples=300, deadline=None)
@given(
    segments=st.lists(hidden_address() | st.text(max_size=10), min_size=1, max_size=4),
    query=st.lists(st.tuples(hidden_address(), hidden_address()), max_size=3),
    fragment=hidden_address(),
    card=text_with_card(),
    props=st.dictionaries(st.text(max_size=12), json_values, max_size=4),
)
def test_no_address_survives_in_a_path_or_referrer(
    segments: list[str],
    query: list[tuple[str, str]],
    fragment: str,
    card: tuple[str, str],
    props: dict[str, Any],
) -> None:
    path = "/" + "/".join([*segments, quote(card[1])])
    if query:
        path += "?" + "&".join(f"{name}={value}" for name, value in query)
    path += "#" + fragment
    event = make_event(path=path, referrer="https://ref.example" + path, props=props)
    redactor = Redactor()
    redactor.redact(event)
    for text in (event.path or "", event.referrer or "", *strings_in(event.props)):
        assert addresses_in(text) == [], text
        assert not has_valid_card(text)
    # Redacting again changes nothing.
    again = redactor.redact(make_event(path=event.path, referrer=event.referrer))
    assert (again.path, again.referrer) == (event.path, event.referrer)
    json.loads(event.to_json())


@given(st.lists(st.text(max_size=12) | hidden_address(), max_size=5), st.text("/?#&=;"))
def test_redact_emails_leaves_no_address_and_is_idempotent(parts: list[str], sep: str) -> None:
    once = redact_emails(sep.join(parts))
    assert addresses_in(once) == []
    assert redact_emails(once) == once

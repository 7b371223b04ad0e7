"""Opt-out tokens, links and the page at ``<mount>/optout/<token>``."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

import consentmw
from consentmw.rights import OptoutTokenError, OptoutTokens
from consentmw.signing import KeyRing
from tests.core.support import Clock

from .conftest import NEW_KEY, OLD_KEY, app, site_config

DAY = 86400.0
PURPOSES = frozenset({"necessary", "analytics", "marketing"})
THIRD_KEY = "rights-third-key-0123456789abcdef"


def tokens(clock: Clock, *keys: str, max_age_days: float = 60) -> OptoutTokens:
    return OptoutTokens(
        KeyRing(list(keys or [OLD_KEY])),
        max_age_days=max_age_days,
        purposes=PURPOSES,
        clock=clock,
    )


def reason(signer: OptoutTokens, token: Any, channel: str | None = None) -> str:
    with pytest.raises(OptoutTokenError) as info:
        signer.loads(token, channel)
    return info.value.reason


# ---------------------------------------------------------------------------- tokens


def test_round_trip_per_channel(clock: Clock) -> None:
    signer = tokens(clock)
    found = signer.loads(signer.dumps(" Alice@Example.COM ", "email", "marketing"))
    assert (found.address, found.channel, found.purpose) == (
        "alice@example.com",
        "email",
        "marketing",
    )
    found = signer.loads(signer.dumps("+1 (555) 010-9999", "phone"), "phone")
    assert (found.address, found.channel, found.purpose) == ("+15550109999", "phone", None)
    assert found.signed_at == int(clock.now)


def test_dumps_refuses_what_it_cannot_sign(clock: Clock) -> None:
    signer = tokens(clock)
    for args in (
        ("nobody",),
        ("a@b.example", "fax"),
        ("a@b.example", "email", "nonsense"),
        ("12", "phone"),
    ):
        with pytest.raises(ValueError):
            signer.dumps(*args)


def test_a_token_for_one_channel_does_not_pass_for_the_other(clock: Clock) -> None:
    signer = tokens(clock)
    phone = signer.dumps("+15550109999", "phone")
    email = signer.dumps("alice@example.com", "email")
    assert reason(signer, phone, "email") == "invalid"
    assert reason(signer, email, "phone") == "invalid"
    assert signer.loads(phone).channel == "phone"  # any channel: the one it was made for


def test_tampered_tokens_do_not_verify(clock: Clock) -> None:
    signer = tokens(clock)
    token = signer.dumps("alice@example.com")
    body, ts, sig = token.split(".")
    forged = signer.dumps("mallory@example.com").split(".")[0]
    for bad in (
        f"{forged}.{ts}.{sig}",  # someone else's address under this signature
        f"{body}.{ts}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}",
        f"{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{ts}.{sig}",
        f"{body}.{ts}",
        "",
        "....",
        None,
        42,
        "x" * 5000,
    ):
        assert reason(signer, bad) == "invalid"


def test_an_expired_token_is_told_apart(clock: Clock) -> None:
    signer = tokens(clock)
    token = signer.dumps("alice@example.com")
    clock.advance(59 * DAY)
    assert signer.loads(token).address == "alice@example.com"
    clock.advance(2 * DAY)
    assert reason(signer, token) == "expired"
    clock.advance(-61 * DAY - 3600)  # from the future (beyond the clock leeway)
    assert reason(signer, token) == "invalid"


def _variants(token: str) -> Iterator[tuple[str, str]]:
    body, ts, sig = token.split(".")
    yield "upper case", token.upper()
    yield "lower case", token.lower()
    yield "swapped case", token.swapcase()
    yield "padding", token + "="
    yield "padded body", f"{body}==.{ts}.{sig}"
    yield "trailing junk", token + "x"
    yield "trailing dot", token + "."
    yield "trailing slash", token + "/"
    yield "leading space", " " + token
    yield "standard base64", token.replace("-", "+").replace("_", "/") + "+/"
    # The last signature character carries 2 unused bits: same bytes, other spelling.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    other = alphabet[alphabet.index(sig[-1]) + 1]
    yield "re-encoded signature", f"{body}.{ts}.{sig[:-1]}{other}"
    yield "percent-encoded", token.replace(".", "%2E")


def test_variant_forms_of_a_token_are_refused(clock: Clock) -> None:
    signer = tokens(clock)
    token = signer.dumps("alice@example.com")
    assert signer.loads(token).address == "alice@example.com"
    for name, variant in _variants(token):
        assert variant != token
        assert reason(signer, variant) == "invalid", name


def test_a_45_day_old_token_verifies_after_one_key_rotation(clock: Clock) -> None:
    token = tokens(clock, OLD_KEY).dumps("alice@example.com", "email", "marketing")
    clock.advance(45 * DAY)
    rotated = tokens(clock, OLD_KEY, NEW_KEY)
    assert rotated.loads(token).purpose == "marketing"
    # A second rotation drops the key it was signed with.
    assert reason(tokens(clock, NEW_KEY, THIRD_KEY), token) == "invalid"
    # New links are signed with the newest key and do not verify with the old one alone.
    fresh = rotated.dumps("alice@example.com")
    assert reason(tokens(clock, OLD_KEY), fresh) == "invalid"


def test_links_stay_valid_at_least_30_days() -> None:
    with pytest.raises(consentmw.ConfigError, match=r"optout\.max_age_days"):
        consentmw.Config.load(site_config(["memory://"], optout={"max_age_days": 29}))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_refused_quietly(text: str) -> None:
    signer = tokens(Clock())
    with pytest.raises(OptoutTokenError):
        signer.loads(text)


@settings(max_examples=200, deadline=None)
@given(st.emails())
def test_every_valid_address_round_trips_normalised(address: str) -> None:
    from consentmw.resolve.email import normalize_email

    signer = tokens(Clock())
    expected = normalize_email(address)
    if expected is None:
        with pytest.raises(ValueError):
            signer.dumps(address)
        return
    assert signer.loads(signer.dumps(address)).address == expected


# ---------------------------------------------------------------------------- the page


@pytest.fixture
def site(clock: Clock) -> Iterator[consentmw.ConsentMiddleware]:
    mw = consentmw.ConsentMiddleware(app, site_config(["memory://"]), clock=clock)
    yield mw
    mw.close(5)


def _path(url: str) -> str:
    return url.split("shop.example.test", 1)[1]


CROSS_SITE = {"Origin": "https://mail.example.net", "Sec-Fetch-Site": "cross-site"}


def _optouts(mw: consentmw.ConsentMiddleware) -> list[consentmw.Event]:
    mw.flush(5)
    sink = mw.sinks["memory://"]
    assert isinstance(sink, consentmw.MemorySink)
    return [e for e in sink.events if e.type == "optout"]


def test_get_only_asks_and_post_one_click_opts_out(site: consentmw.ConsentMiddleware) -> None:
    client = Client(site)
    url = site.rights.optout_url("Alice@Example.com", purpose="marketing")
    assert url.startswith("https://shop.example.test/_consent/optout/")
    page = client.get(_path(url))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Stop e-mails to alice@example.com?" in text
    assert "Marketing contact" in text
    assert f'action="{_path(url)}"' in text
    assert 'name="List-Unsubscribe" value="One-Click"' in text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    # A mail scanner following the link changed nothing.
    assert not site.rights.is_suppressed("alice@example.com")
    # The mail provider posts one-click from its own servers: no cookie, no CSRF token.
    done = Client(site).post(_path(url), data={"List-Unsubscribe": "One-Click"}, headers=CROSS_SITE)
    assert done.status_code == 200
    assert "We will not send e-mail to alice@example.com any more." in done.get_data(as_text=True)
    assert site.rights.is_suppressed("alice@example.com", "email", "marketing")
    assert not site.rights.is_suppressed("alice@example.com", "email", "analytics")
    assert site.rights.is_suppressed("alice@example.com")
    [event] = _optouts(site)
    assert (event.name, event.email, event.props) == (
        "email",
        "alice@example.com",
        {"channel": "email", "purpose": "marketing", "mechanism": "one-click"},
    )
    [record] = site.rights.receipts("alice@example.com")
    assert record.mechanism == "optout"
    assert record.granted == ("analytics", "necessary")
    assert "alice" not in record.subject  # a keyed digest, not the address
    # Again: the same answer, nothing recorded twice.
    again = client.post(_path(url), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert "already been unsubscribed" in again.get_data(as_text=True)
    assert len(_optouts(site)) == 1
    assert len(site.rights.receipts("alice@example.com")) == 1
    assert "already been unsubscribed" in client.get(_path(url)).get_data(as_text=True)


def test_multipart_one_click_and_a_phone_link(site: consentmw.ConsentMiddleware) -> None:
    url = site.rights.optout_url("+44 20 7946 0958", "phone")
    page = Client(site).get(_path(url)).get_data(as_text=True)
    assert "Stop telephone calls to +442079460958?" in page
    response = Client(site).post(
        _path(url),
        data={"List-Unsubscribe": "One-Click"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert site.rights.is_suppressed("0044 (0)20 7946 0958", "phone")
    assert not site.rights.is_suppressed("+442079460958", "email")
    [event] = _optouts(site)
    assert event.aggregate and event.email is None and event.visitor_id is None


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [
        pytest.param(lambda t: t[:-3], 400, "incomplete or damaged", id="garbled"),
        pytest.param(lambda t: t + "/more", 400, "incomplete or damaged", id="extra segment"),
        pytest.param(lambda t: "", 400, "incomplete or damaged", id="empty"),
    ],
)
def test_a_bad_token_gets_a_friendly_page(
    site: consentmw.ConsentMiddleware, make: Any, status: int, says: str
) -> None:
    token = _path(site.rights.optout_url("alice@example.com")).rsplit("/", 1)[1]
    for method in ("GET", "POST"):
        response = Client(site).open(
            f"/_consent/optout/{make(token)}",
            method=method,
            data={"List-Unsubscribe": "One-Click"} if method == "POST" else None,
        )
        assert response.status_code == status
        text = response.get_data(as_text=True)
        assert "This link does not work" in text
        assert says in text
        assert '<a href="mailto:privacy@example.test">privacy@example.test</a>' in text
    assert not site.rights.is_suppressed("alice@example.com")


def test_an_expired_link_says_so(site: consentmw.ConsentMiddleware, clock: Clock) -> None:
    url = site.rights.optout_url("alice@example.com")
    clock.advance(61 * DAY)
    response = Client(site).get(_path(url))
    assert response.status_code == 400
    assert "has expired" in response.get_data(as_text=True)


def test_post_needs_the_one_click_field(site: consentmw.ConsentMiddleware) -> None:
    path = _path(site.rights.optout_url("alice@example.com"))
    client = Client(site)
    assert client.post(path, data={"other": "x"}).status_code == 400
    assert client.post(path, json={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert client.post(path, data=b"x", content_type="text/plain").status_code == 415
    assert client.post(path, data="a" * 20000, content_type="text/plain").status_code == 415
    put = client.put(path)
    assert put.status_code == 405
    assert put.headers["Allow"] == "GET, HEAD, POST"
    assert not site.rights.is_suppressed("alice@example.com")


def test_percent_encoding_in_the_url_is_the_same_token(site: consentmw.ConsentMiddleware) -> None:
    path = _path(site.rights.optout_url("alice@example.com"))
    encoded = path.replace(".", "%2E")
    response = Client(site).post(encoded, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200  # the server decodes it back to the signed bytes
    assert site.rights.is_suppressed("alice@example.com")


def test_german_pages(site: consentmw.ConsentMiddleware) -> None:
    mw = consentmw.ConsentMiddleware(
        app,
        site_config(
            ["memory://"],
            purposes={
                "necessary": {"required": True},
                "marketing": {"translations": {"de": {"title": "Werbung"}}},
            },
        ),
    )
    try:
        path = _path(mw.rights.optout_url("alice@example.com", purpose="marketing"))
        text = Client(mw).get(path, headers={"Accept-Language": "de"}).get_data(as_text=True)
        assert "Keine E-Mails mehr an alice@example.com?" in text
        assert "Betrifft: Werbung." in text
    finally:
        mw.close(5)


def test_list_unsubscribe_headers(site: consentmw.ConsentMiddleware) -> None:
    headers = site.rights.list_unsubscribe_headers("alice@example.com")
    assert [name for name, _ in headers] == ["List-Unsubscribe", "List-Unsubscribe-Post"]
    value = headers[0][1]
    assert value.startswith("<https://shop.example.test/_consent/optout/") and value.endswith(">")
    assert headers[1][1] == "List-Unsubscribe=One-Click"
    mailto = consentmw.ConsentMiddleware(
        app,
        site_config(
            ["memory://"],
            optout={
                "contact": "mailto:out@example.test",
                "base_url": "https://mail.example.test/x",
            },
        ),
    )
    try:
        value = mailto.rights.list_unsubscribe_headers("a@example.com")[0][1]
        assert value.startswith("<mailto:out@example.test>, <https://mail.example.test/x/_consent")
    finally:
        mailto.close(5)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80))
def test_any_path_under_optout_is_answered_without_a_server_error(rest: str) -> None:
    mw = consentmw.ConsentMiddleware(app, site_config(["memory://"]))
    try:
        client = Client(mw)
        for method in ("GET", "POST"):
            response = client.open(
                "/_consent/optout/" + rest.replace("?", "").replace("#", ""), method=method
            )
            assert response.status_code in (400, 404, 415), response.status_code
    finally:
        mw.close(5)

"""The middleware through werkzeug's test client: enforcement, jars, endpoint safety."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.test import Client

import consentmw
from consentmw import ConsentMiddleware, MemorySink, SinkError
from consentmw.consentlog import ConsentRecord, verify_chain
from tests.core.support import (
    SAME_ORIGIN,
    Clock,
    app_cookies,
    choose,
    cookie_app,
    csrf,
    make_config,
    set_cookie_names,
)

Factory = Callable[..., tuple[ConsentMiddleware, Client]]


def seen(app_calls: list[Any]) -> Any:
    return app_calls[-1]


def recording_app(*set_cookies: str) -> tuple[Callable[..., Any], list[Any]]:
    calls: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ctx = consentmw.get_context(environ)
        calls.append(ctx.consent)
        start_response(
            "200 OK", [("Content-Type", "text/html")] + [("Set-Cookie", c) for c in set_cookies]
        )
        return [b"<html><body>ok</body></html>"]

    return app, calls


# ---------------------------------------------------------------- enforcement


def test_first_visit_sets_no_cookie_of_an_ungranted_purpose(make_client: Factory) -> None:
    app, calls = recording_app("_ga_ABC=1; Path=/", "promo=1; Path=/", "lang=de; Path=/")
    mw, client = make_client(app)
    r = client.get("/")
    assert r.status_code == 200
    assert app_cookies(r) == ["lang"]  # necessary passes; analytics and marketing removed
    assert not seen(calls).decided and seen(calls).granted == {"necessary"}
    assert r.headers["Vary"] == "Cookie" and "private" in r.headers["Cache-Control"]
    assert mw.stats()["middleware"]["cookies_blocked"] == 2


def test_choices_are_enforced_in_the_same_response(make_client: Factory) -> None:
    app, calls = recording_app("_ga_ABC=1; Path=/", "promo=1; Path=/")
    _, client = make_client(app)
    r = choose(client, "custom", ("analytics",))
    assert r.status_code == 303 and r.headers["Location"] == "/"
    r = client.get("/")
    assert app_cookies(r) == ["_ga_ABC"]
    assert (
        seen(calls).decided
        and seen(calls).allows("analytics")
        and not seen(calls).allows("marketing")
    )
    choose(client, "accept_all")
    assert sorted(app_cookies(client.get("/"))) == ["_ga_ABC", "promo"]
    choose(client, "reject_all")
    assert app_cookies(client.get("/")) == []


def test_gpc_turns_marketing_off_for_the_request(make_client: Factory) -> None:
    app, calls = recording_app("promo=1")
    _, client = make_client(app)
    choose(client, "accept_all")
    assert app_cookies(client.get("/", headers={"Sec-GPC": "1"})) == []
    assert seen(calls).source == "gpc"
    assert app_cookies(client.get("/", headers={"Sec-GPC": "true"})) == ["promo"]
    assert app_cookies(client.get("/")) == ["promo"]


@pytest.mark.parametrize(
    ("policy", "kept", "counter"),
    [
        pytest.param("block", [], "cookies_blocked", id="block"),
        pytest.param("allow", ["tracker"], None, id="allow"),
        pytest.param("report", ["tracker"], "cookies_reported", id="report"),
    ],
)
def test_undeclared_cookies(
    make_client: Factory, policy: str, kept: list[str], counter: str | None
) -> None:
    mw, client = make_client(
        cookie_app("tracker=1"), make_config(cookie_settings={"undeclared": policy})
    )
    assert app_cookies(client.get("/")) == kept
    if counter:
        assert mw.stats()["middleware"][counter] == 1


def test_deleting_an_ungranted_cookie_is_allowed_and_ours_are_reserved(
    make_client: Factory,
) -> None:
    mw, client = make_client(
        cookie_app(
            "_ga=; Max-Age=0; Path=/",
            "cmw_prefs=forged",
            "undeclared=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        )
    )
    assert app_cookies(client.get("/")) == ["_ga", "undeclared"]
    assert mw.stats()["middleware"]["reserved_cookie_blocked"] == 1


def test_necessary_cookies_named_by_an_integration_pass(make_client: Factory) -> None:
    _, client = make_client(cookie_app("session=abc"), necessary_cookies=["session"])
    assert app_cookies(client.get("/")) == ["session"]


def test_withdrawal_expires_the_withdrawn_purposes_cookies(make_client: Factory) -> None:
    mw, _ = make_client(cookie_app(), make_config(cookie_settings={"domain": ".example.test"}))
    client = Client(mw)
    base = "http://shop.example.test"

    def decide(choice: str, purposes: tuple[str, ...] = ()) -> Any:
        token = client.get("/_consent", base_url=base).get_json()["csrf"]
        form = [("choice", choice), ("csrf", token)] + [("purpose", p) for p in purposes]
        return client.post(
            "/_consent",
            data=MultiDict(form),
            base_url=base,
            headers={"Sec-Fetch-Site": "same-origin"},
        )

    decide("accept_all")
    assert client.get_cookie("cmw_prefs", domain="example.test") is not None
    client.set_cookie("_ga_XYZ", "1", domain="shop.example.test")
    client.set_cookie("promo", "1", domain="shop.example.test")
    client.set_cookie("lang", "de", domain="shop.example.test")
    r = decide("custom", ("marketing",))
    expiries = [h for h in r.headers.getlist("Set-Cookie") if h.startswith("_ga_XYZ=")]
    assert expiries and all("Max-Age=0" in h for h in expiries)
    assert any("Domain=example.test" in h for h in expiries)
    assert not [h for h in r.headers.getlist("Set-Cookie") if h.startswith(("promo=", "lang="))]


@pytest.mark.parametrize(
    ("app_cc", "expected"),
    [
        pytest.param(None, "private", id="absent"),
        pytest.param("public, max-age=60", "private, max-age=60", id="public"),
        pytest.param("max-age=60, s-maxage=600", "private, max-age=60", id="s-maxage"),
        pytest.param("no-store", "no-store", id="no-store"),
    ],
)
def test_consent_dependent_responses_are_private(
    make_client: Factory, app_cc: str | None, expected: str
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        consentmw.get_context(environ).consent.allows("analytics")
        headers = [("Content-Type", "text/plain"), ("Vary", "Accept-Encoding")]
        if app_cc:
            headers.append(("Cache-Control", app_cc))
        start_response("200 OK", headers)
        return [b"x"]

    _, client = make_client(app)
    r = client.get("/")
    assert r.headers["Cache-Control"] == expected
    assert r.headers["Vary"] == "Accept-Encoding, Cookie"


def test_a_response_that_ignores_consent_stays_cacheable(make_client: Factory) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=60")]
        )
        return [b"x"]

    _, client = make_client(app)
    r = client.get("/")
    assert r.headers["Cache-Control"] == "public, max-age=60" and "Vary" not in r.headers


# ---------------------------------------------------------------- bad cookies


def _prefs_cookie(client: Client) -> str:
    cookie = client.get_cookie("cmw_prefs")
    assert cookie is not None
    return cookie.value


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda v: v[:-1], id="truncated"),
        pytest.param(
            lambda v: v[:-3] + ("AAA" if v[-3:] != "AAA" else "BBB"), id="forged-signature"
        ),
        pytest.param(lambda v: "x" + v, id="prefixed"),
        pytest.param(lambda v: v + "a" * 100_000, id="100KiB"),
        pytest.param(lambda v: '"' + v + '"', id="quoted-is-fine"),
        pytest.param(lambda v: v.replace(".", "\xff", 1), id="latin1-byte"),
    ],
)
def test_mangled_prefs_cookies_mean_no_consent(
    make_client: Factory, mangle: Callable[[str], str]
) -> None:
    app, calls = recording_app()
    mw, client = make_client(app)
    choose(client, "accept_all")
    value = _prefs_cookie(client)
    r = Client(mw, use_cookies=False).get("/", headers={"Cookie": f"cmw_prefs={mangle(value)}"})
    assert r.status_code == 200
    quoted_ok = mangle("abc") == '"abc"'
    assert seen(calls).decided is quoted_ok


def test_a_valid_signature_around_a_bad_payload_is_no_consent(make_client: Factory) -> None:
    app, calls = recording_app()
    mw, client = make_client(app)
    forged = mw.engine.prefs_signer.dumps({"g": "everything", "t": "now"})
    client = Client(mw, use_cookies=False)
    assert client.get("/", headers={"Cookie": f"cmw_prefs={forged}"}).status_code == 200
    assert not seen(calls).decided
    assert mw.stats()["middleware"]["bad_cookie"] >= 1


def test_duplicates_the_most_restrictive_wins(make_client: Factory) -> None:
    app, calls = recording_app()
    mw, client = make_client(app)
    choose(client, "accept_all")
    accept = _prefs_cookie(client)
    choose(client, "custom", ("analytics",))
    analytics = _prefs_cookie(client)
    client = Client(mw, use_cookies=False)
    client.get("/", headers={"Cookie": f"cmw_prefs={accept}; cmw_prefs={analytics}"})
    assert seen(calls).granted == {"necessary", "analytics"}
    client.get("/", headers={"Cookie": f"cmw_prefs={analytics}; cmw_prefs={accept}"})
    assert seen(calls).granted == {"necessary", "analytics"}
    client.get(
        "/", headers={"Cookie": f"cmw_prefs={accept}; CMW_PREFS={analytics}; cmw_prefs=junk"}
    )
    assert seen(calls).granted == {"necessary", "analytics", "marketing"}


def test_a_cookie_signed_with_an_older_key_is_resigned(make_client: Factory, clock: Clock) -> None:
    old_cfg = make_config(site={"secret_keys": ["old-secret-0123456789abcdef"]})
    _, old_client = make_client(cookie_app(), old_cfg)
    choose(old_client, "custom", ("analytics",))
    old_value = _prefs_cookie(old_client)
    app, calls = recording_app()
    mw, _ = make_client(app)
    client = Client(mw, use_cookies=False)
    r = client.get("/", headers={"Cookie": f"cmw_prefs={old_value}"})
    assert seen(calls).allows("analytics")
    new_values = [h for h in r.headers.getlist("Set-Cookie") if h.startswith("cmw_prefs=")]
    assert len(new_values) == 1
    resigned = new_values[0].split(";")[0].split("=", 1)[1]
    verified = mw.engine.prefs_signer.loads(resigned, 10**6)
    assert verified is not None and not verified.old_key
    # The prefs cookie is not re-sent when nothing changed.
    r = client.get("/", headers={"Cookie": f"cmw_prefs={resigned}"})
    assert not [h for h in r.headers.getlist("Set-Cookie") if h.startswith("cmw_prefs=")]


def test_expired_consent_shows_as_undecided(make_client: Factory, clock: Clock) -> None:
    app, calls = recording_app()
    _, client = make_client(app)
    choose(client, "accept_all")
    client.get("/")
    assert seen(calls).decided
    clock.advance(181 * 86400)
    client.get("/")
    assert not seen(calls).decided


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=st.text(alphabet=st.characters(codec="latin-1"), max_size=300))
def test_any_cookie_header_gives_a_normal_response(make_client: Factory, header: str) -> None:
    mw = getattr(test_any_cookie_header_gives_a_normal_response, "_mw", None)
    if mw is None:
        mw, _ = make_client(cookie_app("_ga=1", "x=1"))
        client = Client(mw, use_cookies=False)
        test_any_cookie_header_gives_a_normal_response._mw = (mw, client)  # type: ignore[attr-defined]
    mw, client = test_any_cookie_header_gives_a_normal_response._mw  # type: ignore[attr-defined]
    r = client.get("/", environ_overrides={"HTTP_COOKIE": header})
    assert r.status_code == 200
    assert app_cookies(r) == []


# ---------------------------------------------------------------- property (b)

_DECLARED = ["_ga", "_ga_X1", "promo", "lang", "undeclared", "cmw_prefs", "other"]
_ATTRIBUTES = [
    "Path=/",
    "Max-Age=0",
    "Max-Age=-1",
    "Max-Age=31536000",
    "max-age=5",
    "Max-Age=soon",
    "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    "Expires=Thu, 01 Jan 2099 00:00:00 GMT",
    "Domain=localhost",
    "Secure",
]


def browser_keeps(value: str) -> bool:
    """An independent model of RFC 6265 §5.3: does a browser keep (not delete) this cookie?
    The last valid Max-Age decides; without one, the last valid Expires; else it is kept."""
    max_ages = re.findall(r";\s*max-age\s*=\s*(-?\d+)\s*(?=;|$)", value, flags=re.I)
    if max_ages:
        return int(max_ages[-1]) > 0
    expires = re.findall(r";\s*expires\s*=\s*[^;]*?(\d{4}) ", value, flags=re.I)
    if expires:
        return int(expires[-1]) > 2000
    return True


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    choice=st.sampled_from(["accept_all", "reject_all", "custom", None]),
    custom=st.sets(st.sampled_from(["analytics", "marketing"])),
    gpc=st.booleans(),
    cookies=st.lists(
        st.tuples(
            st.sampled_from(_DECLARED),
            st.sampled_from(["1", "", "x"]),
            st.lists(st.sampled_from(_ATTRIBUTES), max_size=4),
        ),
        max_size=6,
    ),
)
def test_no_cookie_of_an_ungranted_purpose_ever_leaves(
    make_client: Factory,
    choice: str | None,
    custom: set[str],
    gpc: bool,
    cookies: list[tuple[str, str, list[str]]],
) -> None:
    headers = ["; ".join([f"{name}={value}", *attrs]) for name, value, attrs in cookies]
    mw, client = make_client(cookie_app(*headers))
    request_headers = {"Sec-GPC": "1"} if gpc else {}
    if choice is not None:
        choose(client, choice, tuple(sorted(custom)) if choice == "custom" else ())
        request_headers["Cookie"] = f"cmw_prefs={_prefs_cookie(client)}"
    # A client that does not keep cookies: werkzeug's would choke on the odd attributes.
    r = Client(mw, use_cookies=False).get("/", headers=request_headers)
    config = mw.config
    granted = {"necessary"}
    if choice == "accept_all":
        granted |= {"analytics", "marketing"}
    elif choice == "custom":
        granted |= custom
    if gpc:
        granted -= {"marketing"}
    for value in r.headers.getlist("Set-Cookie"):
        name = value.split("=", 1)[0].strip()
        if name.startswith("cmw_") or not browser_keeps(value):
            continue  # deletions are always allowed; ours are consentmw's (necessary)
        rule = config.cookie_rule(name)
        assert rule is not None, f"undeclared cookie {name} left: {value}"
        assert rule.purpose in granted, f"{name} ({rule.purpose}) left without consent: {value}"
    mw.close(timeout=5)


# ---------------------------------------------------------------- jars


def jar_app(action: Callable[[consentmw.RequestContext], Any]) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        result = action(consentmw.get_context(environ))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(result).encode()]

    return app


def test_cart_round_trip_and_set_cookie_only_when_changed(make_client: Factory) -> None:
    def action(ctx: consentmw.RequestContext) -> Any:
        if ctx.environ["PATH_INFO"] == "/add":
            ctx.cart["items"] = [*ctx.cart.get("items", []), "sku-1"]
        elif ctx.environ["PATH_INFO"] == "/clear":
            ctx.cart.clear()
        return dict(ctx.cart)

    _, client = make_client(jar_app(action))
    r = client.get("/add")
    assert set_cookie_names(r) == ["cmw_cart"] and "Max-Age=2592000" in r.headers["Set-Cookie"]
    r = client.get("/add")
    assert r.get_json() == {"items": ["sku-1", "sku-1"]}
    r = client.get("/")
    assert r.get_json() == {"items": ["sku-1", "sku-1"]} and set_cookie_names(r) == []
    r = client.get("/clear")
    deletion = r.headers["Set-Cookie"]
    assert deletion.startswith("cmw_cart=;") and "Max-Age=0" in deletion and "Path=/" in deletion
    assert "HttpOnly" in deletion and "SameSite=Lax" in deletion


def test_session_rotation_and_lazy_verification(make_client: Factory) -> None:
    ids: list[Any] = []

    def action(ctx: consentmw.RequestContext) -> Any:
        path = ctx.environ["PATH_INFO"]
        if path == "/login":
            ctx.session["user"] = "u1"
            ids.append(ctx.session.rotate())
        elif path == "/whoami":
            ids.append(ctx.session.id)
            return ctx.session.get("user")
        return None

    mw, client = make_client(jar_app(action))
    client.get("/login")
    assert client.get("/whoami").get_json() == "u1" and ids[0] == ids[1]
    client.get("/login")
    assert ids[2] != ids[0]
    # A garbled session cookie is only noticed when the app touches the session.
    client.set_cookie("cmw_session", "garbage", domain="localhost")
    before = mw.stats()["middleware"]["bad_cookie"]
    client.get("/nothing")
    assert mw.stats()["middleware"]["bad_cookie"] == before
    assert client.get("/whoami").get_json() is None
    assert mw.stats()["middleware"]["bad_cookie"] == before + 1


def test_jar_overflow_is_raised_to_the_app_at_write_time(make_client: Factory) -> None:
    errors: list[Exception] = []

    def action(ctx: consentmw.RequestContext) -> Any:
        try:
            ctx.cart["blob"] = "x" * 5000
        except consentmw.JarOverflowError as exc:
            errors.append(exc)
        try:
            ctx.cart["bad"] = object()
        except TypeError as exc:
            errors.append(exc)
        return len(ctx.cart)

    _, client = make_client(jar_app(action))
    r = client.get("/")
    assert r.get_json() == 0 and set_cookie_names(r) == []
    assert isinstance(errors[0], consentmw.JarOverflowError) and "4093" in str(errors[0])
    assert "JSON values only" in str(errors[1])


def test_nested_growth_behind_modified_never_sends_an_oversized_cookie(
    make_client: Factory,
) -> None:
    def action(ctx: consentmw.RequestContext) -> Any:
        ctx.cart["items"] = []
        ctx.cart["items"].extend(["x" * 100] * 60)
        ctx.cart.modified = True
        return None

    mw, client = make_client(jar_app(action))
    r = client.get("/")
    assert r.status_code == 200 and set_cookie_names(r) == []
    assert mw.stats()["middleware"]["jar_overflow"] == 1


def test_prefs_jar_keeps_preferences_with_the_consent(make_client: Factory) -> None:
    def action(ctx: consentmw.RequestContext) -> Any:
        if ctx.environ["PATH_INFO"] == "/set":
            ctx.prefs["theme"] = "dark"
        return {"prefs": dict(ctx.prefs), "decided": ctx.consent.decided}

    _, client = make_client(jar_app(action))
    choose(client, "custom", ("analytics",))
    client.get("/set")
    assert client.get("/").get_json() == {"prefs": {"theme": "dark"}, "decided": True}


def test_secure_settings_use_prefixed_names(make_client: Factory) -> None:
    _, client = make_client(
        jar_app(lambda ctx: ctx.cart.update(a=1)), make_config(cookie_settings={"secure": True})
    )
    r = client.get("/", base_url="https://localhost")
    value = r.headers["Set-Cookie"]
    assert value.startswith("__Host-cmw_cart=") and "Secure" in value and "Domain" not in value


# ---------------------------------------------------------------- endpoint safety


def post(
    client: Client,
    *,
    data: Any = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> Any:
    h = dict(SAME_ORIGIN)
    h.update(headers or {})
    if json_body is not None:
        return client.post(
            "/_consent",
            data=json.dumps(json_body),
            content_type="application/json",
            headers=h,
            **kw,
        )
    return client.post("/_consent", data=data, headers=h, **kw)


def test_state_endpoint(make_client: Factory) -> None:
    _, client = make_client()
    r = client.get("/_consent")
    doc = r.get_json()
    assert r.status_code == 200 and doc["decided"] is False and doc["granted"] == ["necessary"]
    assert doc["policy_version"] == "2014-12-12" and doc["csrf"]
    assert [p["id"] for p in doc["purposes"]] == ["necessary", "analytics", "marketing"]
    assert r.headers["Cache-Control"].startswith("no-store")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(make_client: Factory, method: str) -> None:
    _, client = make_client()
    r = client.open("/_consent", method=method)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="sec-fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="sec-fetch-same-site"),
        pytest.param({"Origin": "http://evil.test"}, id="origin-evil"),
        pytest.param({"Origin": "null"}, id="origin-null"),
    ],
)
def test_cross_site_posts_are_403(make_client: Factory, headers: dict[str, str]) -> None:
    _, client = make_client()
    token = csrf(client)
    r = client.post("/_consent", data={"choice": "accept_all", "csrf": token}, headers=headers)
    assert r.status_code == 403
    assert client.get("/_consent").get_json()["decided"] is False


def test_check_order(make_client: Factory) -> None:
    _, client = make_client()
    # cross-site before content type
    assert (
        client.post(
            "/_consent",
            data=b"x",
            content_type="text/plain",
            headers={"Sec-Fetch-Site": "cross-site"},
        ).status_code
        == 403
    )
    # content type before size
    assert (
        post(client, data=b"x" * 20000, headers={"Content-Type": "text/plain"}).status_code == 415
    )
    # size before syntax
    assert (
        post(client, data=b"{" * 20000, headers={"Content-Type": "application/json"}).status_code
        == 413
    )
    # syntax before token
    assert post(client, json_body={"choice": "yes"}).status_code == 400
    assert post(client, json_body={"choice": "accept_all"}).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"choice": "custom", "purposes": {"analytics": "yes"}}', id="non-boolean"),
        pytest.param(b'{"choice": "custom", "purposes": {"unknown": true}}', id="unknown-purpose"),
        pytest.param(b'{"choice": "custom", "purposes": {"analytics": NaN}}', id="nan"),
        pytest.param(b'{"choice": NaN}', id="nan-choice"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-nesting"),
        pytest.param(
            b'{"choice": "custom", "purposes": {"analytics": {"a": [[[true]]]}}}', id="nested-value"
        ),
        pytest.param(b'{"choice": "accept_all", "extra": 1}', id="unknown-field"),
        pytest.param(b'"accept_all"', id="not-object"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(
            b'{"choice": "reject_all", "purposes": {"analytics": true}}', id="contradiction"
        ),
    ],
)
def test_strict_json_validation(make_client: Factory, body: bytes) -> None:
    _, client = make_client()
    r = post(
        client,
        data=body,
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf(client)},
    )
    assert r.status_code == 400 and "error" in r.get_json()


def test_json_choice_with_header_token(make_client: Factory) -> None:
    _, client = make_client()
    r = post(
        client,
        json_body={"purposes": {"analytics": True, "marketing": False}},
        headers={"X-CSRF-Token": csrf(client), "Accept": "application/json"},
    )
    assert r.status_code == 200
    assert r.get_json()["granted"] == ["analytics", "necessary"] and r.get_json()["decided"]


def test_form_errors(make_client: Factory) -> None:
    _, client = make_client()
    token = csrf(client)
    assert (
        post(client, data={"choice": "custom", "purpose": "nope", "csrf": token}).status_code == 400
    )
    assert (
        post(
            client,
            data=MultiDict([("choice", "accept_all"), ("choice", "reject_all"), ("csrf", token)]),
        ).status_code
        == 400
    )
    assert post(client, data={"choice": "accept_all", "csrf": "forged"}).status_code == 403
    assert post(client, data={"choice": "accept_all"}).status_code == 403


def test_a_token_from_another_session_is_refused(make_client: Factory) -> None:
    mw, alice = make_client()
    bob = Client(mw)
    token = csrf(alice)
    csrf(bob)
    assert post(bob, data={"choice": "accept_all", "csrf": token}).status_code == 403
    assert post(alice, data={"choice": "accept_all", "csrf": token}).status_code == 303


def test_multipart_text_fields_only(make_client: Factory) -> None:
    import io

    _, client = make_client()
    token = csrf(client)
    ok = post(
        client, data={"choice": "reject_all", "csrf": token}, content_type="multipart/form-data"
    )
    assert ok.status_code == 303
    bad = post(
        client, data={"choice": "reject_all", "csrf": token, "f": (io.BytesIO(b"x"), "x.txt")}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("next_value", "location"),
    [
        pytest.param("/cart?x=1", "/cart?x=1", id="path"),
        pytest.param("https://evil.test/", "/", id="absolute"),
        pytest.param("//evil.test/", "/", id="scheme-relative"),
        pytest.param("/\\evil.test", "/", id="backslash"),
        pytest.param("/ok\r\nSet-Cookie: x=1", "/", id="crlf"),
        pytest.param("javascript:alert(1)", "/", id="javascript"),
        pytest.param("/€uro?q=é", "/%E2%82%ACuro?q=%C3%A9", id="non-ascii-encoded"),
        pytest.param('/a b"c', "/a%20b%22c", id="space-and-quote"),
        pytest.param("/ok\x85x", "/", id="c1-control"),
    ],
)
def test_next_is_same_origin_only(make_client: Factory, next_value: str, location: str) -> None:
    _, client = make_client()
    r = post(client, data={"choice": "reject_all", "csrf": csrf(client), "next": next_value})
    assert r.status_code == 303 and r.headers["Location"] == location


def test_body_cap_without_content_length(make_client: Factory) -> None:
    import io

    _, client = make_client()
    stream = io.BytesIO(b"choice=accept_all&x=" + b"a" * 20000)
    r = client.post(
        "/_consent",
        input_stream=stream,
        content_type="application/x-www-form-urlencoded",
        headers={**SAME_ORIGIN, "Transfer-Encoding": "chunked"},
    )
    assert r.status_code == 413


# ---------------------------------------------------------------- consent log


class FailingLog(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        if self.failing:
            raise SinkError("consent log down")
        return super().append_consent(record)


def test_accept_is_503_without_cookie_when_the_log_fails_reject_is_spooled(
    make_client: Factory,
) -> None:
    sink = FailingLog()
    mw, client = make_client(cookie_app(), sinks={"memory://": sink})
    r = choose(client, "accept_all")
    assert r.status_code == 503 and "cmw_prefs" not in set_cookie_names(r)
    r = choose(client, "reject_all")
    assert r.status_code == 303 and "cmw_prefs" in set_cookie_names(r)
    assert mw.engine.spool.consent_count() == 1
    sink.failing = False
    mw.engine.dispatcher._consent_next_try = 0.0
    mw.flush(5)
    mw.engine.dispatcher.wake.set()
    assert mw.flush(5)
    import time as _t

    deadline = _t.monotonic() + 5
    while mw.engine.spool.consent_count() and _t.monotonic() < deadline:
        mw.engine.dispatcher.wake.set()
        mw.flush(0.2)
    assert mw.engine.spool.consent_count() == 0
    records = list(sink.consent_records())
    assert [r.mechanism for r in records] == ["reject_all"] and not verify_chain(records)


def test_every_decision_is_chained_in_the_consent_log(make_client: Factory) -> None:
    sink = MemorySink()
    _, client = make_client(cookie_app(), sinks={"memory://": sink})
    choose(client, "accept_all")
    choose(client, "custom", ("analytics",))
    choose(client, "reject_all")
    records = list(sink.consent_records())
    assert [r.mechanism for r in records] == ["accept_all", "withdraw", "withdraw"]
    assert len({r.subject for r in records}) == 1
    assert records[1].granted == ("analytics", "necessary")
    assert not verify_chain(records)


def test_notice_model_continued_use_is_recorded(make_client: Factory) -> None:
    sink = MemorySink()
    app, calls = recording_app()
    _, client = make_client(app, make_config(policy={"model": "notice"}), sinks={"memory://": sink})
    r = client.get("/")
    assert not seen(calls).decided and "cmw_prefs" in set_cookie_names(r)
    client.get("/next")
    assert seen(calls).decided and seen(calls).source == "notice"
    assert [rec.mechanism for rec in sink.consent_records()] == ["notice"]
    client.get("/third")
    assert len(list(sink.consent_records())) == 1


def test_reading_consent_after_start_response_does_not_accept_the_notice(
    make_client: Factory,
) -> None:
    sink = MemorySink()
    states: list[Any] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<html><body>"
        states.append(consentmw.get_context(environ).consent)  # read while streaming
        yield b"</body></html>"

    _, client = make_client(app, make_config(policy={"model": "notice"}), sinks={"memory://": sink})
    client.get("/").get_data()
    assert not states[-1].decided and list(sink.consent_records()) == []
    client.get("/next").get_data()
    assert states[-1].decided and [r.mechanism for r in sink.consent_records()] == ["notice"]


def test_notice_is_accepted_by_a_navigation_not_by_the_page_itself(make_client: Factory) -> None:
    sink = MemorySink()
    app, calls = recording_app()
    _, client = make_client(app, make_config(policy={"model": "notice"}), sinks={"memory://": sink})
    client.get("/")
    assert client.get("/_consent").get_json()["decided"] is False
    client.get("/logo.svg", headers={"Sec-Fetch-Dest": "image"})
    client.post("/form")
    assert not seen(calls).decided and list(sink.consent_records()) == []
    client.get("/next", headers={"Sec-Fetch-Dest": "document"})
    assert seen(calls).decided and [r.mechanism for r in sink.consent_records()] == ["notice"]


# ---------------------------------------------------------------- context


def test_get_context_outside_the_middleware() -> None:
    with pytest.raises(consentmw.ConsentMWError, match="ConsentMiddleware"):
        consentmw.get_context({})


def test_lazy_start_response_generators_are_filtered(make_client: Factory) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def body() -> Any:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "promo=1")])
            yield b"a"
            yield b"b"

        return body()

    _, client = make_client(app)
    r = client.get("/")
    assert r.get_data() == b"ab" and app_cookies(r) == []


def test_ctx_visitor_without_tracking_consent(make_client: Factory) -> None:
    _, client = make_client(
        jar_app(lambda ctx: [ctx.visitor.visitor_id, ctx.visitor.ip, ctx.record("x")])
    )
    assert client.get("/").get_json() == [None, None, False]


# ---------------------------------------------------------------- review regressions


@pytest.mark.parametrize(
    ("status", "content_type"),
    [
        pytest.param("302 Found", "text/html", id="redirect"),
        pytest.param("200 OK", "application/json", id="json"),
        pytest.param("404 Not Found", "text/html", id="not-found"),
        pytest.param("200 OK", "image/png", id="image"),
    ],
)
def test_a_notice_is_only_shown_where_a_banner_was_put(
    make_client: Factory, status: str, content_type: str
) -> None:
    sink = MemorySink()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        consentmw.get_context(environ).record("visit")  # computes the state, shows nothing
        headers = [("Content-Type", content_type)]
        if status.startswith("302"):
            headers.append(("Location", "/home"))
        start_response(status if environ["PATH_INFO"] == "/first" else "200 OK", headers)
        return [b"{}"]

    config = make_config(policy={"model": "notice"}, tracking={"tracking_purpose": "analytics"})
    _, client = make_client(app, config, sinks={"memory://": sink})
    client.get("/first")
    client.get("/home")
    assert client.get("/_consent").get_json()["decided"] is False
    assert list(sink.consent_records()) == []


def test_our_cookies_make_a_public_response_private(make_client: Factory) -> None:
    old_cfg = make_config(site={"secret_keys": ["old-secret-0123456789abcdef"]})
    _, old_client = make_client(cookie_app(), old_cfg)
    choose(old_client, "custom", ("analytics",))
    old_value = _prefs_cookie(old_client)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=600")]
        )
        return [b"x"]

    mw, _ = make_client(app)
    r = Client(mw, use_cookies=False).get("/", headers={"Cookie": f"cmw_prefs={old_value}"})
    assert any(h.startswith("cmw_prefs=") for h in r.headers.getlist("Set-Cookie"))
    assert r.headers["Cache-Control"] == "private, max-age=600" and "Cookie" in r.headers["Vary"]


@pytest.mark.parametrize("jar", ["cart", "session"])
def test_the_largest_accepted_jar_fits_in_one_cookie(make_client: Factory, jar: str) -> None:
    accepted: list[int] = []

    def action(ctx: consentmw.RequestContext) -> Any:
        target = ctx.cart if jar == "cart" else ctx.session
        low, high = 0, 5000
        while low < high:  # the largest value the jar takes
            mid = (low + high + 1) // 2
            try:
                target["blob"] = "x" * mid
                low = mid
            except consentmw.JarOverflowError:
                high = mid - 1
        target["blob"] = "x" * low
        accepted.append(low)
        return None

    _, client = make_client(jar_app(action))
    r = client.get("/")
    value = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith(f"cmw_{jar}="))
    # The whole line, attributes included, within the limit, and close to it.
    assert 4000 < len(value) <= 4093, len(value)
    assert accepted[0] > 2800


def test_garbage_prefs_cookies_do_not_fill_the_state_cache(make_client: Factory) -> None:
    mw, _ = make_client(recording_app()[0])
    client = Client(mw, use_cookies=False)
    for i in range(200):
        client.get("/", headers={"Cookie": f"cmw_prefs=garbage-{i}-" + "a" * 3000})
    assert len(mw.engine._state_cache) <= 1


def test_withdrawal_reaches_cookies_set_for_a_sub_path(make_client: Factory) -> None:
    _, client = make_client(cookie_app())
    choose(client, "accept_all")
    client.set_cookie("_ga_shop", "1", domain="localhost", path="/shop")
    token = csrf(client)
    r = client.post(
        "/_consent",
        data={"choice": "reject_all", "csrf": token, "next": "/shop/cart"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 303
    # The browser did not send the /shop cookie to /_consent; the next page under /shop does
    # and gets it expired for that path.
    r = client.get("/shop/cart")
    deletions = [h for h in r.headers.getlist("Set-Cookie") if h.startswith("_ga_shop=")]
    assert any("Path=/shop" in h and "Max-Age=0" in h for h in deletions)
    assert client.get_cookie("_ga_shop", domain="localhost", path="/shop") is None


def test_a_script_set_cookie_of_an_ungranted_purpose_is_expired_on_the_next_page(
    make_client: Factory,
) -> None:
    _, client = make_client(cookie_app())
    choose(client, "custom", ("analytics",))
    client.set_cookie("promo", "from-a-script", domain="localhost")
    client.set_cookie("_ga_1", "kept", domain="localhost")
    r = client.get("/page")
    names = [h.split("=")[0] for h in r.headers.getlist("Set-Cookie") if "Max-Age=0" in h]
    assert "promo" in names and "_ga_1" not in names
    assert client.get_cookie("promo", domain="localhost") is None

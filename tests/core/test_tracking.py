"""Events from requests: page visits, actions, identify, consent — gated by consent."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

import consentmw
from consentmw import ConsentMiddleware, Event, MemorySink
from tests.core.support import choose, make_config

Factory = Callable[..., tuple[ConsentMiddleware, Client]]

TRACKING = {
    "tracking_purpose": "analytics",
    "aggregate_without_consent": True,
    "ignore_paths": ["/health", "/admin/*"],
    "actions": [
        {
            "name": "forum_post",
            "method": "POST",
            "path": "/forums/*/post",
            "capture": ["email", "topic", "phone"],
        },
        {"name": "download", "on_response": "attachment"},
        {
            "name": "newsletter_signup",
            "method": "POST",
            "path": "/newsletter",
            "purpose": "marketing",
        },
        {"name": "purchase", "purpose": "necessary", "path": "/never"},
    ],
}


SEEN: dict[str, Any] = {}


def tracked_site(
    make_client: Factory, sink: MemorySink, **over: Any
) -> tuple[ConsentMiddleware, Client]:
    SEEN.clear()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ctx = consentmw.get_context(environ)
        path = environ["PATH_INFO"]
        headers = [("Content-Type", "text/plain")]
        if path == "/file.zip":
            headers.append(("Content-Disposition", 'attachment; filename="consentmw-1.0.zip"'))
        if path.startswith("/forums/"):
            environ["wsgi.input"].read()
        if path == "/buy":
            SEEN["recorded"] = [
                ctx.record("purchase", total=12.5, sku="A1"),
                ctx.record("search", q="shoes"),
            ]
        if path == "/login":
            SEEN["identified"] = ctx.identify(environ.get("HTTP_X_EMAIL", ""))
        start_response("200 OK", headers)
        return [b"ok"]

    config = make_config(tracking={**TRACKING, **over}, resolve={"anonymize_ip": "truncate"})
    return make_client(app, config, sinks={"memory://": sink})


def visits(sink: MemorySink) -> list[Event]:
    return [e for e in sink.events if e.type == "page_visit"]


def test_user_level_and_aggregate_page_visits(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    ua = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    )
    client.get(
        "/anon?q=1",
        headers={"User-Agent": ua, "Referer": "https://search.test/q?u=me"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.77"},
    )
    choose(client, "accept_all")
    client.get(
        "/seen",
        headers={"User-Agent": ua, "From": "crawler@bots.test"},
        environ_overrides={"REMOTE_ADDR": "203.0.113.77"},
    )
    assert mw.flush(5)
    anon, seen = visits(sink)
    assert anon.aggregate and anon.visitor_id is None and anon.session_id is None
    assert anon.ip is None and anon.email is None and anon.domain is None
    assert anon.path == "/anon" and anon.referrer == "https://search.test"
    assert anon.ua is not None and anon.ua["browser"] is None and anon.ua["device"] == "pc"
    assert anon.purposes == ("necessary",)
    assert not seen.aggregate and seen.visitor_id and seen.session_id
    assert seen.ip == "203.0.113.0" and seen.ua is not None and seen.ua["browser"] == "Chrome"
    assert seen.claimed_email == "crawler@bots.test" and seen.email is None
    assert seen.purposes == ("analytics", "marketing", "necessary")
    assert seen.policy_version == "2014-12-12" and seen.site == "shop.example.test"
    assert seen.status == 200 and seen.method == "GET"
    # ctx.visitor agrees with what is stored.
    consent = [e for e in sink.events if e.type == "consent"]
    assert consent and consent[0].props["mechanism"] == "accept_all"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        pytest.param("HEAD", "/page", {}, id="head"),
        pytest.param("GET", "/static/app.css", {}, id="static"),
        pytest.param("GET", "/logo.PNG", {}, id="static-upper"),
        pytest.param("GET", "/health", {}, id="ignored"),
        pytest.param("GET", "/admin/users", {}, id="ignored-glob"),
        pytest.param("GET", "/page", {"Sec-Purpose": "prefetch"}, id="prefetch"),
        pytest.param("GET", "/page", {"Purpose": "prefetch"}, id="purpose-prefetch"),
        pytest.param(
            "GET",
            "/page",
            {"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
            id="bot",
        ),
    ],
)
def test_untracked_requests(
    make_client: Factory, method: str, path: str, headers: dict[str, str]
) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    choose(client, "accept_all")
    client.open(path, method=method, headers=headers)
    assert mw.flush(5)
    assert visits(sink) == []


def test_no_aggregate_events_unless_configured(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink, aggregate_without_consent=False)
    client.get("/page")
    choose(client, "reject_all")
    client.get("/page")
    assert mw.flush(5)
    assert visits(sink) == []
    assert [e.type for e in sink.events] == ["consent"]
    assert sink.events[0].aggregate and sink.events[0].visitor_id is None


def test_record_is_gated_by_its_purpose(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    client.get("/buy")
    assert SEEN["recorded"] == [True, False]  # purchase is necessary; search needs analytics
    choose(client, "custom", ("analytics",))
    client.get("/buy")
    assert SEEN["recorded"] == [True, True]
    assert mw.flush(5)
    actions = [e for e in sink.events if e.type == "action"]
    assert [(e.name, e.aggregate) for e in actions] == [
        ("purchase", True),
        ("purchase", False),
        ("search", False),
    ]
    # Recorded without tracking consent: no identifiers at all.
    assert actions[0].visitor_id is None and actions[0].ip is None
    assert actions[1].props == {"total": 12.5, "sku": "A1"}


def test_rule_actions_capture_configured_fields_and_email(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    choose(client, "accept_all")
    client.post(
        "/forums/7/post",
        data={
            "email": " Ann@Example.TEST ",
            "topic": "Help",
            "password": "hunter2",
            "phone": "+1 (555) 010-9999",
        },
    )
    client.get("/file.zip")
    client.post("/newsletter")
    assert mw.flush(5)
    actions = {e.name: e for e in sink.events if e.type == "action"}
    post = actions["forum_post"]
    assert post.email == "ann@example.test"
    assert post.props.get("topic") == "Help" and "password" not in post.props
    assert "email" not in post.props
    assert actions["download"].props == {"filename": "consentmw-1.0.zip"}
    assert "newsletter_signup" in actions


def test_actions_need_their_purpose(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    choose(client, "custom", ("analytics",))
    client.post("/newsletter")  # marketing not granted
    client.post("/forums/1/post", data={"topic": "x"})
    assert mw.flush(5)
    names = [e.name for e in sink.events if e.type == "action"]
    assert names == ["forum_post"]


def test_identify(make_client: Factory) -> None:
    sink = MemorySink()
    mw, client = tracked_site(make_client, sink)
    client.get("/login", headers={"X-Email": "ann@example.test"})
    assert SEEN["identified"] is False
    choose(client, "custom", ("analytics",))
    for bad in (
        "not-an-email",
        "a@b.test\r\nBcc: x@y.test",
        "Ann <ann@example.test>",
        "x" * 300 + "@a.test",
    ):
        client.get("/login", environ_overrides={"HTTP_X_EMAIL": bad})
        assert SEEN["identified"] is False
    client.get("/login", headers={"X-Email": "Ann@Example.test"})
    assert SEEN["identified"] is True
    assert mw.flush(5)
    ident = [e for e in sink.events if e.type == "identify"]
    assert len(ident) == 1 and ident[0].email == "ann@example.test" and ident[0].visitor_id


def test_email_hook(make_client: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    module = types.ModuleType("cmw_test_hooks")
    module.current_email = lambda environ: environ.get("HTTP_X_USER")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cmw_test_hooks", module)
    sink = MemorySink()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = make_config(
        tracking={"tracking_purpose": "analytics"},
        resolve={"email_hook": "cmw_test_hooks:current_email"},
    )
    mw, client = make_client(app, config, sinks={"memory://": sink})
    choose(client, "accept_all")
    client.get("/account", headers={"X-User": "Bob@Example.test"})
    assert mw.flush(5)
    assert visits(sink)[0].email == "bob@example.test"


def test_bad_email_hook_is_a_config_error() -> None:
    config = make_config(resolve={"email_hook": "nowhere.at_all:fn"})
    with pytest.raises(consentmw.ConfigError, match=r"resolve\.email_hook"):
        ConsentMiddleware(lambda e, s: [], config)


def test_x_forwarded_for_with_trusted_proxies(make_client: Factory) -> None:
    sink = MemorySink()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = make_config(
        tracking={"tracking_purpose": "analytics"},
        resolve={"trusted_proxies": 1, "anonymize_ip": "none"},
    )
    mw, client = make_client(app, config, sinks={"memory://": sink})
    choose(client, "accept_all")
    client.get(
        "/x",
        headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9"},
        environ_overrides={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert mw.flush(5)
    assert visits(sink)[0].ip == "198.51.100.9"


# ------------------------------------------------------------------ the invariant

#: More examples on demand: ``CMW_PROPERTY_EXAMPLES=1000 python -m pytest -k no_sink``.
PROPERTY_EXAMPLES = int(os.environ.get("CMW_PROPERTY_EXAMPLES", "60"))

_STEP = st.one_of(
    st.tuples(
        st.just("choose"),
        st.sampled_from(["accept_all", "reject_all", "custom"]),
        st.sets(st.sampled_from(["analytics", "marketing"])),
    ),
    st.tuples(st.just("get"), st.sampled_from(["/a", "/b", "/static/x.css"]), st.booleans()),
    st.tuples(
        st.just("record"),
        st.sampled_from(["purchase", "search", "newsletter_signup"]),
        st.booleans(),
    ),
    st.tuples(st.just("identify"), st.sampled_from(["ann@example.test", "bad"]), st.booleans()),
    st.tuples(st.just("post"), st.just("/forums/1/post"), st.booleans()),
)


@settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(_STEP, min_size=1, max_size=12),
    model=st.sampled_from(["opt-in", "opt-out", "notice"]),
)
def test_no_sink_holds_an_identifier_or_purpose_not_granted_at_that_moment(
    make_client: Factory, steps: list[Any], model: str
) -> None:
    sink = MemorySink()
    granted_at: dict[str, frozenset[str]] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ctx = consentmw.get_context(environ)
        rid = environ["HTTP_X_RID"]
        granted_at[rid] = ctx.consent.granted
        kind = environ.get("HTTP_X_KIND")
        if kind == "record":
            ctx.record(environ["HTTP_X_ARG"], n=1)
        elif kind == "identify":
            ctx.identify(environ["HTTP_X_ARG"])
        elif kind == "post":
            environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = make_config(policy={"model": model}, tracking=TRACKING)
    mw, client = make_client(app, config, sinks={"memory://": sink})
    for i, (kind, arg, extra) in enumerate(steps):
        rid = str(i)
        headers = {"X-Rid": rid, "X-Kind": kind, "X-Arg": str(arg)}
        if extra and kind in ("get", "record", "identify"):
            headers["Sec-GPC"] = "1"
        if kind == "choose":
            before = client.get("/_consent").get_json()
            granted_at[f"choice-{i}"] = frozenset()
            r = choose(client, arg, tuple(sorted(extra)) if arg == "custom" else ())
            assert r.status_code == 303, before
            after = client.get("/_consent").get_json()
            granted_at[f"choice-{i}"] = frozenset(after["granted"])
        elif kind == "post":
            client.post(
                "/forums/1/post", data={"email": "ann@example.test", "topic": "t"}, headers=headers
            )
        else:
            client.get(arg if kind == "get" else "/x", headers=headers)
    assert mw.flush(10)
    identifiers = ("visitor_id", "session_id", "ip", "email", "domain")
    for event in sink.events:
        has_id = any(getattr(event, f) for f in identifiers)
        if event.aggregate:
            assert not has_id, event
        if has_id:
            assert "analytics" in event.purposes, event
        # Every event's purposes were granted when it was collected: at some recorded moment.
        assert any(set(event.purposes) <= g | {"necessary"} for g in granted_at.values()), event
        assert set(event.purposes) <= mw.config.purpose_ids

"""Helpers for the core tests: a configuration, a clock, a wrapped app, the consent POST."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

import consentmw

OLD_KEY = "old-secret-0123456789abcdef"
NEW_KEY = "new-secret-0123456789abcdef"

BASE: dict[str, Any] = {
    "site": {"name": "shop.example.test", "secret_keys": [OLD_KEY, NEW_KEY], "mount": "/_consent"},
    "policy": {"version": "2014-12-12", "model": "opt-in", "consent_max_age_days": 180},
    "purposes": {
        "necessary": {"title": "Strictly necessary", "required": True},
        "analytics": {"title": "Improve our content"},
        "marketing": {"title": "Marketing contact", "gpc_opt_out": True},
    },
    "cookies": [
        {"name": "_ga", "match": "prefix", "purpose": "analytics"},
        {"name": "promo", "purpose": "marketing"},
        {"name": "lang", "purpose": "necessary"},
    ],
    "cookie_settings": {"secure": False, "samesite": "Lax", "undeclared": "block"},
    "sinks": {"events": ["memory://"]},
    "dispatch": {"flush_interval_ms": 20},
}

SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


def make_config(**overrides: Any) -> dict[str, Any]:
    """The base configuration with sections replaced or merged (``section={...}``)."""
    data = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def cookie_app(
    *set_cookies: str,
    body: bytes = b"<html><body>hi</body></html>",
    content_type: str = "text/html; charset=utf-8",
) -> Callable[..., Any]:
    """A WSGI app that sets the given cookies and records what it saw of consent."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ctx = consentmw.get_context(environ)
        environ["test.seen"] = ctx.consent
        headers = [("Content-Type", content_type)] + [("Set-Cookie", c) for c in set_cookies]
        start_response("200 OK", headers)
        return [body]

    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(
    clock: Clock,
) -> Iterator[Callable[..., tuple[consentmw.ConsentMiddleware, Client]]]:
    made: list[consentmw.ConsentMiddleware] = []

    def factory(
        app: Any = None, config: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[consentmw.ConsentMiddleware, Client]:
        mw = consentmw.ConsentMiddleware(
            app or cookie_app(), config or make_config(), clock=clock, **kw
        )
        made.append(mw)
        return mw, Client(mw)

    yield factory
    for mw in made:
        mw.close(timeout=5)


def set_cookie_names(response: Any) -> list[str]:
    """Every cookie name in the response's ``Set-Cookie`` headers."""
    return [h.split("=", 1)[0].strip() for h in response.headers.getlist("Set-Cookie")]


def app_cookies(response: Any) -> list[str]:
    """The application's cookies that went out (consentmw's own left aside: an HTML page
    with the banner starts the session that binds the banner's form token)."""
    return [n for n in set_cookie_names(response) if not n.startswith(("cmw_", "__Host-cmw_"))]


def csrf(client: Client) -> str:
    r = client.get("/_consent", headers={"Accept": "application/json"})
    assert r.status_code == 200
    token = r.get_json()["csrf"]
    assert isinstance(token, str)
    return token


def choose(client: Client, choice: str, purposes: tuple[str, ...] = (), **kw: Any) -> Any:
    form = [("choice", choice), ("next", "/")] + [("purpose", p) for p in purposes]
    form.append(("csrf", csrf(client)))
    from werkzeug.datastructures import MultiDict

    return client.post(
        "/_consent", data=MultiDict(form), headers=kw.pop("headers", SAME_ORIGIN), **kw
    )

"""Fixtures for the consent UI tests: a small configuration, sites wrapped in the middleware,
and helpers that make a decision or call the middleware as a WSGI server would."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.test import Client, EnvironBuilder

from consentmw import ConsentMiddleware

KEY = "ui-test-secret-key-0123456789abcdef"

BASE: dict[str, Any] = {
    "site": {"name": "shop.example.test", "secret_keys": [KEY]},
    "policy": {
        "version": "2014-12-12",
        "url": "/privacy",
        "history": [{"version": "2013-06-01", "purposes": ["necessary", "analytics"]}],
    },
    "purposes": {
        "necessary": {
            "title": "Strictly necessary",
            "description": "Session, cart and the record of your choices.",
            "required": True,
        },
        "analytics": {
            "title": "Improve our content",
            "description": "Statistics.",
            "translations": {"de": {"title": "Inhalte verbessern"}},
        },
        "marketing": {
            "title": "Marketing contact",
            "gpc_opt_out": True,
            "translations": {"de": {"title": "Werbung"}, "fr": {"title": "Publicité"}},
        },
    },
    "cookies": [
        {
            "name": "_ga",
            "match": "prefix",
            "purpose": "analytics",
            "description": "Visitor id",
            "max_age_days": 390,
        },
        {"name": "promo", "purpose": "marketing", "description": "Campaign"},
    ],
    "cookie_settings": {"secure": False},
    "tracking": {"page_visits": False},
    "sinks": {"events": ["memory://"]},
    "dispatch": {"spool": ""},
}

SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}

PAGE = b"<!doctype html><html><head><title>T</title></head><body><p>Hello</p></body></html>"


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config(**sections: Any) -> dict[str, Any]:
    """The base configuration with sections merged in (``ui={"banner": False}``)."""
    return merge(BASE, sections)


def html_app(
    body: bytes | Iterable[bytes] = PAGE,
    *,
    headers: Iterable[tuple[str, str]] = (),
    content_type: str = "text/html; charset=utf-8",
    status: str = "200 OK",
    content_length: bool = True,
) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering every request with ``body`` (bytes, or a list of chunks)."""
    chunks = [body] if isinstance(body, bytes) else list(body)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        out = [("Content-Type", content_type), *headers]
        if content_length:
            out.append(("Content-Length", str(sum(len(c) for c in chunks))))
        start_response(status, out)
        return list(chunks)

    return app


class Site:
    """A middleware around an app, and a werkzeug test client for it."""

    def __init__(self, app: Callable[..., Iterable[bytes]], cfg: dict[str, Any]) -> None:
        self.mw = ConsentMiddleware(app, cfg)
        self.client = Client(self.mw)

    def get(self, path: str = "/", **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def decide(self, choice: str, purposes: Iterable[str] = (), **headers: str) -> Any:
        """Make a decision through the consent endpoint (form POST, same origin)."""
        state = json.loads(self.client.get("/_consent").get_data(as_text=True))
        form = MultiDict(
            [("choice", choice), ("csrf", state["csrf"]), ("next", "/")]
            + [("purpose", p) for p in purposes]
        )
        response = self.client.post("/_consent", data=form, headers={**SAME_ORIGIN, **headers})
        assert response.status_code == 303, response.get_data(as_text=True)
        return response


@pytest.fixture
def make_site() -> Iterator[Callable[..., Site]]:
    """``make_site(app=None, **config_sections)``; every site is closed at teardown."""
    sites: list[Site] = []

    def factory(app: Callable[..., Iterable[bytes]] | None = None, **sections: Any) -> Site:
        site = Site(app or html_app(), config(**sections))
        sites.append(site)
        return site

    yield factory
    for site in sites:
        site.mw.close(timeout=5)


def call(
    mw: Any, path: str = "/", method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[str, list[tuple[str, str]], Any]:
    """Call the middleware as a server would: the status, the headers and the body iterable
    (not yet iterated)."""
    environ = EnvironBuilder(path=path, method=method, headers=headers or {}).get_environ()
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen[:] = [status, headers]
        return lambda data: None

    body = mw(environ, start_response)
    if not seen:  # a generator app calls start_response with its first chunk
        iterator = iter(body)
        first = next(iterator, b"")
        return seen[0], seen[1], _Prefixed(first, iterator, body)
    return seen[0], seen[1], body


class _Prefixed:
    def __init__(self, first: bytes, rest: Iterator[bytes], original: Any) -> None:
        self._first = first
        self._rest = rest
        self._original = original

    def __iter__(self) -> Iterator[bytes]:
        yield self._first
        yield from self._rest

    def close(self) -> None:
        close = getattr(self._original, "close", None)
        if close is not None:
            close()


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name.lower():
            return value
    return None


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each ``<script>``."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.script_text.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text[-1] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

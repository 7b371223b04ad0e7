"""Fixtures for the rights tests: two visitors recorded through the real middleware under two
policy versions, against SQLite, PostgreSQL or memory sinks, and the same site as a TOML file
for the command line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from werkzeug.test import Client

import consentmw
from consentmw.events import Event
from tests.core.support import SAME_ORIGIN, Clock, choose

OLD_KEY = "rights-old-key-0123456789abcdef"
NEW_KEY = "rights-new-key-0123456789abcdef"

V1 = "2013-06-01"
V2 = "2014-12-12"

PURPOSES_V1 = {
    "necessary": {"title": "Strictly necessary", "required": True},
    "analytics": {"title": "Improve our content"},
}
PURPOSES_V2 = {**PURPOSES_V1, "marketing": {"title": "Marketing contact"}}


def site_config(
    events: list[str],
    *,
    version: str = V2,
    spool: str | None = None,
    keys: Iterable[str] = (OLD_KEY, NEW_KEY),
    **sections: Any,
) -> dict[str, Any]:
    """The test site's configuration (policy ``version`` V1 or V2)."""
    data: dict[str, Any] = {
        "site": {"name": "shop.example.test", "secret_keys": list(keys)},
        "policy": {"version": version, "model": "opt-in"},
        "purposes": copy.deepcopy(PURPOSES_V2 if version == V2 else PURPOSES_V1),
        "cookie_settings": {"secure": False},
        "tracking": {"page_visits": True},
        "sinks": {"events": events},
        "dispatch": {"flush_interval_ms": 10, "spool": spool or ""},
        "ui": {"banner": False, "settings_link": False},
        "optout": {"contact": "privacy@example.test"},
    }
    if version == V2:
        data["policy"]["history"] = [{"version": V1, "purposes": ["necessary", "analytics"]}]
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for :func:`site_config` output (tables, nested tables, [[history]])."""
    lines: list[str] = []

    def table(prefix: str, mapping: dict[str, Any]) -> None:
        scalars = {k: v for k, v in mapping.items() if not isinstance(v, dict)}
        arrays = {
            k: v
            for k, v in scalars.items()
            if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
        }
        lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            if key not in arrays:
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in mapping.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}", value)
        for key, items in arrays.items():
            for item in items:
                lines.append(f"[[{prefix}.{key}]]")
                for k, v in item.items():
                    lines.append(f"{k} = {_toml_value(v)}")

    for name, section in data.items():
        table(name, section)
    return "\n".join(lines) + "\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """``/login?email=…`` identifies, ``/download`` records an action; everything else is a
    page."""
    ctx = consentmw.get_context(environ)
    path = environ["PATH_INFO"]
    if path == "/login":
        ctx.identify(parse_qs(environ.get("QUERY_STRING", ""))["email"][0])
    elif path == "/download":
        ctx.record("download", file="manual.pdf")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


class Switch:
    """A WSGI app that forwards to the current middleware, so one browser (a test client
    with its cookies) can visit the site before and after a policy change."""

    def __init__(self) -> None:
        self.mw: consentmw.ConsentMiddleware | None = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        assert self.mw is not None
        return self.mw(environ, start_response)


@dataclass
class Visitor:
    """What a test browser is known by."""

    email: str
    client: Client
    visitor_id: str = ""
    consent_id: str = ""


@dataclass
class Scenario:
    """The recorded site: its configurations, the running (V2) middleware and the two
    visitors."""

    config: dict[str, Any]
    mw: consentmw.ConsentMiddleware
    alice: Visitor
    bob: Visitor
    toml: Path | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def rights(self) -> consentmw.Rights:
        return self.mw.rights

    def events(self) -> list[Event]:
        """Every event in the first sink, oldest first."""
        sink = self.mw.sinks[self.config["sinks"]["events"][0]]
        return list(sink.query())  # type: ignore[attr-defined]


def _ids(visitor: Visitor, mw: consentmw.ConsentMiddleware) -> None:
    cookie = visitor.client.get_cookie("cmw_prefs")
    assert cookie is not None
    verified = mw.engine.prefs_signer.loads(cookie.value, 1e9)
    assert verified is not None
    visitor.visitor_id = verified.payload["vid"]
    visitor.consent_id = verified.payload["cid"]


def record(events: list[str], tmp_path: Path, *, spool: str | None = None) -> Scenario:
    """Alice and Bob accept everything under V1 (no marketing yet) and identify; under V2
    Alice visits once before choosing again, accepts all (marketing too) and downloads; Bob
    keeps analytics only. Returns the scenario with the V2 middleware running."""
    switch = Switch()
    alice = Visitor("alice@example.com", Client(switch))
    bob = Visitor("bob@example.com", Client(switch))
    v1 = site_config(events, version=V1, spool=spool)
    # Memory sinks live in the middleware: both versions of the site must share one.
    shared = {"memory://": consentmw.MemorySink()} if events == ["memory://"] else None
    switch.mw = first = consentmw.ConsentMiddleware(app, v1, sinks=shared)
    for visitor in (alice, bob):
        assert choose(visitor.client, "accept_all").status_code == 303
        visitor.client.get(f"/login?email={visitor.email.upper()}")
        visitor.client.get("/docs")
    alice.client.get("/download")
    assert switch.mw.flush(10)
    _ids(alice, switch.mw)
    _ids(bob, switch.mw)
    if shared is None:
        first.close(5)
    v2 = site_config(events, version=V2, spool=spool)
    mw = switch.mw = consentmw.ConsentMiddleware(app, v2, sinks=shared)
    alice.client.get("/pricing")
    assert choose(alice.client, "accept_all").status_code == 303
    alice.client.get("/offers")
    alice.client.get("/download")
    assert choose(bob.client, "custom", ("analytics",)).status_code == 303
    bob.client.get("/offers")
    assert mw.flush(10)
    made = Scenario(v2, mw, alice, bob)
    if shared is not None:
        made.closers.append(lambda: first.close(5))
    return made


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves by hand."""
    return Clock()


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The events sink URLs of one backend."""
    if request.param == "sqlite":
        return [f"sqlite:///{tmp_path}/events.db"]
    if request.param == "postgres":
        return [request.getfixturevalue("postgres_url")]
    return ["memory://"]


@pytest.fixture(params=["sqlite", "postgres"])
def durable_backend(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The events sink URLs of a backend a separate process can read (for the CLI)."""
    if request.param == "sqlite":
        return [f"sqlite:///{tmp_path}/events.db"]
    return [request.getfixturevalue("postgres_url")]


@pytest.fixture
def scenario(backend: list[str], tmp_path: Path) -> Iterator[Scenario]:
    spool = str(tmp_path / "spool.db") if backend != ["memory://"] else None
    made = record(backend, tmp_path, spool=spool)
    yield made
    made.mw.close(5)
    for close in made.closers:
        close()


@pytest.fixture
def durable_scenario(durable_backend: list[str], tmp_path: Path) -> Scenario:
    """The scenario on SQLite or PostgreSQL, its middleware closed, and a TOML file for the
    command line (``scenario.toml``)."""
    spool = str(tmp_path / "spool.db")
    made = record(durable_backend, tmp_path, spool=spool)
    made.mw.close(5)
    path = tmp_path / "consentmw.toml"
    path.write_text(to_toml(made.config), encoding="utf-8")
    made.toml = path
    return made


__all__ = ["SAME_ORIGIN", "Scenario", "Visitor", "record", "site_config", "to_toml"]

"""Sinks: where events and consent records go. :func:`open_sink` turns a URL into one.

URLs: ``memory://``, ``jsonl:///rel/path`` / ``jsonl:////abs/path``, ``sqlite:///rel.db`` /
``sqlite:////abs.db``, ``postgresql://user@host/db``, ``redis://host:port/db?stream=name``.
File paths follow SQLAlchemy: three slashes and a relative path, four for an absolute one.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..errors import ConfigError
from ._base import (
    AggregateRow,
    AggregatingSink,
    ConsentLogSink,
    ErasableSink,
    QueryableSink,
    RectifiableSink,
    Sink,
)
from .memory import MemorySink

__all__ = [
    "SCHEMES",
    "AggregateRow",
    "AggregatingSink",
    "ConsentLogSink",
    "ErasableSink",
    "MemorySink",
    "QueryableSink",
    "RectifiableSink",
    "Sink",
    "open_sink",
    "url_path",
]

#: URL scheme → "module:factory" that builds a sink from the URL.
SCHEMES = {
    "memory": "consentmw.sinks.memory:MemorySink",
    "jsonl": "consentmw.sinks.jsonl:JsonlSink.from_url",
    "sqlite": "consentmw.sinks.sqlite:SQLiteSink.from_url",
    "postgresql": "consentmw.sinks.postgres:PostgresSink.from_url",
    "postgres": "consentmw.sinks.postgres:PostgresSink.from_url",
    "redis": "consentmw.sinks.redis:RedisStreamSink.from_url",
}


def url_scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(
            "sinks", url, f"use one of {', '.join(s + '://' for s in SCHEMES)} (see the docs)"
        )
    return scheme.lower()


def url_path(url: str) -> str:
    """The file path of a ``jsonl://`` or ``sqlite://`` URL, SQLAlchemy style.

    ``sqlite:///events.db`` → ``events.db`` (relative to the working directory);
    ``sqlite:////var/db/events.db`` → ``/var/db/events.db``. A query string is dropped.
    """
    rest = url.partition("://")[2].partition("?")[0]
    if not rest.startswith("/"):
        # "jsonl://rel/path" (no host part): taken as written.
        return rest
    return rest[1:]


def open_sink(url: str, **options: Any) -> Sink:
    """Open the sink a URL names. A missing extra raises ``MissingDependencyError``."""
    if url.strip() == "memory://":
        return MemorySink()
    scheme = url_scheme(url)
    module_name, _, attr = SCHEMES[scheme].partition(":")
    target: Any = import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    sink: Sink = target(url, **options)
    return sink

"""SQL text shared by the SQLite and PostgreSQL sinks.

Both sinks store one row per event with one column per :data:`~consentmw.events.EVENT_FIELDS`
and answer ``query``, ``erase``, ``rectify`` and ``aggregate`` with the same ``WHERE`` clauses;
only the placeholder style, the purpose test and a few expressions differ. This module builds
those statements from a small :class:`Dialect`, always with parameters for values. Names
(tables) are the only text formatted into SQL, and :func:`identifier` admits nothing but a
plain lower-case identifier.

Not for the sinks that filter in Python (memory, JSONL, Redis): they use ``_filters``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..events import EVENT_FIELDS
from ._filters import check_aggregate_keys, check_rectify

__all__ = [
    "COLUMNS",
    "Dialect",
    "aggregate_sql",
    "erase_sql",
    "identifier",
    "query_sql",
    "rectify_sql",
    "ua_json",
    "where_sql",
]

#: Column list of the ``events`` table, in :data:`EVENT_FIELDS` order.
COLUMNS = ", ".join(EVENT_FIELDS)

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")


def identifier(name: str, field: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier, else ``ConfigError`` for ``field``.

    Only names that pass this check are ever formatted into SQL text.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            field, name, "use a plain lower-case SQL name: letters, digits and '_', max 63"
        )
    return name


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL sinks.

    ``param`` is the placeholder (``?`` or ``%s``); ``purpose`` a condition true when the
    row's purposes contain the one parameter it holds; ``day`` the expression for the ``day``
    grouping key; ``collate`` a suffix that makes ``ORDER BY`` compare code points, as Python
    does, so reports come out in the same order everywhere.
    """

    param: str
    purpose: str
    day: str = "substr(ts, 1, 10)"
    collate: str = ""


def where_sql(
    dialect: Dialect,
    *,
    subject: str | None = None,
    purpose: str | None = None,
    type: str | None = None,  # the event field's name
    since: str | None = None,
    until: str | None = None,
) -> tuple[str, list[object]]:
    """A ``WHERE`` clause (or ``""``) and its parameters for the query filters."""
    p = dialect.param
    terms: list[str] = []
    params: list[object] = []
    if subject is not None:
        # Two plain equalities joined by OR so each can use its own index.
        terms.append(f"(visitor_id = {p} OR email = {p})")
        params += [subject, subject.lower()]
    if purpose is not None:
        terms.append(dialect.purpose)
        params.append(purpose)
    if type is not None:
        terms.append(f"type = {p}")
        params.append(type)
    if since is not None:
        terms.append(f"ts >= {p}")
        params.append(since)
    if until is not None:
        terms.append(f"ts < {p}")
        params.append(until)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


def query_sql(
    dialect: Dialect,
    table: str,
    *,
    subject: str | None = None,
    purpose: str | None = None,
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> tuple[str, list[object]]:
    """``SELECT`` every column of matching events, oldest first (ties in arrival order)."""
    where, params = where_sql(
        dialect, subject=subject, purpose=purpose, type=type, since=since, until=until
    )
    return f"SELECT {COLUMNS} FROM {table}{where} ORDER BY ts, seq", params  # noqa: S608 - fixed names


def erase_sql(dialect: Dialect, table: str, subject: str) -> tuple[str, list[object]]:
    """``DELETE`` every event about ``subject``."""
    where, params = where_sql(dialect, subject=subject)
    return f"DELETE FROM {table}{where}", params  # noqa: S608 - fixed names


def rectify_sql(
    dialect: Dialect, table: str, subject: str, changes: Mapping[str, str | None]
) -> tuple[str, list[object]]:
    """``UPDATE`` the identifier fields in ``changes`` on every event about ``subject``.

    Raises a non-retryable ``SinkError`` for a field that is not an identifier; the column
    names formatted into the statement are therefore only ever the fixed identifier names.
    """
    check_rectify(changes)
    p = dialect.param
    sets = ", ".join(f"{key} = {p}" for key in changes)
    where, params = where_sql(dialect, subject=subject)
    return f"UPDATE {table} SET {sets}{where}", [*changes.values(), *params]  # noqa: S608 - fixed names


def aggregate_sql(
    dialect: Dialect,
    table: str,
    *,
    by: Sequence[str],
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> tuple[str, list[object]]:
    """``SELECT <keys>, count(*) … GROUP BY <keys>``; ``ValueError`` for an unknown key."""
    check_aggregate_keys(by)
    exprs = [dialect.day if key == "day" else key for key in by]
    where, params = where_sql(dialect, type=type, since=since, until=until)
    if not exprs:
        return f"SELECT count(*) FROM {table}{where}", params  # noqa: S608 - fixed names
    cols = ", ".join(exprs)
    # NULL sorts as "" (as MemorySink does), whatever the database's default NULL order is.
    order = ", ".join(f"COALESCE({e}, ''){dialect.collate}" for e in exprs)
    return f"SELECT {cols}, count(*) FROM {table}{where} GROUP BY {cols} ORDER BY {order}", params  # noqa: S608 - fixed names


_UA_TEXT = (str, type(None))
_ABSENT = object()


def ua_json(ua: Mapping[str, Any] | None, cache: dict[tuple[Any, ...], str]) -> str | None:
    """The compact JSON of an event's ``ua``, from ``cache`` when an equal one was encoded.

    Most events of a batch share a handful of user agents, and encoding the dict is most of
    a sink's per-event work. Only the usual shape is cached (the four keys, text or ``None``
    values, a real ``bool``): values equal across types (``1 == True``) must not share an
    entry. Anything else is encoded as it is. ``cache`` belongs to one ``write`` call.
    """
    if ua is None:
        return None
    if len(ua) == 4:
        browser = ua.get("browser", _ABSENT)
        os_name = ua.get("os", _ABSENT)
        device = ua.get("device", _ABSENT)
        is_bot = ua.get("is_bot", _ABSENT)
        if (
            is_bot.__class__ is bool
            and browser.__class__ in _UA_TEXT
            and os_name.__class__ in _UA_TEXT
            and device.__class__ in _UA_TEXT
        ):
            key = (browser, os_name, device, is_bot)
            text = cache.get(key)
            if text is None:
                text = cache[key] = json.dumps(ua, separators=(",", ":"))
            return text
    return json.dumps(ua, separators=(",", ":"), allow_nan=False)

"""Events: what consentmw records, as plain values.

An :class:`Event` is what every sink receives. The request thread never builds one: it appends
a small tuple to the dispatcher's queue, and the dispatcher turns it into an ``Event``
(assigning the id and the ISO timestamp, resolving and redacting) off the request path. Use
:meth:`Event.to_dict` / :meth:`Event.from_dict` to move events through JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_FIELDS",
    "EVENT_TYPES",
    "Event",
    "RequestFacts",
    "TimestampFormatter",
    "format_ts",
    "new_event_ids",
    "parse_ts",
]

#: The event types and what they record.
EVENT_TYPES = ("page_visit", "action", "consent", "identify", "optout")

#: Field order of the JSON form (and of the SQL sinks' columns).
EVENT_FIELDS = (
    "id",
    "type",
    "name",
    "ts",
    "site",
    "policy_version",
    "purposes",
    "aggregate",
    "visitor_id",
    "session_id",
    "method",
    "path",
    "status",
    "referrer",
    "ip",
    "domain",
    "email",
    "claimed_email",
    "ua",
    "props",
)

_UA_KEYS = ("browser", "os", "device", "is_bot")


@dataclass(slots=True, eq=True)
class Event:
    """One recorded fact.

    ``purposes`` are the purposes the event may be used for, fixed when it was collected;
    ``aggregate`` events carry no identifier at all (no visitor or session id, IP or e-mail).
    ``ua`` is ``{"browser", "os", "device", "is_bot"}`` or ``None``.
    """

    id: str
    type: str
    name: str | None
    ts: str
    site: str
    policy_version: str
    purposes: tuple[str, ...] = ()
    aggregate: bool = False
    visitor_id: str | None = None
    session_id: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    referrer: str | None = None
    ip: str | None = None
    domain: str | None = None
    email: str | None = None
    claimed_email: str | None = None
    ua: dict[str, Any] | None = None
    props: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field of :data:`EVENT_FIELDS`, ``purposes`` as a list."""
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "ts": self.ts,
            "site": self.site,
            "policy_version": self.policy_version,
            "purposes": list(self.purposes),
            "aggregate": self.aggregate,
            "visitor_id": self.visitor_id,
            "session_id": self.session_id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "referrer": self.referrer,
            "ip": self.ip,
            "domain": self.domain,
            "email": self.email,
            "claimed_email": self.claimed_email,
            "ua": None if self.ua is None else dict(self.ua),
            "props": dict(self.props),
        }

    def to_json(self) -> str:
        """One line of compact JSON (no NaN, keys in :data:`EVENT_FIELDS` order)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from its JSON form; raises ``ValueError`` on a malformed one."""
        try:
            ev_id = data["id"]
            ev_type = data["type"]
            ts = data["ts"]
            site = data["site"]
            version = data["policy_version"]
        except KeyError as exc:
            raise ValueError(f"event is missing the field {exc.args[0]!r}") from None
        for key, value in (("id", ev_id), ("type", ev_type), ("ts", ts), ("site", site)):
            if not isinstance(value, str):
                raise ValueError(f"event field {key!r} must be a string")
        if not isinstance(version, str):
            raise ValueError("event field 'policy_version' must be a string")
        purposes = data.get("purposes") or ()
        if isinstance(purposes, str) or not isinstance(purposes, Sequence):
            raise ValueError("event field 'purposes' must be a list of purpose ids")
        ua = data.get("ua")
        if ua is not None and not isinstance(ua, Mapping):
            raise ValueError("event field 'ua' must be an object or null")
        props = data.get("props") or {}
        if not isinstance(props, Mapping):
            raise ValueError("event field 'props' must be an object")
        status = data.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise ValueError("event field 'status' must be an integer or null")
        return cls(
            id=ev_id,
            type=ev_type,
            name=_opt_str(data, "name"),
            ts=ts,
            site=site,
            policy_version=version,
            purposes=tuple(str(p) for p in purposes),
            aggregate=bool(data.get("aggregate", False)),
            visitor_id=_opt_str(data, "visitor_id"),
            session_id=_opt_str(data, "session_id"),
            method=_opt_str(data, "method"),
            path=_opt_str(data, "path"),
            status=status,
            referrer=_opt_str(data, "referrer"),
            ip=_opt_str(data, "ip"),
            domain=_opt_str(data, "domain"),
            email=_opt_str(data, "email"),
            claimed_email=_opt_str(data, "claimed_email"),
            ua=None if ua is None else {k: ua.get(k) for k in _UA_KEYS},
            props=dict(props),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse one line written by :meth:`to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("an event must be a JSON object")
        return cls.from_dict(data)


@dataclass(slots=True)
class RequestFacts:
    """The raw request values enrichment needs, captured on the request thread as they came
    (no parsing there) and read by the dispatcher. Never stored in a sink as such: the
    dispatcher derives ``ip``, ``domain``, ``ua`` and ``claimed_email`` from them.

    ``remote_addr`` is the WSGI ``REMOTE_ADDR``; ``forwarded_for`` the raw
    ``X-Forwarded-For``; ``user_agent``, ``from_header`` and ``referrer`` the raw
    ``User-Agent``, ``From`` and ``Referer`` headers; ``host`` the ``Host`` header.
    """

    remote_addr: str | None = None
    forwarded_for: str | None = None
    user_agent: str | None = None
    from_header: str | None = None
    referrer: str | None = None
    host: str | None = None


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"event field {key!r} must be a string or null")
    return value


def format_ts(epoch: float) -> str:
    """UTC ISO-8601 with microseconds and ``Z``: fixed width, so the strings sort as times."""
    second = int(epoch)
    micro = int((epoch - second) * 1_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{micro:06d}Z"


class TimestampFormatter:
    """:func:`format_ts` with the formatted second cached, for formatting many in a row.

    One instance belongs to one thread (the dispatcher's); it is not shared by requests.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((epoch - second) * 1_000_000):06d}Z"


def parse_ts(text: str) -> float:
    """Inverse of :func:`format_ts` (accepts any ISO-8601 form ``datetime`` does)."""
    from datetime import datetime, timezone

    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def new_event_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as strings, from one ``os.urandom`` call."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out

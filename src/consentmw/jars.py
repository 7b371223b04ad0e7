"""Cookie jars: mutable mappings persisted in signed cookies.

``ctx.prefs``, ``ctx.session`` and ``ctx.cart`` are :class:`Jar` objects. They are verified
lazily (a jar nobody touches costs nothing), remember whether they changed (only then is a
``Set-Cookie`` sent), accept JSON values only, and refuse a write that would make the cookie
larger than a browser keeps (:class:`~consentmw.JarOverflowError` at the write, not a cookie
silently dropped later). Like Flask's session, a change *inside* a stored list or dict is not
seen: set ``jar.modified = True`` after mutating nested values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from .errors import JarOverflowError

__all__ = ["COOKIE_LIMIT", "Jar", "SessionJar"]

#: Bytes one ``Set-Cookie`` line may take, attributes included: RFC 6265 §6.1 counts name,
#: value and attributes towards the 4096 bytes a browser must keep, and werkzeug warns
#: above 4093.
COOKIE_LIMIT = 4093

# Base64 grows the JSON by 4/3; the timestamp and the HMAC-SHA256 signature add ~53 bytes.
_SIGNATURE_OVERHEAD = 60


def _estimated_size(name: str, data: Mapping[str, Any]) -> int:
    """An upper estimate of ``name=value`` for a jar that is not told its exact measure."""
    raw = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return len(name) + 1 + (len(raw) * 4 + 2) // 3 + _SIGNATURE_OVERHEAD


#: ``measure(data)`` gives the exact size in bytes of the ``name=value`` a jar holding
#: ``data`` becomes (the engine knows the wrapper, the signer and the other contents).
Measure = Callable[[Mapping[str, Any]], int]


class Jar(MutableMapping[str, Any]):
    """A mutable mapping whose contents live in one signed cookie.

    ``loader`` returns the verified contents (or ``None``) and is called on first use.
    """

    __slots__ = ("_data", "_label", "_loaded", "_loader", "_measure", "_name", "modified")

    def __init__(
        self,
        label: str,
        cookie_name: str,
        loader: Callable[[], Mapping[str, Any] | None],
        *,
        measure: Measure | None = None,
    ) -> None:
        self._label = label
        self._name = cookie_name
        self._loader = loader
        self._loaded = False
        self._measure = measure
        self._data: dict[str, Any] = {}
        self.modified = False

    def _load(self) -> dict[str, Any]:
        if not self._loaded:
            self._loaded = True
            loaded = self._loader()
            if loaded:
                self._data = dict(loaded)
        return self._data

    @property
    def loaded(self) -> bool:
        """Was the cookie read (verified) during this request?"""
        return self._loaded

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._label} {self._load()!r}>"

    def _check(self, candidate: Mapping[str, Any]) -> None:
        try:
            if self._measure is not None:
                size = self._measure(candidate)
            else:
                size = _estimated_size(self._name, candidate)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"ctx.{self._label} holds JSON values only (str, int, float, bool, None, "
                f"lists and dicts of them): {exc}"
            ) from None
        if size > COOKIE_LIMIT:
            raise JarOverflowError(self._label, size, COOKIE_LIMIT)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ctx.{self._label} keys are strings, not {type(key).__name__}")
        data = self._load()
        candidate = dict(data)
        candidate[key] = value
        self._check(candidate)
        data[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._load()[key]
        self.modified = True

    def clear(self) -> None:
        data = self._load()
        if data:
            self.modified = True
            data.clear()

    def snapshot(self) -> dict[str, Any]:
        """The contents as a plain dict, after checking they still fit (nested values may
        have grown behind ``modified = True``)."""
        data = dict(self._load())
        self._check(data)
        return data


class SessionJar(Jar):
    """The session: a jar with a session id, rotated on privilege changes."""

    __slots__ = ("_id", "_id_loader", "_new_id", "rotated")

    def __init__(
        self,
        cookie_name: str,
        loader: Callable[[], Mapping[str, Any] | None],
        id_loader: Callable[[], str | None],
        new_id: Callable[[], str],
        *,
        measure: Measure | None = None,
    ) -> None:
        super().__init__("session", cookie_name, loader, measure=measure)
        self._id_loader = id_loader
        self._id: str | None = None
        self._new_id = new_id
        self.rotated = False

    @property
    def id(self) -> str | None:
        """The session id, or ``None`` while there is no session."""
        self._load()
        return self._id

    def ensure_id(self) -> str:
        """The session id, starting a session (and its cookie) if there is none."""
        self._load()
        if self._id is None:
            self._id = self._new_id()
            self.modified = True
        return self._id

    def rotate(self) -> str:
        """Give the session a new id, keeping its contents (call it on log-in and log-out,
        against session fixation). Returns the new id."""
        self._load()
        self._id = self._new_id()
        self.modified = True
        self.rotated = True
        return self._id

    def _load(self) -> dict[str, Any]:
        if not self._loaded:
            data = super()._load()
            self._id = self._id_loader()
            return data
        return self._data

"""Cookie header parsing and Set-Cookie rendering, over plain strings.

Reading: :func:`find_cookies` pulls our few cookies out of a ``Cookie`` header with one split.
It does not use ``http.cookies.SimpleCookie``, which drops *every* cookie when one foreign
cookie is malformed, nor a full parser, since we only need our own names — all their
occurrences, because duplicates must be seen (the most restrictive wins). It never raises.

Writing: :class:`CookieWriter` builds our cookies as :class:`CookieSpec` values — the name,
the value and every attribute, from the validated configuration — and deletions with the
very same attributes (a deletion with another ``Path`` or ``Domain`` deletes nothing). A
spec is the neutral form each integration renders: :meth:`CookieSpec.header` with
werkzeug's ``dump_cookie`` for WSGI, ``response.set_cookie`` for Django.

Filtering the application's cookies: :func:`set_cookie_name` and :func:`is_deletion` read a
``Set-Cookie`` value as a browser would (RFC 6265 §5.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from werkzeug.http import dump_cookie, parse_date

__all__ = [
    "CookieNames",
    "CookieSpec",
    "CookieWriter",
    "find_cookies",
    "is_deletion",
    "parent_domains",
    "path_ancestors",
    "set_cookie_name",
    "split_cookie_header",
]

#: The cookie header is capped before splitting: browsers send at most a few KiB per cookie
#: and ~180 cookies; more is hostile.
MAX_COOKIE_HEADER = 64 * 1024


@dataclass(frozen=True, slots=True)
class CookieNames:
    """Our cookie names, with the ``__Host-`` / ``__Secure-`` prefixes when secure."""

    prefs: str
    session: str
    cart: str

    @classmethod
    def for_settings(cls, *, secure: bool, domain: str | None) -> CookieNames:
        if not secure:
            return cls("cmw_prefs", "cmw_session", "cmw_cart")
        # __Host- forbids a Domain attribute; a subdomain-wide prefs cookie is __Secure-.
        prefs = "__Secure-cmw_prefs" if domain else "__Host-cmw_prefs"
        return cls(prefs, "__Host-cmw_session", "__Host-cmw_cart")

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.prefs, self.session, self.cart)


def find_cookies(
    header: str | None, names: Sequence[str], marker: str = "cmw_"
) -> dict[str, list[str]]:
    """Every value sent under each of ``names`` (exact, case-sensitive match).

    Values are returned as sent, with surrounding double quotes removed. Anything
    malformed is skipped. ``marker`` is a string every one of ``names`` contains: the
    header is searched for it (``str.find``, in C) and only the pairs around its
    occurrences are looked at, instead of splitting every pair of the header.
    """
    found: dict[str, list[str]] = {}
    if not header:
        return found
    if len(header) > MAX_COOKIE_HEADER:
        header = header[:MAX_COOKIE_HEADER]
    if not marker or not all(marker in name for name in names):
        marker = ""  # no common marker: look at every pair
    size = len(header)
    at = header.find(marker) if marker else 0
    while 0 <= at < size:
        start = header.rfind(";", 0, at) + 1
        end = header.find(";", at)
        if end == -1:
            end = size
        name, sep, value = header[start:end].partition("=")
        name = name.strip(" \t")
        if sep and name in names:
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found.setdefault(name, []).append(value)
        at = header.find(marker, end) if marker else end + 1
    return found


def split_cookie_header(header: str | None) -> list[tuple[str, str]]:
    """Every ``(name, value)`` pair in a ``Cookie`` header, leniently, never raising."""
    out: list[tuple[str, str]] = []
    if not header:
        return out
    for part in header[:MAX_COOKIE_HEADER].split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name:
            out.append((name, value.strip()))
    return out


def set_cookie_name(header_value: str) -> str:
    """The cookie name a browser would read from a ``Set-Cookie`` value.

    RFC 6265 §5.2: the name-value pair is everything before the first ``;``; without an
    ``=`` in it, the name is empty.
    """
    pair = header_value.split(";", 1)[0]
    name, sep, _ = pair.partition("=")
    return name.strip() if sep else ""


def is_deletion(header_value: str, now: float) -> bool:
    """Does this ``Set-Cookie`` value delete its cookie? Deleting is always allowed,
    whatever the consent, so this reads the value exactly as a browser does (RFC 6265
    §5.2.2, §5.3 step 3): the *last* valid ``Max-Age`` decides (``<= 0`` deletes), and only
    without one the last valid ``Expires`` (in the past deletes). Invalid attributes are
    ignored, as browsers ignore them."""
    lowered = header_value.lower()
    if "max-age" not in lowered and "expires" not in lowered:
        return False  # the common case: nothing that could delete it
    max_age: int | None = None
    expires: float | None = None
    for attr in header_value.split(";")[1:]:
        key, _, val = attr.partition("=")
        key = key.strip().lower()
        val = val.strip()
        if key == "max-age":
            digits = val[1:] if val.startswith("-") else val
            if digits.isdigit() and digits.isascii():
                max_age = int(val)
        elif key == "expires":
            when = parse_date(val)
            if when is not None:
                expires = when.timestamp()
    if max_age is not None:
        return max_age <= 0
    return expires is not None and expires <= now


def path_ancestors(*paths: str, limit: int = 4) -> list[str]:
    """``/`` and the directories above each request path (``/shop/cart/1`` gives ``/``,
    ``/shop``, ``/shop/cart``): the paths a cookie sent with that request may have been
    set for, by an explicit ``Path`` or by the default path (RFC 6265 §5.1.4)."""
    out = ["/"]
    for path in paths:
        parts = [p for p in path.split("?", 1)[0].split("/") if p][:limit]
        for i in range(1, len(parts)):
            candidate = "/" + "/".join(parts[:i])
            if candidate not in out and len(candidate) <= 200:
                out.append(candidate)
    return out[: limit + 1]


def parent_domains(host: str, configured: str | None) -> list[str | None]:
    """Domains a cookie the browser sent may have been set for: host-only (``None``), the
    configured parent domain, and every parent of the host above its top-level label.

    Used to expire withdrawn cookies: the ``Cookie`` header does not say where a cookie was
    set, so a deletion is sent for each candidate.
    """
    out: list[str | None] = [None]
    if configured:
        out.append(configured.lstrip("."))
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.strip().lower().rstrip(".")
    labels = host.split(".")
    is_ip = all(label.isdigit() for label in labels) or ":" in host or "[" in host
    if not is_ip:
        for i in range(len(labels) - 1):
            candidate = ".".join(labels[i:])
            if candidate and candidate not in out:
                out.append(candidate)
    return out


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """One cookie to send: its name, value and every attribute.

    A deletion is a spec with ``max_age == 0`` (:attr:`deletes`); it is rendered with an
    ``Expires`` in 1970 as well, for clients that ignore ``Max-Age``.
    """

    name: str
    value: str
    max_age: int | None
    path: str
    domain: str | None
    secure: bool
    httponly: bool
    samesite: str | None

    @property
    def deletes(self) -> bool:
        """Does this spec delete its cookie?"""
        return self.max_age == 0

    def header(self) -> str:
        """The ``Set-Cookie`` header value (werkzeug's ``dump_cookie``)."""
        return dump_cookie(
            self.name,
            self.value,
            max_age=self.max_age,
            expires=0 if self.deletes else None,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )


class CookieWriter:
    """Builds our cookies, and deletions, with the configured attributes."""

    __slots__ = ("domain", "path", "samesite", "secure")

    def __init__(self, *, secure: bool, samesite: str, path: str, domain: str | None) -> None:
        self.secure = secure
        self.samesite = samesite
        self.path = path
        self.domain = domain

    def cookie(
        self, name: str, value: str, *, max_age: float | None, shared: bool = False
    ) -> CookieSpec:
        """One of our cookies. ``shared``: carry the configured ``Domain`` (prefs only);
        ``__Host-`` cookies are always host-only with ``Path=/``."""
        host_only = name.startswith("__Host-") or not shared
        return CookieSpec(
            name,
            value,
            max_age=None if max_age is None else int(max_age),
            path="/" if name.startswith("__Host-") else self.path,
            domain=None if host_only else self.domain,
            secure=self.secure,
            httponly=True,
            samesite=self.samesite,
        )

    def deletion(self, name: str, *, shared: bool = False) -> CookieSpec:
        """The deletion matching :meth:`cookie` for the same name: identical attributes."""
        return self.cookie(name, "", max_age=0, shared=shared)

    def foreign_deletions(
        self, name: str, domains: Iterable[str | None], paths: Sequence[str] = ("/",)
    ) -> list[CookieSpec]:
        """Deletions of someone else's cookie for each candidate domain and path (the
        ``Cookie`` header says neither where nor for which path a cookie was set)."""
        secure = self.secure and name.startswith(("__Secure-", "__Host-"))
        return [
            CookieSpec(name, "", 0, path, domain, secure, False, None)
            for domain in domains
            for path in paths
        ]

    # Rendered forms, for callers that want header values directly.

    def set(self, name: str, value: str, *, max_age: float | None, shared: bool = False) -> str:
        """The ``Set-Cookie`` value of :meth:`cookie`."""
        return self.cookie(name, value, max_age=max_age, shared=shared).header()

    def delete(self, name: str, *, shared: bool = False) -> str:
        """The ``Set-Cookie`` value of :meth:`deletion`."""
        return self.deletion(name, shared=shared).header()

    def expire_foreign(self, name: str, domains: Iterable[str | None]) -> list[str]:
        """The ``Set-Cookie`` values of :meth:`foreign_deletions`."""
        return [spec.header() for spec in self.foreign_deletions(name, domains)]

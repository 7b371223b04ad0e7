"""Suppression lists: who must not be e-mailed or called, as keyed hashes.

The policy promises an opt-out link in every e-mail and no telephone calls to those who
object. Marketing tools ask :meth:`SuppressionList.is_suppressed` before they mail or call;
the opt-out links and ``consentmw suppressed --add`` fill the list.

**Addresses are normalised** before hashing, so one person has one key: e-mail addresses by
:func:`consentmw.resolve.email.normalize_email` (lower case, IDNA domain); telephone numbers
by :func:`normalize_address` — the redactor's :func:`~consentmw.resolve.redact.normalize_phone`
(digits and a leading ``+``) after turning an ``00`` international prefix into ``+`` and
dropping the ``(0)`` trunk digit written after a country code (``+44 (0)20 …``). A number
written without its country code cannot be told from the same number with it; store numbers
in international form to match reliably.

**The hashing scheme** is HMAC-SHA256 keyed with a random 32-byte *pepper* kept in the rights
store itself (created on first use, never rotated), over ``"<channel>\\0<normalised
address>"``. Why not the site's secret keys: keys rotate, and an entry hashed under a key
that is later dropped could never be found again — a suppression list that silently forgets
is worse than none. Why not a plain SHA-256: the SHA-256 of a lower-cased e-mail address is
the "hashed e-mail" of the advertising trade, so a plain hash would make the list joinable
with other people's data and open to lookup tables; keyed by a pepper nobody else has, the
digests mean nothing outside this store. The pepper lives with the digests, so someone who
steals the whole store can still test guessed addresses one by one; that is the price of a
list that must never forget.

Not for deciding consent: a suppression entry stops contact on one channel, it does not
change what the visitor granted on the site.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from ..events import format_ts
from ..resolve.email import normalize_email
from ..resolve.redact import normalize_phone
from .store import RightsStore

__all__ = [
    "CHANNELS",
    "SuppressionList",
    "address_digest",
    "identifier_digest",
    "normalize_address",
]

#: The contact channels with a suppression list.
CHANNELS = ("email", "phone")

_TRUNK = re.compile(r"^(\+\d{1,3}|00\d{1,3})\s*\(0\)")


def normalize_address(address: object, channel: str) -> str | None:
    """The canonical form of an address on ``channel`` (``email`` or ``phone``), or ``None``
    when it is not one. Never raises for bad input; ``ValueError`` for an unknown channel."""
    if channel == "email":
        return normalize_email(address) if isinstance(address, str) else None
    if channel == "phone":
        if not isinstance(address, str):
            return None
        text = _TRUNK.sub(r"\1", address.strip())
        phone = normalize_phone(text)
        if phone is not None and phone.startswith("00") and len(phone) > 4:
            phone = "+" + phone[2:]
            if len(phone) > 16:  # E.164: at most 15 digits after the +
                return None
        return phone
    raise ValueError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")


def address_digest(pepper: bytes, channel: str, normalized: str) -> str:
    """The hex HMAC-SHA256 of a normalised address on a channel (see the module docstring)."""
    message = f"{channel}\x00{normalized}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def identifier_digest(pepper: bytes, identifier: str) -> str:
    """The hex HMAC-SHA256 of a visitor id or a normalised e-mail address, for restrictions
    (a namespace of its own, so no digest is ever equal to a suppression digest)."""
    message = f"id\x00{identifier}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


class SuppressionList:
    """The suppression lists of one rights store.

    ``clock`` returns epoch seconds (for the entries' creation time).
    """

    def __init__(self, store: RightsStore, *, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def digest(self, address: object, channel: str = "email") -> str | None:
        """The digest an address is listed under, or ``None`` if it is not an address."""
        normalized = normalize_address(address, channel)
        if normalized is None:
            return None
        return address_digest(self._store.pepper(), channel, normalized)

    def add(self, address: object, channel: str = "email", purpose: str | None = None) -> bool:
        """Suppress ``address`` on ``channel`` (for ``purpose`` only, or every purpose).
        ``True`` if this is a new entry; ``ValueError`` if ``address`` is not one."""
        digest = self.digest(address, channel)
        if digest is None:
            raise ValueError(f"not a valid {channel} address")
        return self._store.add_suppression(channel, digest, purpose, format_ts(self._clock()))

    def is_suppressed(
        self, address: object, channel: str = "email", purpose: str | None = None
    ) -> bool:
        """May ``address`` not be contacted on ``channel``?

        With ``purpose``: true when the address opted out of every purpose on that channel or
        of that one. Without: true when it opted out of anything on that channel (a caller
        that does not say why it makes contact must assume the strictest answer). An
        address that does not parse is never suppressed (there is nothing to contact).
        """
        digest = self.digest(address, channel)
        if digest is None:
            return False
        entries = self._store.suppression(channel, digest)
        if purpose is None:
            return bool(entries)
        return None in entries or purpose in entries

    def channels(self, address: object) -> list[str]:
        """The channels on which ``address`` (an e-mail address or a telephone number) is
        suppressed for some purpose."""
        return [c for c in CHANNELS if self.is_suppressed(address, c)]

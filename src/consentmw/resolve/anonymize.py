"""What is kept of a visitor's IP address once it has been used.

The dispatcher needs the full address only while it resolves the visitor's domain; what is
stored is decided here, by the ``resolve.anonymize_ip`` mode:

``none``
    the address as it came (normalised);
``truncate``
    the network the address belongs to, host bits zeroed (``203.0.113.7`` → ``203.0.113.0``
    with the default /24, ``2001:db8:1:2::7`` → ``2001:db8:1::`` with /48): still good for
    coarse geography and abuse ranges, no longer one household;
``hash``
    ``h:`` and the HMAC-SHA256 of the address under a salt: equal addresses stay equal, so
    visits can be counted per address, but only as long as the salt lives. With
    :class:`DailySalt` that is one UTC day, so hashes of different days cannot be linked;
``drop``
    nothing.

Note that a hash of an IPv4 address is not anonymous to anyone who knows the salt: there are
only 2**32 addresses to try. Keep the secret behind :class:`DailySalt` as secret as the
signing keys. Do not use this module to pseudonymise anything but IP addresses.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable

__all__ = ["ANONYMIZE_MODES", "DailySalt", "anonymize_ip"]

#: The modes :func:`anonymize_ip` accepts.
ANONYMIZE_MODES = ("none", "truncate", "hash", "drop")

#: Prefix of hashed addresses, so a reader can tell them from addresses.
HASH_PREFIX = "h:"


def anonymize_ip(
    ip: str | None,
    mode: str,
    *,
    salt: bytes = b"",
    v4_prefix: int = 24,
    v6_prefix: int = 48,
) -> str | None:
    """Return what may be stored of ``ip`` under ``mode`` (see the module documentation).

    ``ip`` is an address as :func:`~consentmw.resolve.clientip.client_ip` returns it; text
    that is not an address gives ``None`` in every mode (never an exception). ``v4_prefix``
    and ``v6_prefix`` are the network prefix lengths kept by ``truncate``; ``salt`` is the
    HMAC key of ``hash``.

    :raises ValueError: for an unknown ``mode``, a prefix length out of range, or the
        ``hash`` mode with an empty ``salt`` (the hash of an address without a secret is
        the address, to anyone who tries all of them). These are configuration errors and
        are checked by :class:`~consentmw.resolve.enrich.Enricher` at start-up.
    """
    if mode not in ANONYMIZE_MODES:
        raise ValueError(f"unknown IP anonymisation mode {mode!r}; use one of {ANONYMIZE_MODES}")
    if not 0 <= v4_prefix <= 32 or not 0 <= v6_prefix <= 128:
        raise ValueError("v4_prefix must be within 0..32 and v6_prefix within 0..128")
    if mode == "hash" and not salt:
        raise ValueError("the hash mode needs a secret salt (see DailySalt)")
    if ip is None or mode == "drop":
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if mode == "none":
        return str(address)
    if mode == "truncate":
        # Zero the host bits with integer arithmetic (ip_network() costs several times more,
        # and this runs for every event of every batch).
        prefix = v4_prefix if address.version == 4 else v6_prefix
        host_bits = address.max_prefixlen - prefix
        return str(type(address)(int(address) >> host_bits << host_bits))
    # Hash the packed form, so every spelling of one address gives one hash.
    digest = hmac.new(salt, address.packed, hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


class DailySalt:
    """A salt for the ``hash`` mode that changes at every UTC midnight.

    The salt of a day is ``HMAC-SHA256(secret, "consentmw.ip-salt:" + ISO date)``: nothing is
    stored, every process that has the secret derives the same salt for the same day (so
    several workers and sites agree), and without the secret the salts of two days cannot be
    related, so neither can the hashes. ``clock`` returns seconds since the epoch
    (:func:`time.time` unless a test injects one).

    :raises ValueError: if ``secret`` is shorter than 16 bytes.
    """

    __slots__ = ("_cached", "_clock", "_lock", "_secret")

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the IP salt secret must be at least 16 bytes")
        self._secret = bytes(secret)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[_dt.date, bytes] | None = None

    def for_day(self, day: _dt.date) -> bytes:
        """The salt of the UTC day ``day``."""
        message = b"consentmw.ip-salt:" + day.isoformat().encode("ascii")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def current(self) -> bytes:
        """The salt of the current UTC day (derived once per day, then cached)."""
        today = _dt.datetime.fromtimestamp(self._clock(), _dt.timezone.utc).date()
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] != today:
                cached = self._cached = (today, self.for_day(today))
        return cached[1]

    def __repr__(self) -> str:
        # Never show the secret, nor anything derived from it.
        return "DailySalt(<secret>)"

"""Signed values over itsdangerous: a key ring, one salt per use, a format version inside.

Keys are ordered oldest → newest: values are signed with the newest and verified newest
first, so a rotation is "append a key, later drop the oldest". A value verified with an older
key is reported as such, and the middleware re-signs it with the newest on the response.

``max_age`` is always enforced from the signed timestamp, with a small leeway for clocks that
run ahead: itsdangerous rejects any timestamp in the future, so a value signed by a host two
seconds ahead of this one would fail there. Verification never raises: a value that is
garbled, tampered with, signed with an unknown key, too old or of another format version is
simply ``None``, and the caller treats it as absent.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from itsdangerous import TimestampSigner

__all__ = ["FORMAT_VERSION", "KeyRing", "ValueSigner", "Verified"]

#: The payload format version. A payload of another version is rejected.
FORMAT_VERSION = 1

#: Seconds a signed timestamp may lie in the future (clock skew between hosts).
CLOCK_LEEWAY = 30.0

# The characters a signed value may hold. Checked with bytes.translate (deleting them must
# leave nothing), which runs in C; a set's issuperset boxes every byte as an int.
_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
_MAX_VALUE = 8192
# HMAC-SHA256: 32 bytes, 43 base64 characters.
_SIG_LEN = 43
_CACHE_SIZE = 4096
# json.dumps with non-default options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=True)


class KeyRing:
    """Secret keys, oldest first. Holds the keys; never prints them."""

    __slots__ = ("keys",)

    def __init__(self, keys: Sequence[bytes | str]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self.keys: tuple[bytes, ...] = tuple(
            k.encode("utf-8") if isinstance(k, str) else bytes(k) for k in keys
        )

    @property
    def newest(self) -> bytes:
        return self.keys[-1]

    def __repr__(self) -> str:
        return f"<KeyRing {len(self.keys)} keys>"

    def signer(self, salt: str, *, clock: Callable[[], float] = time.time) -> ValueSigner:
        """A :class:`ValueSigner` for one use (one salt)."""
        return ValueSigner(self, salt, clock=clock)


class _Signer(TimestampSigner):
    """itsdangerous' TimestampSigner with derived keys computed once, and a clock."""

    default_digest_method = staticmethod(hashlib.sha256)
    default_key_derivation = "hmac"

    def __init__(self, keys: Sequence[bytes], salt: str, clock: Callable[[], float]) -> None:
        super().__init__(list(keys), salt=salt)
        self._clock = clock
        self._derived = {k: TimestampSigner.derive_key(self, k) for k in self.secret_keys}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is None:
            return self._derived[self.secret_keys[-1]]
        key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        return self._derived[key]

    def get_timestamp(self) -> int:
        return int(self._clock())


class Verified(NamedTuple):
    """A payload that passed verification. ``old_key``: signed with a key other than the
    newest, so it should be re-signed; ``signed_at``: the signed timestamp (epoch seconds).
    (A named tuple: built for every first verification, and immutable.)"""

    payload: Mapping[str, Any]
    signed_at: int
    old_key: bool


class ValueSigner:
    """Signs JSON objects into cookie-safe strings (base64url and ``.`` only) and back.

    The payload gets ``"v": FORMAT_VERSION``. :meth:`loads` returns ``None`` for anything
    that does not verify; it never raises. Values that verified are remembered (a bounded
    cache per signer, keyed by the exact value), so a browser sending the same cookie again
    costs a lookup and the age check, not an HMAC; the payloads handed out are shared and
    must not be mutated.
    """

    __slots__ = ("_cache", "_clock", "_keys", "_newest", "salt")

    def __init__(self, ring: KeyRing, salt: str, *, clock: Callable[[], float] = time.time) -> None:
        self.salt = salt
        self._clock = clock
        # itsdangerous' own signer with the newest key (what dumps() reproduces).
        self._newest = _Signer([ring.newest], salt, clock)
        # Derived keys, newest first, as itsdangerous derives them (HMAC key derivation).
        derived = _Signer(ring.keys, salt, clock)
        self._keys = [derived.derive_key(k) for k in reversed(ring.keys)]
        self._cache: dict[str, Verified] = {}

    def dumps(self, payload: Mapping[str, Any]) -> str:
        """Sign ``payload`` (a JSON object) with the newest key and the current time."""
        body = dict(payload)
        body["v"] = FORMAT_VERSION
        raw = _ENCODER.encode(body)
        # What itsdangerous' TimestampSigner.sign makes (payload.timestamp.signature, the
        # timestamp as its big-endian bytes without leading zeros), built here directly: its
        # generic path costs several Python calls per value, and the banner signs two.
        timestamp = int(self._clock()).to_bytes(8, "big").lstrip(b"\x00")
        signed = _b64encode(raw.encode("ascii")) + b"." + _b64encode(timestamp)
        signature = _b64encode(hmac.digest(self._keys[0], signed, "sha256"))
        return (signed + b"." + signature).decode("ascii")

    def clear_cache(self) -> None:
        """Forget every verified value (after an erasure: the payloads hold identifiers)."""
        self._cache.clear()

    def signed_size(self, payload: Mapping[str, Any]) -> int:
        """The length :meth:`dumps` gives for ``payload`` now, without signing it."""
        body = dict(payload)
        body["v"] = FORMAT_VERSION
        raw = _ENCODER.encode(body)
        timestamp = int(self._clock()).to_bytes(8, "big").lstrip(b"\x00")
        # base64url without padding: 4 characters per 3 bytes, rounded up.
        return (len(raw) * 4 + 2) // 3 + 1 + (len(timestamp) * 4 + 2) // 3 + 1 + _SIG_LEN

    def loads(self, value: str, max_age: float) -> Verified | None:
        """Verify ``value`` and return its payload, or ``None`` if it does not verify, is
        older than ``max_age`` seconds (or more than the leeway in the future), or is not a
        JSON object of the current format version."""
        hit = self._cache.get(value)
        if hit is not None:
            age = self._clock() - hit.signed_at
            if age > max_age or age < -CLOCK_LEEWAY:
                return None
            return hit  # immutable, like the payload it shares
        verified = self._verify(value, max_age)
        if verified is not None:
            cache = self._cache
            if len(cache) >= _CACHE_SIZE:
                # The oldest eighth in one pass (one at a time, each eviction would walk
                # the deleted slots at the front of the dict).
                try:
                    for key in list(itertools.islice(cache, _CACHE_SIZE // 8)):
                        del cache[key]
                except (KeyError, RuntimeError):
                    cache.clear()
            cache[value] = verified
        return verified

    def _verify(self, value: str, max_age: float) -> Verified | None:
        if not value or len(value) > _MAX_VALUE:
            return None
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            return None
        if data.translate(None, _ALLOWED):
            return None
        parts = data.split(b".")
        if len(parts) != 3:
            return None
        body, ts_raw, sig = parts
        if len(sig) != _SIG_LEN:
            return None
        signed = body + b"." + ts_raw
        old_key = False
        # Compare the encoded signature, in constant time: base64 decoding would ignore the
        # unused low bits of the last character, and a value must fail on any change.
        for i, key in enumerate(self._keys):
            expected = _b64encode(hmac.digest(key, signed, "sha256"))
            if hmac.compare_digest(expected, sig):
                old_key = i > 0
                break
        else:
            return None
        try:
            signed_at = int.from_bytes(_b64decode(ts_raw), "big")
            payload = json.loads(_b64decode(body).decode("utf-8"))
        except ValueError:
            return None
        age = self._clock() - signed_at
        if age > max_age or age < -CLOCK_LEEWAY:
            return None
        if not isinstance(payload, dict) or type(payload.get("v")) is not int:
            return None
        if payload["v"] != FORMAT_VERSION:
            return None
        return Verified(payload, signed_at, old_key)


# base64url by hand over binascii: base64.urlsafe_b64decode/encode add several Python-level
# calls per value, and a first verification decodes two parts and encodes one signature.
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64decode(data: bytes) -> bytes:
    """base64url without padding, leniently as ``base64.urlsafe_b64decode`` (raises
    ``binascii.Error``, a ``ValueError``)."""
    return binascii.a2b_base64(data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4))


def _b64encode(data: bytes) -> bytes:
    """base64url without padding, as itsdangerous' ``base64_encode``."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")

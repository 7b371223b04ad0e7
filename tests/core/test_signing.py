"""The key ring and signed values: rotation, max_age with leeway, tampering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw.signing import CLOCK_LEEWAY, KeyRing, ValueSigner
from tests.core.support import Clock

OLD, NEW = b"old-secret-0123456789abcdef", b"new-secret-0123456789abcdef"


def signer(
    keys: tuple[bytes, ...] = (OLD, NEW), salt: str = "prefs", clock: Clock | None = None
) -> ValueSigner:
    return KeyRing(keys).signer(salt, clock=clock or Clock())


def test_round_trip_carries_the_format_version() -> None:
    s = signer()
    value = s.dumps({"g": ["analytics"]})
    verified = s.loads(value, 60)
    assert verified is not None
    assert verified.payload == {"g": ["analytics"], "v": 1}
    assert verified.old_key is False
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_old_key_verifies_and_is_flagged_new_signs() -> None:
    clock = Clock()
    old_value = signer((OLD,), clock=clock).dumps({"a": 1})
    ring = signer((OLD, NEW), clock=clock)
    verified = ring.loads(old_value, 60)
    assert verified is not None and verified.old_key is True
    fresh = ring.dumps({"a": 1})
    assert signer((NEW,), clock=clock).loads(fresh, 60) is not None
    # A removed key no longer verifies.
    assert signer((NEW,), clock=clock).loads(old_value, 60) is None


def test_salts_separate_uses() -> None:
    value = signer(salt="prefs").dumps({})
    assert signer(salt="session").loads(value, 60) is None


def test_max_age_from_the_signed_timestamp() -> None:
    clock = Clock()
    s = signer(clock=clock)
    value = s.dumps({})
    clock.advance(100)
    assert s.loads(value, 100) is not None
    clock.advance(1)
    assert s.loads(value, 100) is None


def test_a_host_two_seconds_ahead_still_verifies_but_not_far_future() -> None:
    clock = Clock()
    ahead = Clock(clock.now + 2)
    assert signer(clock=clock).loads(signer(clock=ahead).dumps({}), 60) is not None
    far = Clock(clock.now + CLOCK_LEEWAY + 5)
    assert signer(clock=clock).loads(signer(clock=far).dumps({}), 60) is None


def test_other_format_version_is_rejected() -> None:
    s = signer()
    from itsdangerous.encoding import base64_encode

    forged = s._newest.sign(base64_encode(b'{"v":2}')).decode()
    assert s.loads(forged, 60) is None
    also = s._newest.sign(base64_encode(b'{"v":true}')).decode()
    assert s.loads(also, 60) is None
    not_object = s._newest.sign(base64_encode(b"[1]")).decode()
    assert s.loads(not_object, 60) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c.d", id="four-parts"),
        pytest.param("é.b.c", id="non-ascii"),
        pytest.param("a b.c.d", id="space"),
        pytest.param("x" * 9000, id="huge"),
        pytest.param('"quoted"', id="quoted"),
    ],
)
def test_garbage_never_verifies(value: str) -> None:
    assert signer().loads(value, 60) is None


@settings(max_examples=400, deadline=None)
@given(position=st.integers(min_value=0), replacement=st.characters(codec="ascii"))
def test_any_byte_change_means_no_consent(position: int, replacement: str) -> None:
    s = signer()
    value = s.dumps({"g": ["analytics", "marketing"], "pv": "2014-12-12", "t": 1})
    i = position % len(value)
    if value[i] == replacement:
        return
    tampered = value[:i] + replacement + value[i + 1 :]
    assert s.loads(tampered, 10**9) is None


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=1))
def test_truncation_never_verifies(cut: int) -> None:
    s = signer()
    value = s.dumps({"g": ["analytics"]})
    assert s.loads(value[: len(value) - 1 - (cut % (len(value) - 1))], 10**9) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_loads_never_raises(text: str) -> None:
    assert signer().loads(text, 60) is None

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentmw.resolve.anonymize import DailySalt, anonymize_ip

SALT = b"s" * 32


@pytest.mark.parametrize(
    ("ip", "mode", "options", "expected"),
    [
        pytest.param("203.0.113.77", "none", {}, "203.0.113.77", id="none-v4"),
        pytest.param("2001:DB8::7", "none", {}, "2001:db8::7", id="none-v6-normalised"),
        pytest.param("203.0.113.77", "truncate", {}, "203.0.113.0", id="truncate-v4-24"),
        pytest.param(
            "203.0.113.77", "truncate", {"v4_prefix": 16}, "203.0.0.0", id="truncate-v4-16"
        ),
        pytest.param("2001:db8:1:2:3:4:5:6", "truncate", {}, "2001:db8:1::", id="truncate-v6-48"),
        pytest.param(
            "2001:db8:1:2:3:4:5:6",
            "truncate",
            {"v6_prefix": 64},
            "2001:db8:1:2::",
            id="truncate-v6-64",
        ),
        pytest.param("203.0.113.77", "drop", {}, None, id="drop"),
        pytest.param(None, "truncate", {}, None, id="no-address"),
        pytest.param("not an ip", "none", {}, None, id="junk-none"),
        pytest.param("not an ip", "truncate", {}, None, id="junk-truncate"),
        pytest.param("not an ip", "hash", {"salt": SALT}, None, id="junk-hash"),
    ],
)
def test_anonymize_ip(
    ip: str | None, mode: str, options: dict[str, object], expected: str | None
) -> None:
    assert anonymize_ip(ip, mode, **options) == expected  # type: ignore[arg-type]


def test_hash_is_hmac_of_the_packed_address() -> None:
    result = anonymize_ip("203.0.113.77", "hash", salt=SALT)
    packed = ipaddress.ip_address("203.0.113.77").packed
    assert result == "h:" + hmac.new(SALT, packed, hashlib.sha256).hexdigest()
    # Every spelling of one address hashes alike; another salt gives another hash.
    assert anonymize_ip("2001:db8::1", "hash", salt=SALT) == anonymize_ip(
        "2001:0db8:0:0::1", "hash", salt=SALT
    )
    assert anonymize_ip("203.0.113.77", "hash", salt=b"t" * 32) != result


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        pytest.param("mask", {}, id="unknown-mode"),
        pytest.param("hash", {}, id="hash-without-salt"),
        pytest.param("truncate", {"v4_prefix": 33}, id="v4-prefix-too-long"),
        pytest.param("truncate", {"v6_prefix": -1}, id="v6-prefix-negative"),
    ],
)
def test_configuration_errors_raise(mode: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"mode|salt|prefix"):
        anonymize_ip("203.0.113.77", mode, **options)  # type: ignore[arg-type]


@given(st.one_of(st.none(), st.text(max_size=60), st.ip_addresses().map(str)))
def test_never_raises_on_any_address_text(ip: str | None) -> None:
    for mode in ("none", "truncate", "hash", "drop"):
        result = anonymize_ip(ip, mode, salt=SALT)
        if mode == "drop" or result is None:
            continue
        if mode == "hash":
            assert result.startswith("h:")
            assert len(result) == 66
        else:
            ipaddress.ip_address(result)


@given(st.ip_addresses(v=4))
def test_truncation_keeps_exactly_the_network(address: ipaddress.IPv4Address) -> None:
    result = ipaddress.ip_address(anonymize_ip(str(address), "truncate"))
    assert result in ipaddress.ip_network(f"{address}/24", strict=False)
    assert int(result) & 0xFF == 0


class Clock:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def __call__(self) -> float:
        return self.when.timestamp()


def test_daily_salt_changes_at_utc_midnight() -> None:
    clock = Clock(dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.timezone.utc))
    salt = DailySalt(b"k" * 32, clock=clock)
    before = salt.current()
    assert salt.current() is before  # cached within the day
    clock.when = dt.datetime(2026, 3, 2, 0, 0, 0, tzinfo=dt.timezone.utc)
    after = salt.current()
    assert after != before
    assert after == salt.for_day(dt.date(2026, 3, 2))
    # The same address hashes differently on the two days: visits cannot be linked.
    assert anonymize_ip("203.0.113.77", "hash", salt=before) != anonymize_ip(
        "203.0.113.77", "hash", salt=after
    )


def test_daily_salt_is_derived_from_the_secret_only() -> None:
    day = dt.date(2026, 3, 1)
    assert DailySalt(b"k" * 32).for_day(day) == DailySalt(b"k" * 32).for_day(day)
    assert DailySalt(b"k" * 32).for_day(day) != DailySalt(b"j" * 32).for_day(day)
    expected = hmac.new(b"k" * 32, b"consentmw.ip-salt:2026-03-01", hashlib.sha256).digest()
    assert DailySalt(b"k" * 32).for_day(day) == expected


def test_daily_salt_uses_the_utc_date_not_the_local_one() -> None:
    # 23:30 at UTC-5 on 1 March is 04:30 UTC on 2 March.
    local = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    salt = DailySalt(b"k" * 32, clock=Clock(local))
    assert salt.current() == salt.for_day(dt.date(2026, 3, 2))


def test_daily_salt_rejects_a_short_secret_and_hides_it() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DailySalt(b"short")
    assert "k" * 16 not in repr(DailySalt(b"k" * 32))

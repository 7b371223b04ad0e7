"""Reverse DNS against a real DNS server on 127.0.0.1 (``dnsstub``), never the system's."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import dns.name
import dns.rcode
import pytest

from consentmw.errors import MissingDependencyError
from consentmw.resolve.rdns import STAT_KEYS, DomainResult, ReverseResolver, normalize_hostname

from .conftest import FakeClock
from .dnsstub import StubDNSServer

MakeResolver = Callable[..., ReverseResolver]

GOOGLE_IP = "66.249.66.1"
GOOGLE_PTR = "crawl-66-249-66-1.googlebot.com."
V6_IP = "2001:4860:4801:2::1"
OTHER_IPS = ["8.8.4.4", "9.9.9.9", "1.0.0.1", "208.67.222.222", "4.2.2.2", "64.6.64.6"]


def counters(resolver: ReverseResolver) -> dict[str, int]:
    """The non-zero outcome counters."""
    return {k: v for k, v in resolver.stats().items() if v and k in STAT_KEYS}


@pytest.fixture
def google(dns_server: StubDNSServer) -> StubDNSServer:
    dns_server.ptr(GOOGLE_IP, GOOGLE_PTR)
    dns_server.address(GOOGLE_PTR, GOOGLE_IP, "66.249.66.2")
    return dns_server


# -- outcomes ---------------------------------------------------------------------------------


def test_forward_confirmed_ptr(google: StubDNSServer, make_resolver: MakeResolver) -> None:
    resolver = make_resolver()
    found = resolver.resolve_batch([GOOGLE_IP], deadline_s=5)
    expected = DomainResult("crawl-66-249-66-1.googlebot.com", "googlebot.com", verified=True)
    assert found == {GOOGLE_IP: expected}
    assert resolver.result(GOOGLE_IP) == expected
    assert counters(resolver) == {"lookups": 1, "ok": 1}
    assert google.count("PTR") == 1
    assert google.count("A") == 1


def test_forward_confirmed_ipv6(dns_server: StubDNSServer, make_resolver: MakeResolver) -> None:
    dns_server.ptr(V6_IP, "host6.Example.NET.")
    dns_server.address("host6.example.net.", V6_IP)
    resolver = make_resolver()
    found = resolver.resolve_batch([V6_IP], deadline_s=5)
    assert found == {V6_IP: DomainResult("host6.example.net", "example.net", verified=True)}
    assert dns_server.count("AAAA") == 1
    assert dns_server.count("A") == 0


def test_ipv4_mapped_address_is_looked_up_as_ipv4(
    google: StubDNSServer, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver()
    mapped = f"::ffff:{GOOGLE_IP}"
    assert resolver.resolve_batch([mapped], deadline_s=5)[mapped].verified is True
    assert resolver.result(GOOGLE_IP) is not None


@pytest.mark.parametrize(
    ("verify", "expected", "forward_queries"),
    [
        pytest.param("forward", None, 1, id="forward-drops-it"),
        pytest.param(
            "unverified",
            DomainResult("www.spoofed.example.com", "example.com", verified=False),
            1,
            id="unverified-keeps-it-marked",
        ),
        pytest.param(
            "off",
            DomainResult("www.spoofed.example.com", "example.com", verified=False),
            0,
            id="off-does-not-ask",
        ),
    ],
)
def test_ptr_that_does_not_forward_confirm(
    dns_server: StubDNSServer,
    make_resolver: MakeResolver,
    verify: str,
    expected: DomainResult | None,
    forward_queries: int,
) -> None:
    # The owner of 198.18… could write any PTR; the name's own A record points elsewhere.
    ip = "93.184.216.34"
    dns_server.ptr(ip, "www.spoofed.example.com.")
    dns_server.address("www.spoofed.example.com.", "93.184.216.99")
    resolver = make_resolver(verify=verify)
    found = resolver.resolve_batch([ip], deadline_s=5)
    assert found.get(ip) == expected
    assert resolver.result(ip) == expected
    assert counters(resolver) == {"lookups": 1, "unverified": 1}
    assert dns_server.count("A") == forward_queries


def test_forward_name_that_does_not_exist(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    ip = "93.184.216.34"
    dns_server.ptr(ip, "gone.example.com.")
    resolver = make_resolver()
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    assert counters(resolver) == {"lookups": 1, "unverified": 1}


def test_the_first_confirming_name_of_several_wins(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    ip = "93.184.216.34"
    dns_server.ptr(ip, "liar.example.org.", "real.example.com.")
    dns_server.address("liar.example.org.", "10.0.0.1")
    dns_server.address("real.example.com.", ip)
    resolver = make_resolver()
    assert resolver.resolve_batch([ip], deadline_s=5) == {
        ip: DomainResult("real.example.com", "example.com", verified=True)
    }


def _label_name(*labels: bytes) -> dns.name.Name:
    return dns.name.Name([*labels, b""])


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(_label_name(b"<script>alert(1)</script>", b"example", b"com"), id="script"),
        pytest.param(_label_name(b"evil\r\nX-Injected: 1", b"example", b"com"), id="crlf"),
        pytest.param(_label_name(b"host name", b"example", b"com"), id="space"),
        pytest.param(_label_name(b"evil.com", b"example", b"com"), id="dot-inside-label"),
        pytest.param(_label_name(b"caf\xc3\xa9", b"example", b"com"), id="raw-utf8"),
        pytest.param(_label_name(b"under_score", b"example", b"com"), id="underscore"),
        pytest.param(_label_name(b"-dash", b"example", b"com"), id="leading-hyphen"),
        pytest.param(_label_name(b"xn--a-ecp", b"com"), id="bad-punycode"),
        pytest.param(_label_name(b"localhost"), id="single-label"),
        pytest.param(_label_name(b"4", b"3", b"2", b"1"), id="address-as-name"),
        pytest.param(_label_name(b"co", b"uk"), id="public-suffix-only"),
    ],
)
def test_hostile_ptr_is_not_stored(
    dns_server: StubDNSServer, make_resolver: MakeResolver, target: dns.name.Name
) -> None:
    ip = "93.184.216.34"
    dns_server.ptr(ip, target)
    dns_server.address("evil.com.example.com.", ip)  # would confirm a re-split name
    resolver = make_resolver()
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    assert resolver.result(ip) is None
    assert counters(resolver) == {"lookups": 1, "invalid_ptr": 1}
    assert dns_server.count("A") == 0


def test_ptr_name_over_255_octets_is_not_stored(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    # Five 60-character labels: 300 characters, more than a DNS name can hold. dnspython
    # cannot even build it, so the server writes the answer by hand. dnspython discards an
    # unparseable UDP answer as if it were a spoofed packet and keeps waiting, so the lookup
    # ends at its deadline, counted as a timeout, with nothing stored.
    ip = "93.184.216.34"
    dns_server.raw_ptr(ip, [b"a" * 60] * 5)
    resolver = make_resolver(timeout=0.3)
    start = time.monotonic()
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    assert time.monotonic() - start < 0.3 + 0.5
    assert resolver.result(ip) is None
    assert counters(resolver) == {"lookups": 1, "timeout": 1}


def test_nxdomain_is_cached_as_a_failure(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    ip = "93.184.216.34"
    resolver = make_resolver()
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    resolver.submit(ip)
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    assert counters(resolver) == {"lookups": 1, "nxdomain": 1, "cache_hit": 2}
    assert dns_server.count("PTR") == 1


def test_server_failure_is_an_error(dns_server: StubDNSServer, make_resolver: MakeResolver) -> None:
    ip = "93.184.216.34"
    dns_server.fail(ip, dns.rcode.SERVFAIL)
    resolver = make_resolver()
    assert resolver.resolve_batch([ip], deadline_s=5) == {}
    assert counters(resolver) == {"lookups": 1, "error": 1}


@pytest.mark.parametrize(
    "ip",
    [
        pytest.param("10.1.2.3", id="private"),
        pytest.param("192.168.0.1", id="private-192"),
        pytest.param("127.0.0.1", id="loopback"),
        pytest.param("169.254.10.10", id="link-local"),
        pytest.param("100.64.0.1", id="shared-cgnat"),
        pytest.param("192.0.2.1", id="documentation"),
        pytest.param("240.0.0.1", id="reserved"),
        pytest.param("::1", id="v6-loopback"),
        pytest.param("fe80::1", id="v6-link-local"),
        pytest.param("fd00::1", id="v6-unique-local"),
        pytest.param("2001:db8::1", id="v6-documentation"),
    ],
)
def test_non_global_addresses_are_never_looked_up(
    dns_server: StubDNSServer, make_resolver: MakeResolver, ip: str
) -> None:
    resolver = make_resolver()
    resolver.submit(ip)
    assert resolver.resolve_batch([ip], deadline_s=1) == {}
    assert counters(resolver) == {"skipped_private": 2}
    assert dns_server.queries == []


def test_junk_is_skipped(dns_server: StubDNSServer, make_resolver: MakeResolver) -> None:
    resolver = make_resolver()
    assert resolver.resolve_batch(["junk", "h:abc", "203.0.113.0/24"], deadline_s=1) == {}
    assert counters(resolver) == {"skipped_invalid": 3}
    assert dns_server.queries == []


# -- deadlines --------------------------------------------------------------------------------


def test_a_server_that_never_answers_costs_only_the_deadline(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    silent = "93.184.216.34"
    dns_server.silence(silent)
    resolver = make_resolver(timeout=0.5)

    start = time.monotonic()
    assert resolver.resolve_batch([silent], deadline_s=0.1) == {}
    assert time.monotonic() - start < 0.1 + 0.15

    # The lookup itself ends at its own hard deadline (timeout=0.5), not dnspython's default.
    start = time.monotonic()
    assert resolver.resolve_batch([silent], deadline_s=10) == {}
    assert time.monotonic() - start < 0.5 + 0.5
    assert counters(resolver)["timeout"] == 1

    # The failure is cached: no second wait, no second query.
    start = time.monotonic()
    assert resolver.resolve_batch([silent], deadline_s=10) == {}
    assert time.monotonic() - start < 0.1
    assert counters(resolver) == {"lookups": 1, "timeout": 1, "cache_hit": 1}


def test_a_silent_address_does_not_hold_back_the_rest_of_the_batch(
    google: StubDNSServer, make_resolver: MakeResolver
) -> None:
    silent = "93.184.216.34"
    google.silence(silent)
    resolver = make_resolver(timeout=0.5)
    start = time.monotonic()
    found = resolver.resolve_batch([silent, GOOGLE_IP], deadline_s=0.3)
    assert time.monotonic() - start < 0.3 + 0.15
    assert list(found) == [GOOGLE_IP]


def test_a_late_answer_fills_the_cache_for_a_later_call(
    google: StubDNSServer, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver()
    google.hold()
    start = time.monotonic()
    assert resolver.resolve_batch([GOOGLE_IP], deadline_s=0.1) == {}
    assert time.monotonic() - start < 0.1 + 0.15
    assert resolver.result(GOOGLE_IP) is None
    assert resolver.stats()["pending"] == 1

    google.release()
    later = resolver.resolve_batch([GOOGLE_IP], deadline_s=5)
    assert later[GOOGLE_IP].domain == "googlebot.com"
    assert resolver.result(GOOGLE_IP) == later[GOOGLE_IP]
    assert resolver.stats()["lookups"] == 1  # the second call waited for the first lookup


# -- caches -----------------------------------------------------------------------------------


def test_positive_ttl_expires_on_the_injected_clock(
    google: StubDNSServer, make_resolver: MakeResolver, clock: FakeClock
) -> None:
    resolver = make_resolver(positive_ttl=100, clock=clock)
    assert resolver.resolve_batch([GOOGLE_IP], deadline_s=5)
    clock.advance(99)
    assert resolver.result(GOOGLE_IP) is not None
    clock.advance(2)
    assert resolver.result(GOOGLE_IP) is None
    assert resolver.resolve_batch([GOOGLE_IP], deadline_s=5)
    assert google.count("PTR") == 2


def test_negative_ttl_expires_on_the_injected_clock(
    dns_server: StubDNSServer, make_resolver: MakeResolver, clock: FakeClock
) -> None:
    ip = "93.184.216.34"
    resolver = make_resolver(negative_ttl=30, clock=clock)
    resolver.resolve_batch([ip], deadline_s=5)
    clock.advance(29)
    resolver.resolve_batch([ip], deadline_s=5)
    assert dns_server.count("PTR") == 1
    clock.advance(2)
    dns_server.ptr(ip, "late.example.com.")
    dns_server.address("late.example.com.", ip)
    assert resolver.resolve_batch([ip], deadline_s=5)[ip].domain == "example.com"
    assert dns_server.count("PTR") == 2


def test_cache_is_bounded(dns_server: StubDNSServer, make_resolver: MakeResolver) -> None:
    resolver = make_resolver(cache_size=2)
    for ip in OTHER_IPS[:3]:  # one at a time, so that the cache order is known
        resolver.resolve_batch([ip], deadline_s=5)
    assert resolver.stats()["cached"] == 2
    resolver.resolve_batch([OTHER_IPS[0]], deadline_s=5)  # the oldest was evicted
    assert dns_server.count("PTR") == 4


# -- registrable domains ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "registrable", "domain"),
    [
        pytest.param("a.b.example.co.uk.", True, "example.co.uk", id="two-level-suffix"),
        pytest.param(
            "ec2-1-2-3-4.compute-1.amazonaws.com.", True, "amazonaws.com", id="icann-section-only"
        ),
        pytest.param("host-1-2-3-4.isp.example.", True, "isp.example", id="unknown-tld"),
        pytest.param("a.b.example.co.uk.", False, "a.b.example.co.uk", id="full-name"),
    ],
)
def test_registrable_domain(
    dns_server: StubDNSServer,
    make_resolver: MakeResolver,
    name: str,
    registrable: bool,
    domain: str,
) -> None:
    ip = "93.184.216.34"
    dns_server.ptr(ip, name)
    dns_server.address(name, ip)
    resolver = make_resolver(registrable=registrable)
    assert resolver.resolve_batch([ip], deadline_s=5)[ip].domain == domain


# -- concurrency and queueing -----------------------------------------------------------------


def test_concurrency_bound_is_respected(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver(max_concurrency=2)
    dns_server.hold()
    # Waiting out a batch deadline gives the workers every chance to send more queries.
    assert resolver.resolve_batch(OTHER_IPS, deadline_s=0.3) == {}
    assert dns_server.held() == 2
    assert resolver.stats()["pending"] == len(OTHER_IPS)
    workers = [t for t in threading.enumerate() if t.name.startswith("consentmw-rdns-")]
    assert len(workers) == 2
    dns_server.release()
    resolver.resolve_batch(OTHER_IPS, deadline_s=5)
    assert resolver.stats()["nxdomain"] == len(OTHER_IPS)
    assert dns_server.max_held == 2


def test_a_full_queue_skips_without_blocking(
    dns_server: StubDNSServer, make_resolver: MakeResolver
) -> None:
    resolver = make_resolver(max_concurrency=1, max_pending=2)
    dns_server.hold()
    resolver.resolve_batch(OTHER_IPS[:1], deadline_s=0.2)  # the one worker is now busy
    assert dns_server.held() == 1
    start = time.monotonic()
    for ip in OTHER_IPS[1:5]:
        resolver.submit(ip)
    assert time.monotonic() - start < 0.05
    assert resolver.stats()["skipped_busy"] == 2
    assert resolver.stats()["pending"] == 3
    dns_server.release()
    resolver.resolve_batch(OTHER_IPS[:3], deadline_s=5)
    assert dns_server.count("PTR") == 3


def test_close_stops_the_workers(google: StubDNSServer, make_resolver: MakeResolver) -> None:
    resolver = make_resolver()
    resolver.resolve_batch([GOOGLE_IP], deadline_s=5)
    resolver.close()
    resolver.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("consentmw-rdns-")]
    resolver.submit("9.9.9.9")
    assert resolver.resolve_batch(["9.9.9.9"], deadline_s=1) == {}
    assert google.count("PTR") == 1


# -- construction -----------------------------------------------------------------------------


def test_stats_report_every_outcome(make_resolver: MakeResolver) -> None:
    stats = make_resolver().stats()
    assert set(STAT_KEYS) <= set(stats)
    assert {"pending", "cached"} <= set(stats)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"verify": "maybe"}, id="verify"),
        pytest.param({"timeout": 0}, id="timeout"),
        pytest.param({"max_concurrency": 0}, id="concurrency"),
        pytest.param({"negative_ttl": -1}, id="ttl"),
    ],
)
def test_invalid_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"must|verify"):
        ReverseResolver(nameservers=["127.0.0.1"], **options)  # type: ignore[arg-type]


def test_missing_dnspython_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dns.resolver", None)
    with pytest.raises(MissingDependencyError, match=r"consentmw\[dns\]"):
        ReverseResolver(nameservers=["127.0.0.1"])


# -- host names -------------------------------------------------------------------------------


def _name(*sizes: int) -> str:
    return ".".join("a" * size for size in sizes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Crawl-1.GoogleBot.com.", "crawl-1.googlebot.com", id="canonical"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="a-label"),
        pytest.param("a" * 63 + ".example", "a" * 63 + ".example", id="label-63"),
        pytest.param("a" * 64 + ".example", None, id="label-64"),
        pytest.param(_name(63, 63, 63, 61), _name(63, 63, 63, 61), id="exactly-253"),
        pytest.param(_name(63, 63, 63, 62), None, id="254"),
        pytest.param("x" * 300, None, id="300-chars"),
        pytest.param("<script>.example.com", None, id="script"),
        pytest.param("host.example.com\r\n", None, id="crlf"),
        pytest.param("host.example.com. junk", None, id="trailing-junk"),
        pytest.param("host..example.com", None, id="empty-label"),
        pytest.param("1.2.3.4", None, id="address"),
        pytest.param("localhost", None, id="single-label"),
        pytest.param("b\u00fccher.example", None, id="u-label"),
    ],
)
def test_normalize_hostname(text: str, expected: str | None) -> None:
    assert normalize_hostname(text) == expected

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentmw.events import Event, RequestFacts
from consentmw.resolve.anonymize import DailySalt
from consentmw.resolve.email import normalize_email
from consentmw.resolve.enrich import Enricher
from consentmw.resolve.rdns import ReverseResolver
from consentmw.resolve.useragent import BotFilter, UAClassifier

from .dnsstub import StubDNSServer
from .ua_corpus import BOTS, DESKTOP, MOBILE

GOOGLE_IP = "66.249.66.1"
GOOGLE_PTR = "crawl-66-249-66-1.googlebot.com."
ISP_IP = "93.184.216.34"
ISP_PTR = "host-93-184-216-34.dsl.example.net."


def make_event(**fields: Any) -> Event:
    base: dict[str, Any] = {
        "id": "e1",
        "type": "page_visit",
        "name": None,
        "ts": "2026-03-01T00:00:00.000000Z",
        "site": "shop.example.test",
        "policy_version": "2014-12-12",
        "purposes": ("analytics",),
    }
    base.update(fields)
    return Event(**base)


@pytest.fixture
def dns_table(dns_server: StubDNSServer) -> StubDNSServer:
    dns_server.ptr(GOOGLE_IP, GOOGLE_PTR)
    dns_server.address(GOOGLE_PTR, GOOGLE_IP)
    dns_server.ptr(ISP_IP, ISP_PTR)
    dns_server.address(ISP_PTR, ISP_IP)
    return dns_server


@pytest.fixture
def resolver(dns_table: StubDNSServer) -> Iterator[ReverseResolver]:
    with ReverseResolver(nameservers=["127.0.0.1"], port=dns_table.port, timeout=0.5) as r:
        yield r


@pytest.fixture
def enricher(resolver: ReverseResolver) -> Enricher:
    return Enricher(trusted_proxies=1, ua=UAClassifier(), resolver=resolver, rdns_deadline_s=2.0)


def test_user_level_event_gets_every_field(enricher: Enricher) -> None:
    event = make_event()
    facts = RequestFacts(
        remote_addr="10.0.0.1",
        forwarded_for=f"6.6.6.6, {ISP_IP}",
        user_agent=DESKTOP[0],
        from_header="Crawler@Example.COM",
        referrer="https://example.org/",
        host="shop.example.test",
    )
    enricher.enrich([(event, facts)])
    # Reverse DNS saw the full address; only the /24 is stored.
    assert event.ip == "93.184.216.0"
    assert event.domain == "example.net"
    assert event.ua == {"browser": "Chrome", "os": "Windows", "device": "pc", "is_bot": False}
    assert event.claimed_email == "crawler@example.com"
    assert event.email is None  # a From header is never a verified address


def test_no_lookup_without_the_domain_purpose(enricher: Enricher, dns_table: StubDNSServer) -> None:
    event = make_event(purposes=("necessary",))
    enricher.enrich([(event, RequestFacts(remote_addr="10.0.0.1", forwarded_for=ISP_IP))])
    assert event.ip == "93.184.216.0"
    assert event.domain is None
    assert dns_table.queries == []


def test_domain_purpose_none_disables_lookups(
    resolver: ReverseResolver, dns_table: StubDNSServer
) -> None:
    enricher = Enricher(resolver=resolver, domain_purpose=None)
    event = make_event()
    enricher.enrich([(event, RequestFacts(remote_addr=ISP_IP))])
    assert event.domain is None
    assert dns_table.queries == []


def test_aggregate_events_get_no_identifiers_and_a_coarse_ua(
    enricher: Enricher, dns_table: StubDNSServer
) -> None:
    event = make_event(aggregate=True, email="x@example.com", ip="1.2.3.4", domain="x.example")
    facts = RequestFacts(remote_addr=ISP_IP, user_agent=MOBILE[0], from_header="bot@example.com")
    enricher.enrich([(event, facts)])
    assert (event.ip, event.domain, event.email, event.claimed_email) == (None, None, None, None)
    assert event.ua == {"browser": None, "os": None, "device": "mobile", "is_bot": False}
    assert dns_table.queries == []


def test_aggregate_event_without_facts_is_still_scrubbed(enricher: Enricher) -> None:
    event = make_event(
        aggregate=True,
        ip="1.2.3.4",
        ua={"browser": "Chrome", "os": "Windows", "device": "pc", "is_bot": False},
    )
    enricher.enrich([(event, None)])
    assert event.ip is None
    assert event.ua == {"browser": None, "os": None, "device": "pc", "is_bot": False}


def test_events_without_facts_are_left_alone(enricher: Enricher) -> None:
    event = make_event(ip="93.184.216.0", domain="example.net")
    before = event.to_dict()
    enricher.enrich([(event, None)])
    assert event.to_dict() == before


def test_a_batch_waits_once_and_a_silent_address_holds_nothing_back(
    resolver: ReverseResolver, dns_table: StubDNSServer
) -> None:
    silent = "8.8.4.4"
    dns_table.silence(silent)
    enricher = Enricher(resolver=resolver, rdns_deadline_s=0.2)
    events = [make_event(id=str(i)) for i in range(4)]
    addresses = [ISP_IP, silent, GOOGLE_IP, ISP_IP]
    start = time.monotonic()
    enricher.enrich(
        [(e, RequestFacts(remote_addr=a)) for e, a in zip(events, addresses, strict=True)]
    )
    assert time.monotonic() - start < 0.2 + 0.15
    assert [e.domain for e in events] == ["example.net", None, "googlebot.com", "example.net"]
    assert dns_table.count("PTR") == 3  # each address once


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("none", ISP_IP, id="none"),
        pytest.param("truncate", "93.184.216.0", id="truncate"),
        pytest.param("drop", None, id="drop"),
    ],
)
def test_anonymisation_modes(mode: str, expected: str | None) -> None:
    event = make_event()
    Enricher(anonymize=mode).enrich([(event, RequestFacts(remote_addr=ISP_IP))])
    assert event.ip == expected


def test_hash_mode_uses_the_salt_of_the_day() -> None:
    when = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
    salt = DailySalt(b"k" * 32, clock=lambda: when.timestamp())
    enricher = Enricher(anonymize="hash", salt=salt)
    first, second = make_event(), make_event()
    enricher.enrich([(first, RequestFacts(remote_addr=ISP_IP))])
    enricher.enrich([(second, RequestFacts(remote_addr=ISP_IP))])
    assert first.ip is not None
    assert first.ip.startswith("h:")
    assert first.ip == second.ip
    when = when + dt.timedelta(days=1)
    third = make_event()
    enricher.enrich([(third, RequestFacts(remote_addr=ISP_IP))])
    assert third.ip != first.ip


def test_without_a_classifier_there_is_no_ua() -> None:
    event = make_event()
    Enricher().enrich([(event, RequestFacts(remote_addr=ISP_IP, user_agent=DESKTOP[0]))])
    assert event.ua is None


def test_claimed_email_can_be_turned_off() -> None:
    event = make_event()
    Enricher(claimed_email=False).enrich([(event, RequestFacts(from_header="a@example.com"))])
    assert event.claimed_email is None


def test_is_bot_is_the_cheap_filter() -> None:
    enricher = Enricher(bot_filter=BotFilter(empty_is_bot=False))
    assert enricher.is_bot(BOTS[0]) is True
    assert enricher.is_bot(DESKTOP[0]) is False
    assert enricher.is_bot("") is False


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"anonymize": "mask"}, id="unknown-mode"),
        pytest.param({"anonymize": "hash"}, id="hash-without-salt"),
        pytest.param({"v4_prefix": 40}, id="prefix"),
        pytest.param({"trusted_proxies": -1}, id="proxies"),
    ],
)
def test_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"anonymize|prefix|negative"):
        Enricher(**options)


# -- properties -------------------------------------------------------------------------------

text_or_none = st.one_of(st.none(), st.text(max_size=80))
facts_strategy = st.builds(
    RequestFacts,
    remote_addr=st.one_of(text_or_none, st.ip_addresses().map(str)),
    forwarded_for=text_or_none,
    user_agent=text_or_none,
    from_header=st.one_of(text_or_none, st.emails()),
    referrer=text_or_none,
    host=text_or_none,
)


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(
        st.tuples(st.booleans(), st.one_of(st.none(), facts_strategy)), min_size=1, max_size=6
    )
)
def test_enrich_never_raises_on_hostile_request_values(
    batch: list[tuple[bool, RequestFacts | None]],
) -> None:
    enricher = Enricher(trusted_proxies=2, ua=UAClassifier(cache_size=0))
    events = [make_event(id=str(i), aggregate=aggregate) for i, (aggregate, _) in enumerate(batch)]
    enricher.enrich([(e, facts) for e, (_, facts) in zip(events, batch, strict=True)])
    for event in events:
        if event.ip is not None:
            ipaddress.ip_address(event.ip)
        if event.claimed_email is not None:
            assert normalize_email(event.claimed_email) == event.claimed_email
        if event.aggregate:
            assert (event.ip, event.domain, event.claimed_email) == (None, None, None)
            assert event.ua is None or event.ua["browser"] is None


POOL = [GOOGLE_IP, ISP_IP]
PURPOSES = ["necessary", "analytics", "marketing"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sets(st.sampled_from(PURPOSES)).map(tuple),
            st.booleans(),
            st.sampled_from(POOL),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_no_lookup_and_no_domain_for_a_purpose_not_granted(
    make_dns_world: Callable[[], tuple[StubDNSServer, ReverseResolver]],
    rows: list[tuple[tuple[str, ...], bool, str]],
) -> None:
    server, resolver = make_dns_world()
    enricher = Enricher(resolver=resolver, rdns_deadline_s=2.0)
    events = [
        make_event(id=str(i), purposes=purposes, aggregate=aggregate)
        for i, (purposes, aggregate, _) in enumerate(rows)
    ]
    enricher.enrich(
        [(e, RequestFacts(remote_addr=ip)) for e, (_, _, ip) in zip(events, rows, strict=True)]
    )
    eligible = {ip for purposes, aggregate, ip in rows if "analytics" in purposes and not aggregate}
    queried = {name for name, rdtype in server.queries if rdtype == "PTR"}
    assert queried == {_reverse(ip) for ip in eligible}
    for event, (purposes, aggregate, _) in zip(events, rows, strict=True):
        if event.domain is not None:
            assert "analytics" in purposes
            assert not aggregate


def _reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


@pytest.fixture
def make_dns_world() -> Iterator[Callable[[], tuple[StubDNSServer, ReverseResolver]]]:
    """A fresh server and resolver per hypothesis example, all closed at the end."""
    opened: list[tuple[StubDNSServer, ReverseResolver]] = []

    def make() -> tuple[StubDNSServer, ReverseResolver]:
        server = StubDNSServer().__enter__()
        for ip, ptr in ((GOOGLE_IP, GOOGLE_PTR), (ISP_IP, ISP_PTR)):
            server.ptr(ip, ptr)
            server.address(ptr, ip)
        resolver = ReverseResolver(nameservers=["127.0.0.1"], port=server.port, timeout=0.5)
        opened.append((server, resolver))
        return server, resolver

    yield make
    for server, resolver in opened:
        resolver.close()
        server.__exit__(None, None, None)

"""Reverse DNS through the whole middleware, against a DNS server on loopback.

The resolver is pointed at the test's own server; the machine's resolver is never asked.
The client addresses are public ones (documentation ranges are not looked up at all), used
only as data in ``REMOTE_ADDR``: no packet goes to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from consentmw import ConsentMiddleware, MemorySink
from tests.core.support import choose, make_config
from tests.resolve.dnsstub import StubDNSServer


@pytest.fixture
def dns_server() -> Iterator[StubDNSServer]:
    with StubDNSServer() as server:
        yield server


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def site(dns_server: StubDNSServer, sink: MemorySink) -> ConsentMiddleware:
    config = make_config(
        tracking={"tracking_purpose": "analytics", "aggregate_without_consent": True},
        resolve={
            "reverse_dns": True,
            "rdns_nameservers": ["127.0.0.1"],
            "rdns_port": dns_server.port,
            "rdns_timeout_ms": 300,
            "anonymize_ip": "truncate",
        },
    )
    return ConsentMiddleware(app, config, sinks={"memory://": sink})


def visit(client: Client, ip: str) -> float:
    started = time.perf_counter()
    client.get("/page", environ_overrides={"REMOTE_ADDR": ip})
    return time.perf_counter() - started


def test_domains_forward_confirmed_hostile_and_silent(dns_server: StubDNSServer) -> None:
    dns_server.ptr("93.184.216.10", "host-10.mail.example.com.")
    dns_server.address("host-10.mail.example.com.", "93.184.216.10")
    dns_server.ptr("93.184.216.11", "spoofed.bank.example.")  # does not confirm
    dns_server.address("spoofed.bank.example.", "198.51.100.1")
    dns_server.ptr("93.184.216.12", "x<script>alert(1)</script>.example.com.")
    dns_server.silence("93.184.216.13")
    sink = MemorySink()
    mw = site(dns_server, sink)
    client = Client(mw)
    choose(client, "accept_all")
    latencies = [
        visit(client, ip)
        for ip in (
            "93.184.216.10",
            "93.184.216.11",
            "93.184.216.12",
            "93.184.216.13",
            "93.184.216.14",
        )
    ]
    # The request path never waits for DNS (a silent server would cost 300 ms here).
    assert max(latencies) < 0.25
    assert mw.flush(10)
    mw.close(10)
    visits = [e for e in sink.events if e.type == "page_visit"]
    assert [e.domain for e in visits] == ["example.com", None, None, None, None]
    assert all(e.ip == "93.184.216.0" for e in visits)  # stored truncated, after the lookup
    stats = mw.stats()["reverse_dns"]
    assert stats["ok"] == 1 and stats["invalid_ptr"] >= 1 and stats["nxdomain"] >= 1
    assert stats["timeout"] + stats["skipped_busy"] >= 1 or stats.get("pending", 0) >= 1


def test_no_lookup_without_the_purpose_or_for_private_addresses(dns_server: StubDNSServer) -> None:
    dns_server.ptr("93.184.216.10", "host-10.example.com.")
    dns_server.address("host-10.example.com.", "93.184.216.10")
    sink = MemorySink()
    mw = site(dns_server, sink)
    client = Client(mw)
    visit(client, "93.184.216.10")  # no consent: an aggregate event, no lookup
    choose(client, "accept_all")
    visit(client, "10.1.2.3")  # private: never looked up
    assert mw.flush(10)
    mw.close(10)
    assert dns_server.queries == []
    assert all(e.domain is None for e in sink.events)

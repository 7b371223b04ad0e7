"""Fixtures of the resolution tests: a loopback DNS server and resolvers pointed at it.

No test here ever asks the machine's configured resolver: every :class:`ReverseResolver` is
built by ``make_resolver``, which points it at the :class:`StubDNSServer` on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from consentmw.resolve.rdns import ReverseResolver

from .dnsstub import StubDNSServer


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def dns_server() -> Iterator[StubDNSServer]:
    with StubDNSServer() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_resolver(dns_server: StubDNSServer) -> Iterator[Callable[..., ReverseResolver]]:
    made: list[ReverseResolver] = []

    def make(**options: Any) -> ReverseResolver:
        options.setdefault("timeout", 2.0)
        resolver = ReverseResolver(nameservers=["127.0.0.1"], port=dns_server.port, **options)
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.close()

"""``MemorySink`` passes the sink contract: the reference is held to its own rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consentmw.sinks import MemorySink, Sink
from consentmw.testing import SinkContract


class TestMemorySink(SinkContract):
    # Arrival order, which is oldest first when events are written in time order.
    orders_by_timestamp = False

    @pytest.fixture
    def make_sink(self) -> Callable[[], Sink]:
        return MemorySink

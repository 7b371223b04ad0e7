"""The directory sink passes consentmw's sink contract."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from dirsink import DirectorySink

from consentmw import Event
from consentmw.testing import SinkContract


class TestDirectorySink(SinkContract):
    # query() returns arrival order, not time order.
    orders_by_timestamp = False

    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Callable[[], DirectorySink]:
        # A zero-argument callable that opens a fresh, empty sink.
        return lambda: DirectorySink(tmp_path / uuid.uuid4().hex)


# Tests of this sink's own behaviour live next to the contract subclass.


def test_a_reopened_directory_keeps_its_events(tmp_path: Path) -> None:
    event = Event(
        id=str(uuid.uuid4()),
        type="page_visit",
        name=None,
        ts="2014-12-12T00:00:00.000000Z",
        site="shop.example.test",
        policy_version="2014-12-12",
    )
    first = DirectorySink(tmp_path)
    first.write([event])
    first.close()
    again = DirectorySink(tmp_path)
    again.write([event])  # already there: stored once
    assert list(again.query()) == [event]

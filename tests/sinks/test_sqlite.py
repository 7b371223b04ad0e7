"""``sqlite://``: the contract, plus files, processes and fork safety."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from consentmw.sinks import Sink
from consentmw.sinks.sqlite import SQLiteSink
from consentmw.testing import SinkContract


class TestSQLiteContract(SinkContract):
    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Callable[[], Sink]:
        return lambda: SQLiteSink(tmp_path / f"{uuid.uuid4().hex}.db")

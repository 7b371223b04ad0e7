"""The sink contract has teeth: sinks broken on purpose fail it, a correct one passes.

Each case writes a test module that subclasses ``SinkContract`` for one sink and runs pytest
on it with ``pytester``; the outcome of that inner run is what is checked.
"""

from __future__ import annotations

import pytest

# Imported here, not first inside an inner run: pytester drops modules an inner run imported
# when it ends, and a hypothesis imported anew in each run mixes two copies of its HealthCheck
# enum with the plugin's, which breaks its suppression checks.
import consentmw.testing.contract  # noqa: F401

pytest_plugins = ["pytester"]

HEADER = """
from __future__ import annotations

import pytest

from consentmw.errors import SinkError
from consentmw.sinks import MemorySink
from consentmw.testing import SinkContract


class Broken(MemorySink):
    pass

"""

FOOTER = """

class TestBroken(SinkContract):
    orders_by_timestamp = False

    @pytest.fixture
    def make_sink(self):
        return Broken
"""

CASES = {
    "loses-an-event": (
        """
class Broken(MemorySink):
    # Loses the last event of every write of three or more.
    def write(self, events):
        events = list(events)
        super().write(events[:-1] if len(events) >= 3 else events)
""",
        [
            "test_round_trip_keeps_every_field",
            "test_same_batch_twice_is_stored_once",
            "test_concurrent_writers_store_every_event_exactly_once",
            "test_query_filters_match_the_memory_sink[[]none[]]",
        ],
    ),
    "writes-duplicates": (
        """
class Broken(MemorySink):
    # Stores every write, ids already seen included.
    def write(self, events):
        with self._lock:
            if self._closed:
                raise SinkError("closed")
            for event in events:
                key = event.id
                while key in self._events:
                    key += "'"
                self._events[key] = event
""",
        [
            "test_same_batch_twice_is_stored_once",
            "test_overlapping_batches_store_each_event_once",
            "test_same_id_twice_in_one_batch_keeps_the_first",
            "test_a_retried_write_after_a_new_one_adds_nothing",
        ],
    ),
    "ignores-erase": (
        """
class Broken(MemorySink):
    # Claims to erase but keeps everything.
    def erase(self, subject):
        return sum(1 for _ in self.query(subject=subject))
""",
        [
            "test_erase_by_visitor_id_deletes_only_the_subjects_events",
            "test_erase_by_email_is_case_insensitive",
            "test_erase_twice_returns_zero_the_second_time",
            "test_after_erase_no_query_returns_the_subject",
        ],
    ),
    "email-case-sensitive": (
        """
class Broken(MemorySink):
    # Matches e-mail addresses as given, not lower-cased.
    def query(self, *, subject=None, **filters):
        for event in super().query(**filters):
            if subject is None or subject in (event.visitor_id, event.email):
                yield event
""",
        [
            "test_query_filters_match_the_memory_sink[[]subject-email-any-case[]]",
            "test_query_finds_what_the_filters_promise",
        ],
    ),
    "forks-the-consent-chain": (
        """
import threading
from consentmw.consentlog import GENESIS_HASH, seal

class Broken(MemorySink):
    # Reads the head, lets other threads run, then appends: not atomic.
    def append_consent(self, record):
        with self._lock:
            if record.id in self._consent:
                return self._consent[record.id]
            records = list(self._consent.values())
        head = records[-1].hash if records else GENESIS_HASH
        threading.Event().wait(0.001)
        sealed = seal(record, head)
        with self._lock:
            self._consent[record.id] = sealed
        return sealed
""",
        ["test_concurrent_consent_appends_keep_one_chain"],
    ),
    "writes-after-close": (
        """
class Broken(MemorySink):
    def close(self):
        pass
""",
        [
            "test_write_after_close_raises_sink_error",
            "test_write_to_a_never_used_closed_sink_raises",
        ],
    ),
}


# The property tests are left out of most runs: on a broken sink hypothesis shrinks each
# failure for seconds. test_the_property_tests_catch_a_lost_event gives them teeth of their own.
FAST = ("-k", "not arbitrary")


def run_contract(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_broken_sink=HEADER + body + FOOTER)
    return pytester.runpytest("-p", "no:cacheprovider", "-q", "-rf", *args)


@pytest.mark.parametrize(("body", "must_fail"), list(CASES.values()), ids=list(CASES))
def test_a_broken_sink_fails_the_contract(
    pytester: pytest.Pytester, body: str, must_fail: list[str]
) -> None:
    result = run_contract(pytester, body, *FAST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED *::TestBroken::{name}*" for name in must_fail])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 10  # the rest of the suite still ran


def test_the_property_tests_catch_a_lost_event(pytester: pytest.Pytester) -> None:
    body = """
class Broken(MemorySink):
    # Loses an event whose props hold a list: only random data finds it.
    def write(self, events):
        super().write([e for e in events if not any(isinstance(v, list) for v in e.props.values())])
"""
    result = run_contract(pytester, body, "-k", "arbitrary", "--hypothesis-seed", "1")
    result.stdout.fnmatch_lines(["FAILED *::TestBroken::test_round_trip_of_arbitrary_events*"])


def test_the_reference_sink_passes_the_contract(pytester: pytest.Pytester) -> None:
    result = run_contract(pytester, "")
    result.assert_outcomes(passed=result.parseoutcomes()["passed"], skipped=1)
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes()["passed"] > 60


def test_a_write_only_sink_is_checked_through_read_back(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_write_only="""
import pytest

from consentmw.errors import SinkError
from consentmw.testing import SinkContract


class ListSink:
    def __init__(self):
        self.lines, self.seen, self.closed = [], set(), False

    def write(self, events):
        if self.closed:
            raise SinkError("closed", retryable=False)
        for event in events:
            if event.id not in self.seen:
                self.seen.add(event.id)
                self.lines.append(event.to_json())

    def close(self):
        self.closed = True


class LossyListSink(ListSink):
    def write(self, events):
        super().write(list(events)[1:])


class TestListSink(SinkContract):
    orders_by_timestamp = False

    @pytest.fixture
    def make_sink(self):
        return ListSink

    def read_back(self, sink):
        from consentmw.events import Event
        return [Event.from_json(line) for line in sink.lines]


class TestLossyListSink(TestListSink):
    @pytest.fixture
    def make_sink(self):
        return LossyListSink
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q", "-rf", *FAST)
    result.stdout.fnmatch_lines(["FAILED *::TestLossyListSink::test_round_trip_keeps_every_field*"])
    result.stdout.no_fnmatch_line("FAILED *::TestListSink::*")
    outcomes = result.parseoutcomes()
    assert outcomes["skipped"] > 20  # query, erase, rectify, aggregate, consent: not offered

"""The sink contract: one pytest suite every sink implementation must pass.

Subclass :class:`SinkContract` in a test module, override the ``make_sink`` fixture to return
a zero-argument callable that opens a fresh, empty sink, and pytest runs every test below
against it::

    class TestMySink(SinkContract):
        @pytest.fixture
        def make_sink(self, tmp_path):
            return lambda: MySink(tmp_path / f"{uuid.uuid4().hex}.db")

The tests compare the sink with :class:`~consentmw.MemorySink`, the reference: what a query,
an erasure or a report returns from the sink must equal what it returns from a memory sink
given the same writes. Optional capabilities (query, erase, rectify, aggregate, consent log)
are tested only when the sink has them. A sink that can only be written overrides
:meth:`SinkContract.read_back` so the round-trip and idempotency tests can still look.

Needs ``pytest`` and ``hypothesis`` (``pip install 'consentmw[test]'``). Not a place for
tests of one sink's own behaviour (files, connections, fork safety): keep those next to the
subclass.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..consentlog import GENESIS_HASH, ConsentRecord, chain_hash, verify_chain
from ..errors import SinkError
from ..events import Event, format_ts
from ..sinks import (
    AggregateRow,
    AggregatingSink,
    ConsentLogSink,
    ErasableSink,
    MemorySink,
    QueryableSink,
    RectifiableSink,
    Sink,
)
from .strategies import events as event_strategy

__all__ = ["SinkContract", "sample_events"]

#: 2024-03-01T00:00:00Z, the first timestamp of :func:`sample_events`.
_T0 = 1_709_251_200.0
_HOUR = 3600.0

# Few examples: SQL sinks take milliseconds per write. The fixtures deliberately live across
# examples (one sink, compared with one memory sink fed the same writes), and the same test
# function runs for every subclass, hence the suppressed health checks.
_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.differing_executors,
        HealthCheck.too_slow,
    ],
)

_SUBJECTS = ("v-alice", "v-bob", "v-x'); DROP TABLE events; --", "V-Alice")
_EMAILS = ("alice@example.test", "bob@example.test", "o'hara@example.test")


def _ts(hours: float) -> str:
    return format_ts(_T0 + hours * _HOUR)


def _event(hours: float, **fields: Any) -> Event:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": "page_visit",
        "name": None,
        "ts": _ts(hours),
        "site": "shop.example.test",
        "policy_version": "2014-12-12",
        "purposes": ("necessary", "analytics"),
    }
    values.update(fields)
    return Event(**values)


def sample_events() -> list[Event]:
    """A fixed data set in time order with several subjects, purposes, types, days and sites,
    hostile strings and nested props: the shared input of the filter, erase, rectify and
    aggregate tests. Fresh ids on every call."""
    ua = {"browser": "Firefox 128", "os": "Linux", "device": "Other", "is_bot": False}
    return [
        _event(0, aggregate=True, path="/", status=200),
        _event(1, visitor_id="v-alice", session_id="s1", path="/", ip="198.51.100.7", ua=ua),
        _event(
            2,
            type="action",
            name="download",
            visitor_id="v-alice",
            email="alice@example.test",
            path="/files/report.pdf",
            props={"file": "report.pdf", "bytes": 1234, "nested": {"a": [1, 2.5, None, True]}},
        ),
        _event(
            3,
            type="identify",
            visitor_id="v-alice",
            email="alice@example.test",
            purposes=("necessary", "analytics", "marketing"),
        ),
        _event(5, visitor_id="v-bob", path="/pricing", method="GET", status=200, ua=ua),
        _event(
            26,
            type="action",
            name="forum_post",
            visitor_id="v-bob",
            email="bob@example.test",
            method="POST",
            path="/forums/1/post",
            props={"title": "Grüße, 世界 \U0001f44b", "body": "line\nbreak \u2028 'quoted' \"x\""},
            purposes=("necessary", "support"),
        ),
        _event(27, aggregate=True, path="/pricing", site="docs.example.test"),
        _event(
            28,
            type="action",
            name="contact",
            email="alice@example.test",
            path="/contact",
            method="POST",
            claimed_email="Alice@Example.TEST",
            props={"topic": "'; DROP TABLE events; --"},
            purposes=("necessary", "marketing"),
        ),
        _event(29, visitor_id="V-Alice", path="/case", referrer="https://ref.example/?q=1&r=2"),
        _event(
            50,
            type="consent",
            name="accept_all",
            visitor_id="v-x'); DROP TABLE events; --",
            path="/_consent",
            purposes=("necessary",),
        ),
        _event(51, type="optout", name="email", email="o'hara@example.test", purposes=()),
        _event(52, aggregate=True, path="/", site="docs.example.test", domain=None),
    ]


def _dicts(events: Iterable[Event]) -> list[dict[str, Any]]:
    return [event.to_dict() for event in events]


def _record(subject: str = "c-1", **fields: Any) -> ConsentRecord:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "ts": _ts(0),
        "site": "shop.example.test",
        "policy_version": "2014-12-12",
        "granted": ("necessary", "analytics"),
        "mechanism": "accept_all",
        "subject": subject,
    }
    values.update(fields)
    return ConsentRecord(**values)


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` on ``count`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(i)
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer thread did not finish"
    if errors:
        raise errors[0]


class SinkContract:
    """Base class of a sink's contract tests; subclass it and override ``make_sink``.

    Class attributes a subclass may set:

    ``orders_by_timestamp``
        ``True`` (the default) if ``query`` returns events sorted by ``ts`` whatever order
        they were written in. Sinks that keep arrival order (memory, JSON Lines, Redis) set
        it to ``False``; they are still checked to return events written in time order in
        that order.
    ``threads``
        How many threads the concurrency tests start (default 4).
    """

    orders_by_timestamp: ClassVar[bool] = True
    threads: ClassVar[int] = 4

    # -- fixtures and hooks ------------------------------------------------------------------

    @pytest.fixture
    def make_sink(self) -> Callable[[], Sink]:
        """Override: return a zero-argument callable opening a fresh, empty sink."""
        pytest.fail("subclass SinkContract and override the make_sink fixture")

    @pytest.fixture
    def new_sink(self, make_sink: Callable[[], Sink]) -> Iterator[Callable[[], Sink]]:
        """``make_sink`` whose sinks are all closed when the test ends."""
        opened: list[Sink] = []

        def factory() -> Sink:
            sink = make_sink()
            opened.append(sink)
            return sink

        yield factory
        for sink in opened:
            sink.close()

    @pytest.fixture
    def sink(self, new_sink: Callable[[], Sink]) -> Sink:
        """A fresh sink, closed after the test."""
        return new_sink()

    @pytest.fixture
    def reference(self) -> MemorySink:
        """The memory sink a test feeds the same writes, to compare with."""
        return MemorySink()

    def read_back(self, sink: Sink) -> list[Event]:
        """Every stored event, oldest first. Override for a sink without ``query``."""
        if not isinstance(sink, QueryableSink):
            pytest.skip("the sink has no query(); override read_back to test it")
        return list(sink.query())

    def expected_order(self, events: Sequence[Event]) -> list[Event]:
        """``events``, given in arrival order, in the order the sink should return them:
        sorted by ``ts`` (ties in arrival order) if :attr:`orders_by_timestamp`, else as
        given."""
        if self.orders_by_timestamp:
            return sorted(events, key=lambda e: e.ts)
        return list(events)

    def fill(self, sink: Sink) -> MemorySink:
        """Write :func:`sample_events` to ``sink`` in three batches; return a memory sink
        holding the same, to compare with."""
        data = sample_events()
        model = MemorySink()
        for batch in (data[:4], data[4:9], data[9:]):
            sink.write(batch)
            model.write(batch)
        return model

    # -- writing and reading back ------------------------------------------------------------

    def test_fresh_sink_is_empty(self, sink: Sink) -> None:
        assert self.read_back(sink) == []

    def test_empty_write_stores_nothing(self, sink: Sink) -> None:
        sink.write([])
        sink.write(())
        assert self.read_back(sink) == []

    def test_round_trip_keeps_every_field(self, sink: Sink) -> None:
        data = sample_events()
        sink.write(data)
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(data))

    def test_round_trip_of_hostile_strings(self, sink: Sink) -> None:
        from .strategies import HOSTILE_STRINGS

        data = [
            _event(
                i,
                name=text,
                visitor_id=text or None,
                path="/" + text,
                referrer=text,
                claimed_email=text,
                ua={"browser": text, "os": None, "device": text, "is_bot": i % 2 == 0},
                props={text: text, "list": [text, {text: [text]}]},
            )
            for i, text in enumerate(HOSTILE_STRINGS)
        ]
        sink.write(data)
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(data))

    @_SETTINGS
    @given(batches=st.lists(st.lists(event_strategy(), max_size=6), min_size=1, max_size=3))
    def test_round_trip_of_arbitrary_events(
        self, sink: Sink, reference: MemorySink, batches: list[list[Event]]
    ) -> None:
        # One sink across examples (fixtures live for the whole test), compared with a memory
        # sink fed the same writes; fresh ids so that no example collides with an earlier one.
        model = reference
        for batch in batches:
            fresh = [replace(event, id=str(uuid.uuid4())) for event in batch]
            sink.write(fresh)
            model.write(fresh)
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(model.events))

    def test_query_without_filters_streams_oldest_first(self, sink: Sink) -> None:
        data = [_event(i, path=f"/{i}") for i in range(30)]
        for start in range(0, 30, 7):
            sink.write(data[start : start + 7])
        got = self.read_back(sink)
        assert [e.path for e in got] == [f"/{i}" for i in range(30)]
        assert [e.ts for e in got] == sorted(e.ts for e in got)

    def test_out_of_order_writes_come_back_oldest_first(self, sink: Sink) -> None:
        if not self.orders_by_timestamp:
            pytest.skip("the sink keeps arrival order (orders_by_timestamp = False)")
        data = [_event(i, path=f"/{i}") for i in range(12)]
        sink.write(data[6:])
        sink.write(data[:6][::-1])
        assert [e.path for e in self.read_back(sink)] == [f"/{i}" for i in range(12)]

    # -- idempotency -------------------------------------------------------------------------

    def test_same_batch_twice_is_stored_once(self, sink: Sink) -> None:
        data = sample_events()
        sink.write(data)
        sink.write(data)
        got = self.read_back(sink)
        assert len(got) == len(data)
        assert _dicts(got) == _dicts(self.expected_order(data))

    def test_overlapping_batches_store_each_event_once(self, sink: Sink) -> None:
        data = [_event(i, path=f"/{i}") for i in range(20)]
        sink.write(data[:12])
        sink.write(data[8:])
        sink.write(data[5:15])
        got = self.read_back(sink)
        assert sorted(e.id for e in got) == sorted(e.id for e in data)
        assert _dicts(got) == _dicts(data)

    def test_same_id_twice_in_one_batch_keeps_the_first(self, sink: Sink) -> None:
        first = _event(0, path="/first")
        again = replace(first, path="/again", props={"retry": 1})
        other = _event(1, path="/other")
        sink.write([first, again, other, first])
        assert _dicts(self.read_back(sink)) == _dicts([first, other])

    def test_a_retried_write_after_a_new_one_adds_nothing(self, sink: Sink) -> None:
        old = [_event(i) for i in range(5)]
        new = [_event(10 + i) for i in range(5)]
        sink.write(old)
        sink.write(new)
        sink.write(old)
        assert len(self.read_back(sink)) == 10

    def test_concurrent_writers_store_every_event_exactly_once(self, sink: Sink) -> None:
        shared = [_event(1000 + i, path="/shared") for i in range(20)]
        per_thread = 8
        own = [
            [
                [_event(t * 100 + b * 10 + i, path=f"/t{t}") for i in range(10)]
                for b in range(per_thread)
            ]
            for t in range(self.threads)
        ]

        def writer(t: int) -> None:
            for b, batch in enumerate(own[t]):
                sink.write(batch)
                if b == per_thread // 2:
                    sink.write(shared)

        _run_threads(self.threads, writer)
        got = self.read_back(sink)
        want = {e.id for batches in own for batch in batches for e in batch} | {
            e.id for e in shared
        }
        assert len(got) == len(want) == self.threads * per_thread * 10 + len(shared)
        assert {e.id for e in got} == want

    # -- closing and errors ------------------------------------------------------------------

    def test_write_after_close_raises_sink_error(self, new_sink: Callable[[], Sink]) -> None:
        sink = new_sink()
        sink.write([_event(0)])
        sink.close()
        with pytest.raises(SinkError):
            sink.write([_event(1)])

    def test_write_to_a_never_used_closed_sink_raises(self, new_sink: Callable[[], Sink]) -> None:
        sink = new_sink()
        sink.close()
        with pytest.raises(SinkError):
            sink.write([_event(0)])

    def test_close_is_idempotent(self, new_sink: Callable[[], Sink]) -> None:
        sink = new_sink()
        sink.write([_event(0)])
        sink.close()
        sink.close()

    # -- query -------------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "filters",
        [
            pytest.param({}, id="none"),
            pytest.param({"subject": "v-alice"}, id="subject-visitor"),
            pytest.param({"subject": "V-Alice"}, id="subject-visitor-is-case-sensitive"),
            pytest.param({"subject": "alice@example.test"}, id="subject-email"),
            pytest.param({"subject": "Alice@Example.TEST"}, id="subject-email-any-case"),
            pytest.param({"subject": "o'hara@example.test"}, id="subject-email-quote"),
            pytest.param({"subject": "v-x'); DROP TABLE events; --"}, id="subject-hostile"),
            pytest.param({"subject": "nobody"}, id="subject-unknown"),
            pytest.param({"purpose": "marketing"}, id="purpose"),
            pytest.param({"purpose": "necessary"}, id="purpose-all"),
            pytest.param({"purpose": "nonexistent"}, id="purpose-unknown"),
            pytest.param({"purpose": "analytic"}, id="purpose-prefix-is-not-a-match"),
            pytest.param({"type": "action"}, id="type"),
            pytest.param({"since": _ts(26)}, id="since-inclusive"),
            pytest.param({"until": _ts(26)}, id="until-exclusive"),
            pytest.param({"since": _ts(2), "until": _ts(29)}, id="since-until"),
            pytest.param(
                {"subject": "alice@example.test", "purpose": "marketing", "type": "action"},
                id="combined",
            ),
            pytest.param(
                {"subject": "v-alice", "since": _ts(2), "until": _ts(3)}, id="subject-window"
            ),
        ],
    )
    def test_query_filters_match_the_memory_sink(self, sink: Sink, filters: dict[str, str]) -> None:
        queryable = _queryable(sink)
        model = self.fill(sink)
        want = self.expected_order(list(model.query(**filters)))
        assert _dicts(queryable.query(**filters)) == _dicts(want)

    def test_query_finds_what_the_filters_promise(self, sink: Sink) -> None:
        # Pinned counts, so that a reference sink broken the same way cannot hide a bug.
        queryable = _queryable(sink)
        self.fill(sink)
        assert len(list(queryable.query(subject="v-alice"))) == 3
        assert len(list(queryable.query(subject="ALICE@example.test"))) == 3
        assert len(list(queryable.query(purpose="marketing"))) == 2
        assert len(list(queryable.query(type="action"))) == 3
        assert len(list(queryable.query(since=_ts(26), until=_ts(28)))) == 2
        assert len(list(queryable.query())) == 12

    @_SETTINGS
    @given(
        batch=st.lists(
            event_strategy(
                subjects=st.sampled_from(_SUBJECTS),
                emails=st.sampled_from(_EMAILS),
                ts=st.integers(0, 72).map(_ts),
            ),
            max_size=12,
        ),
        subject=st.none() | st.sampled_from(_SUBJECTS + _EMAILS + ("BOB@EXAMPLE.TEST",)),
        purpose=st.none() | st.sampled_from(("necessary", "analytics", "marketing")),
        kind=st.none() | st.sampled_from(("page_visit", "action")),
        since=st.none() | st.integers(0, 72).map(_ts),
        until=st.none() | st.integers(0, 72).map(_ts),
    )
    def test_query_of_arbitrary_events_matches_the_memory_sink(
        self,
        sink: Sink,
        reference: MemorySink,
        batch: list[Event],
        subject: str | None,
        purpose: str | None,
        kind: str | None,
        since: str | None,
        until: str | None,
    ) -> None:
        queryable = _queryable(sink)
        model = reference
        fresh = [replace(event, id=str(uuid.uuid4())) for event in batch]
        sink.write(fresh)
        model.write(fresh)
        filters = {"subject": subject, "purpose": purpose, "type": kind}
        filters.update(since=since, until=until)
        want = self.expected_order(list(model.query(**filters)))
        assert _dicts(queryable.query(**filters)) == _dicts(want)

    def test_query_can_be_abandoned_and_repeated(self, sink: Sink) -> None:
        queryable = _queryable(sink)
        data = [_event(i) for i in range(50)]
        sink.write(data)
        first = iter(queryable.query())
        assert next(first).id == data[0].id
        del first  # an unfinished iterator must release what it holds
        assert len(list(queryable.query())) == 50

    # -- erase -------------------------------------------------------------------------------

    def test_erase_by_visitor_id_deletes_only_the_subjects_events(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        model = self.fill(sink)
        assert erasable.erase("v-alice") == model.erase("v-alice") == 3
        got = self.read_back(sink)
        assert not [e for e in got if e.visitor_id == "v-alice"]
        assert _dicts(got) == _dicts(self.expected_order(model.events))

    def test_erase_by_email_is_case_insensitive(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        model = self.fill(sink)
        assert erasable.erase("Alice@EXAMPLE.test") == model.erase("Alice@EXAMPLE.test") == 3
        got = self.read_back(sink)
        assert not [e for e in got if e.email == "alice@example.test"]
        assert _dicts(got) == _dicts(self.expected_order(model.events))

    def test_erase_of_an_unknown_subject_returns_zero(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        model = self.fill(sink)
        assert erasable.erase("nobody") == 0
        assert erasable.erase("v-") == 0
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(model.events))

    def test_erase_twice_returns_zero_the_second_time(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        self.fill(sink)
        assert erasable.erase("v-bob") == 2
        assert erasable.erase("v-bob") == 0

    def test_after_erase_no_query_returns_the_subject(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        queryable = _queryable(sink)
        self.fill(sink)
        erasable.erase("v-alice")
        erasable.erase("alice@example.test")
        assert list(queryable.query(subject="v-alice")) == []
        assert list(queryable.query(subject="alice@example.test")) == []
        assert len(list(queryable.query(subject="v-bob"))) == 2

    def test_erase_keeps_the_consent_log(self, sink: Sink) -> None:
        erasable = _erasable(sink)
        log = _consent_log(sink)
        self.fill(sink)
        sealed = [log.append_consent(_record("v-alice")) for _ in range(3)]
        erasable.erase("v-alice")
        assert list(log.consent_records()) == sealed

    # -- rectify -----------------------------------------------------------------------------

    def test_rectify_changes_only_the_subjects_events(self, sink: Sink) -> None:
        rectifiable = _rectifiable(sink)
        model = self.fill(sink)
        changes = {"email": "alice@new.example.test", "ip": None}
        assert rectifiable.rectify("v-alice", changes) == model.rectify("v-alice", changes) == 3
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(model.events))
        changed = [e for e in self.read_back(sink) if e.email == "alice@new.example.test"]
        assert len(changed) == 3
        assert all(e.ip is None for e in changed)

    def test_rectify_by_email_any_case(self, sink: Sink) -> None:
        rectifiable = _rectifiable(sink)
        model = self.fill(sink)
        changes = {"visitor_id": "v-alice-2"}
        count = rectifiable.rectify("ALICE@example.test", changes)
        assert count == model.rectify("ALICE@example.test", changes) == 3
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(model.events))

    def test_rectify_of_an_unknown_subject_returns_zero(self, sink: Sink) -> None:
        rectifiable = _rectifiable(sink)
        self.fill(sink)
        assert rectifiable.rectify("nobody", {"email": "x@example.test"}) == 0

    @pytest.mark.parametrize("field", ["path", "ts", "id", "props", "type", "purposes"])
    def test_rectify_refuses_non_identifier_fields(self, sink: Sink, field: str) -> None:
        rectifiable = _rectifiable(sink)
        model = self.fill(sink)
        with pytest.raises(SinkError) as info:
            rectifiable.rectify("v-alice", {field: "x"})
        assert info.value.retryable is False
        assert _dicts(self.read_back(sink)) == _dicts(self.expected_order(model.events))

    # -- aggregate ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("by", "filters"),
        [
            pytest.param(["path"], {}, id="path"),
            pytest.param(["day", "type"], {}, id="day-type"),
            pytest.param(["site"], {"type": "page_visit"}, id="site-of-page-visits"),
            pytest.param(["name"], {"type": "action"}, id="name-of-actions"),
            pytest.param(["day"], {"since": _ts(2), "until": _ts(50)}, id="day-window"),
            pytest.param(["type", "site", "path"], {}, id="three-keys"),
            pytest.param([], {}, id="total"),
            pytest.param(["path"], {"type": "nonexistent"}, id="empty"),
        ],
    )
    def test_aggregate_matches_the_memory_sink(
        self, sink: Sink, by: list[str], filters: dict[str, str]
    ) -> None:
        aggregating = _aggregating(sink)
        model = self.fill(sink)
        want = model.aggregate(by=by, **filters)
        assert sorted(aggregating.aggregate(by=by, **filters), key=_row_key) == sorted(
            want, key=_row_key
        )

    def test_aggregate_counts(self, sink: Sink) -> None:
        aggregating = _aggregating(sink)
        self.fill(sink)
        rows = {row.keys: row.count for row in aggregating.aggregate(by=["day"])}
        assert rows == {("2024-03-01",): 5, ("2024-03-02",): 4, ("2024-03-03",): 3}
        by_path = {r.keys: r.count for r in aggregating.aggregate(by=["path"], type="page_visit")}
        assert by_path[("/",)] == 3
        assert by_path[("/pricing",)] == 2

    def test_aggregate_refuses_identifier_keys(self, sink: Sink) -> None:
        aggregating = _aggregating(sink)
        self.fill(sink)
        for key in ("email", "visitor_id", "ip", "path; DROP TABLE events"):
            with pytest.raises(ValueError, match="cannot group by"):
                aggregating.aggregate(by=[key])

    # -- consent log -------------------------------------------------------------------------

    def test_consent_append_returns_sealed_records_forming_a_chain(self, sink: Sink) -> None:
        log = _consent_log(sink)
        first = log.append_consent(_record("c-1"))
        second = log.append_consent(_record("c-2", mechanism="reject_all", granted=()))
        third = log.append_consent(_record("c-1", mechanism="withdraw", granted=("necessary",)))
        assert first.prev_hash == GENESIS_HASH
        assert second.prev_hash == first.hash
        assert third.prev_hash == second.hash
        for record in (first, second, third):
            assert record.hash == chain_hash(record, record.prev_hash)
        records = list(log.consent_records())
        assert records == [first, second, third]
        assert verify_chain(records) == []

    def test_consent_records_keep_every_field(self, sink: Sink) -> None:
        log = _consent_log(sink)
        record = _record(
            "c-\u00fc'; --", granted=("necessary", "ünïcödé", "marketing"), site="s\u2028"
        )
        sealed = log.append_consent(record)
        assert replace(sealed, prev_hash=GENESIS_HASH, hash="") == record
        assert list(log.consent_records()) == [sealed]

    def test_consent_append_is_idempotent_by_id(self, sink: Sink) -> None:
        log = _consent_log(sink)
        record = _record("c-1")
        first = log.append_consent(record)
        log.append_consent(_record("c-2"))
        again = log.append_consent(record)
        assert again == first
        records = list(log.consent_records())
        assert len(records) == 2
        assert verify_chain(records) == []

    def test_consent_records_by_subject(self, sink: Sink) -> None:
        log = _consent_log(sink)
        sealed = [log.append_consent(_record(f"c-{i % 3}")) for i in range(9)]
        assert list(log.consent_records(subject="c-1")) == sealed[1::3]
        assert list(log.consent_records(subject="nobody")) == []

    def test_concurrent_consent_appends_keep_one_chain(self, sink: Sink) -> None:
        log = _consent_log(sink)
        per_thread = 10

        def appender(t: int) -> None:
            for i in range(per_thread):
                log.append_consent(_record(f"c-{t}-{i}"))

        _run_threads(self.threads, appender)
        records = list(log.consent_records())
        assert len(records) == self.threads * per_thread
        assert len({r.id for r in records}) == len(records)
        assert verify_chain(records) == []

    def test_consent_append_after_close_raises(self, new_sink: Callable[[], Sink]) -> None:
        sink = new_sink()
        log = _consent_log(sink)
        log.append_consent(_record())
        sink.close()
        with pytest.raises(SinkError):
            log.append_consent(_record())


def _row_key(row: AggregateRow) -> tuple[tuple[str, ...], int]:
    return tuple("" if k is None else k for k in row.keys), row.count


def _skip_without(capability: str) -> None:
    pytest.skip(f"the sink has no {capability} capability")


def _queryable(sink: Sink) -> QueryableSink:
    if not isinstance(sink, QueryableSink):
        _skip_without("query")
    assert isinstance(sink, QueryableSink)
    return sink


def _erasable(sink: Sink) -> ErasableSink:
    if not isinstance(sink, ErasableSink):
        _skip_without("erase")
    assert isinstance(sink, ErasableSink)
    return sink


def _rectifiable(sink: Sink) -> RectifiableSink:
    if not isinstance(sink, RectifiableSink):
        _skip_without("rectify")
    assert isinstance(sink, RectifiableSink)
    return sink


def _aggregating(sink: Sink) -> AggregatingSink:
    if not isinstance(sink, AggregatingSink):
        _skip_without("aggregate")
    assert isinstance(sink, AggregatingSink)
    return sink


def _consent_log(sink: Sink) -> ConsentLogSink:
    if not isinstance(sink, ConsentLogSink):
        _skip_without("consent log")
    assert isinstance(sink, ConsentLogSink)
    return sink

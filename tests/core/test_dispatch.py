"""The dispatcher: batching, bounded queue, retries, poison isolation, spool and replay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from consentmw import Event, MemorySink, SinkError
from consentmw.dispatch import Dispatcher, RequestInfo
from consentmw.spool import Spool

INFO = RequestInfo(
    policy_version="1",
    purposes=("analytics", "necessary"),
    aggregate=False,
    visitor_id="v1",
    session_id="s1",
    method="GET",
    path="/",
    referrer=None,
    email=None,
    facts=None,
)


def item(n: int, **props: Any) -> tuple[Any, ...]:
    return ("action", f"a{n}", 1_800_000_000.0 + n, {"n": n, **props}, INFO, None)


class FlakySink(MemorySink):
    """Fails on demand: ``down`` raises retryable errors; poison events are refused for good;
    ``gate`` blocks writes until set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.failures_left = 0
        self.writes = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def write(self, events: Sequence[Event]) -> None:
        self.writes += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.down:
            raise SinkError("down")
        if self.failures_left:
            self.failures_left -= 1
            raise SinkError("flaky")
        if any(e.props.get("poison") for e in events):
            raise SinkError("cannot store this", retryable=False)
        super().write(events)


@pytest.fixture
def make() -> Iterator[Any]:
    made: list[Dispatcher] = []

    def factory(*sinks: Any, **kw: Any) -> Dispatcher:
        kw.setdefault("flush_interval", 0.01)
        kw.setdefault("retry_base", 0.001)
        kw.setdefault("retry_max", 0.005)
        d = Dispatcher(
            {f"memory://{i}": s for i, s in enumerate(sinks)},
            site="t.test",
            spool=kw.pop("spool", None) or Spool(None),
            **kw,
        )
        made.append(d)
        return d

    yield factory
    for d in made:
        d.close(5)


def test_events_are_built_off_the_request_thread(make: Any) -> None:
    sink = MemorySink()
    d = make(sink, batch_size=7)
    for n in range(50):
        assert d.enqueue(item(n))
    assert d.flush(5)
    events = sink.events
    assert [e.props["n"] for e in events] == list(range(50))
    assert len({e.id for e in events}) == 50
    e = events[0]
    assert e.site == "t.test" and e.type == "action" and e.name == "a0" and e.visitor_id == "v1"
    assert e.ts == "2027-01-15T08:00:00.000000Z"
    assert d.stats()["written"] == 50 and d.stats()["enqueued"] == 50


def test_a_full_queue_drops_the_newest_and_counts(make: Any) -> None:
    sink = MemorySink()
    d = make(sink, queue_size=10, batch_size=100, flush_interval=60)
    accepted = [d.enqueue(item(n)) for n in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert d.stats()["dropped"] == {"queue_full": 5}
    assert d.flush(5)
    assert [e.props["n"] for e in sink.events] == list(range(10))


def test_retries_with_backoff_then_writes(make: Any) -> None:
    sink = FlakySink()
    sink.failures_left = 2
    d = make(sink)
    d.enqueue(item(1))
    assert d.flush(5)
    assert len(sink.events) == 1 and d.stats()["retried"] == 2 and d.stats()["spooled"] == 0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    d = Dispatcher({}, site="x", spool=Spool(None), retry_base=0.1, retry_max=1.0, rng=lambda: 1.0)
    assert [d.backoff(a) for a in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    low = Dispatcher(
        {}, site="x", spool=Spool(None), retry_base=0.1, retry_max=1.0, rng=lambda: 0.0
    )
    assert low.backoff(2) == pytest.approx(0.2)
    d.close(1)
    low.close(1)


def test_a_poison_event_is_isolated_into_the_dead_letters(make: Any) -> None:
    sink = FlakySink()
    spool = Spool(None)
    d = make(sink, batch_size=16, spool=spool)
    for n in range(16):
        d.enqueue(item(n, poison=n == 11))
    assert d.flush(5)
    assert sorted(e.props["n"] for e in sink.events) == [n for n in range(16) if n != 11]
    dead = spool.dead_letters()
    assert len(dead) == 1 and Event.from_json(dead[0][0]).props["n"] == 11
    assert d.stats()["dead_lettered"] == 1


def test_a_down_sink_is_spooled_and_replayed_nothing_lost(make: Any, tmp_path: Any) -> None:
    sink = FlakySink()
    sink.down = True
    spool = Spool(tmp_path / "spool.db")
    d = make(sink, batch_size=50, spool=spool, max_retries=1)
    for n in range(500):
        assert d.enqueue(item(n))
    assert d.flush(10)
    stats = d.stats()
    assert stats["spooled"] == 500 and stats["written"] == 0 and spool.count() == 500
    assert stats["sinks"]["memory://0"]["down"] is True
    sink.down = False
    deadline = time.monotonic() + 10
    while spool.count() and time.monotonic() < deadline:
        d.wake.set()
        d.flush(0.1)
        with d._writers[0].cond:
            d._writers[0].cond.notify()
    assert spool.count() == 0
    assert sorted(e.props["n"] for e in sink.events) == list(range(500))
    assert d.stats()["replayed"] == 500 and d.stats()["written"] == 500
    assert d.stats()["sinks"]["memory://0"]["down"] is False


def test_a_slow_sink_does_not_stall_the_others(make: Any) -> None:
    slow, fast = FlakySink(), MemorySink()
    slow.gate = threading.Event()
    d = make(slow, fast, batch_size=10)
    for n in range(100):
        d.enqueue(item(n))
    deadline = time.monotonic() + 5
    while len(fast.events) < 100 and time.monotonic() < deadline:
        d.wake.set()
        time.sleep(0.01)
    assert len(fast.events) == 100 and slow.entered.is_set() and not slow.events
    slow.gate.set()
    assert d.flush(5)
    assert len(slow.events) == 100


def test_close_with_a_stuck_sink_spools_what_is_left_by_the_deadline(
    make: Any, tmp_path: Any
) -> None:
    stuck = FlakySink()
    stuck.gate = threading.Event()
    spool = Spool(tmp_path / "spool.db")
    d = make(stuck, batch_size=10, spool=spool)
    for n in range(100):
        d.enqueue(item(n))
    assert stuck.entered.wait(5)
    started = time.monotonic()
    assert d.close(0.5) is False
    assert time.monotonic() - started < 3
    # The batch in flight may be written later; everything else is on disk.
    assert spool.count() >= 90
    stuck.gate.set()


def test_erase_pending_removes_queued_events(make: Any) -> None:
    sink = FlakySink()
    sink.gate = threading.Event()
    d = make(sink, batch_size=5)
    for n in range(20):
        d.enqueue(item(n))
    assert sink.entered.wait(5)
    deadline = time.monotonic() + 5
    while d.queue and time.monotonic() < deadline:
        d.wake.set()
        time.sleep(0.01)
    removed = d.erase_pending(lambda e: e.props["n"] % 2 == 0)
    assert removed >= 5
    sink.gate.set()
    assert d.flush(5)
    written = [e.props["n"] for e in sink.events]
    assert len(written) == 20 - removed


def test_redaction_failure_never_writes_the_event(make: Any) -> None:
    sink = MemorySink()

    def redact(e: Event) -> Event:
        if e.props.get("n") == 3:
            raise RuntimeError("bug")
        return e

    d = make(sink, redact=redact)
    for n in range(5):
        d.enqueue(item(n))
    assert d.flush(5)
    assert sorted(e.props["n"] for e in sink.events) == [0, 1, 2, 4]
    assert d.stats()["dead_lettered"] == 1


def test_forgotten_identifiers_are_never_written(make: Any, tmp_path: Any) -> None:
    sink = FlakySink()
    sink.gate = threading.Event()
    spool = Spool(tmp_path / "spool.db")
    d = make(sink, batch_size=4, spool=spool)
    other = RequestInfo(
        policy_version="1",
        purposes=("analytics",),
        aggregate=False,
        visitor_id="v2",
        session_id="s2",
        method="GET",
        path="/",
        referrer=None,
        email="Ann@Example.test",
        facts=None,
    )
    for n in range(8):
        d.enqueue(item(n))
        d.enqueue(("action", f"b{n}", 1_800_000_000.0 + n, {"n": n}, other, None))
    assert sink.entered.wait(5)  # a batch is in the writer's hands, blocked
    later = "2100-01-01T00:00:00.000000Z"  # after every item's timestamp
    d.forget(["v1"], until=later)
    d.forget(["ann@example.test"], until=later)
    sink.gate.set()
    assert d.flush(5)
    # Only the batch already inside the sink's write went in (an erasure waits for it and
    # then clears the sinks); everything after was dropped.
    stats = d.stats()
    assert len(sink.events) == stats["written"] <= 4
    assert stats["written"] + stats["dropped"]["erased"] == 16


def test_forgotten_identifiers_are_dropped_from_the_spool_replay(make: Any, tmp_path: Any) -> None:
    sink = FlakySink()
    sink.down = True
    spool = Spool(tmp_path / "spool.db")
    d = make(sink, batch_size=10, spool=spool, max_retries=0)
    for n in range(10):
        d.enqueue(item(n))
    assert d.flush(5) and spool.count() == 10
    d.forget(["v1"], until="2100-01-01T00:00:00.000000Z")
    sink.down = False
    deadline = time.monotonic() + 5
    while spool.count() and time.monotonic() < deadline:
        with d._writers[0].cond:
            d._writers[0].cond.notify()
        time.sleep(0.02)
    assert spool.count() == 0 and sink.events == []
    assert d.stats()["replayed"] == 0 and d.stats()["dropped"]["erased"] == 10


def test_what_a_visitor_does_after_an_erasure_is_recorded(make: Any) -> None:
    sink = MemorySink()
    d = make(sink)
    d.forget(["v1"], until="2027-01-15T08:00:04.000000Z")
    for n in range(10):  # timestamps 08:00:00 … 08:00:09
        d.enqueue(item(n))
    assert d.flush(5)
    assert [e.props["n"] for e in sink.events] == [5, 6, 7, 8, 9]
    assert d.stats()["dropped"]["erased"] == 5

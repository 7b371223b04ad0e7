"""``redis://``: the contract, the dedup window, trimming, fork safety, and the relay into
PostgreSQL (exact counts, no duplicates after a relay dies between write and ack)."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from consentmw.errors import ConfigError, MissingDependencyError, SinkError
from consentmw.events import Event
from consentmw.sinks import MemorySink, Sink, open_sink
from consentmw.testing import SinkContract, sample_events

from ._fork import fork_call, fork_warning, wait_children

pytestmark = pytest.mark.services

redis = pytest.importorskip("redis")
psycopg = pytest.importorskip("psycopg")
from consentmw.sinks.postgres import PostgresSink  # noqa: E402
from consentmw.sinks.redis import (  # noqa: E402
    DEFAULT_DEDUP_TTL,
    RedisStreamSink,
    StreamRelay,
    relay,
)


@pytest.fixture
def client(redis_server: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server)
    yield conn
    conn.close()


@pytest.fixture
def stream_urls(redis_server: str, client: redis.Redis) -> Iterator[Callable[[], str]]:
    """Make URLs naming fresh streams; each stream, its dead letters and dedup keys are
    deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        stream = "cmw-test-" + uuid.uuid4().hex[:12]
        made.append(stream)
        return f"{redis_server}?stream={stream}"

    yield make
    for stream in made:
        client.delete(stream, f"{stream}:dead")
        keys = list(client.scan_iter(match=f"cmw:{stream}:id:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


def events(n: int, **fields: object) -> list[Event]:
    base = sample_events()
    return [
        replace(base[i % len(base)], id=str(uuid.uuid4()), **fields)  # type: ignore[arg-type]
        for i in range(n)
    ]


class TestRedisContract(SinkContract):
    orders_by_timestamp = False  # stream order: oldest first when written in time order

    @pytest.fixture
    def make_sink(self, stream_urls: Callable[[], str]) -> Callable[[], Sink]:
        return lambda: RedisStreamSink.from_url(stream_urls())


# -- the sink --------------------------------------------------------------------------------


def test_url_options(stream_urls: Callable[[], str], client: redis.Redis) -> None:
    url = stream_urls()
    sink = open_sink(f"{url}&maxlen=5000&dedup_ttl=120&socket_timeout=3")
    try:
        assert isinstance(sink, RedisStreamSink)
        sink.write(events(3))
        stream = sink.stream
    finally:
        sink.close()
    assert client.xlen(stream) == 3
    ttls = [client.ttl(k) for k in client.scan_iter(match=f"cmw:{stream}:id:*")]
    assert len(ttls) == 3
    assert all(100 < t <= 120 for t in ttls)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("stream=", id="empty-stream"),
        pytest.param("stream=s&maxlen=lots", id="maxlen-not-int"),
        pytest.param("stream=s&maxlen=0", id="maxlen-zero"),
        pytest.param("stream=s&dedup_ttl=-1", id="ttl-negative"),
    ],
)
def test_bad_url_options(redis_server: str, query: str) -> None:
    with pytest.raises(ConfigError):
        RedisStreamSink.from_url(f"{redis_server}?{query}")


def test_default_dedup_window_is_seven_days() -> None:
    assert DEFAULT_DEDUP_TTL == 7 * 24 * 3600


def test_each_entry_holds_the_event_json(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    sink = RedisStreamSink.from_url(stream_urls())
    data = events(2)
    try:
        sink.write(data)
        entries = client.xrange(sink.stream)
    finally:
        sink.close()
    assert [Event.from_json(fields[b"event"]) for _, fields in entries] == data


def test_within_the_dedup_window_rewrites_add_nothing(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    url = stream_urls()
    data = events(1200)  # more than one script chunk
    first, second = RedisStreamSink.from_url(url), RedisStreamSink.from_url(url)
    try:
        first.write(data[:700])
        second.write(data)  # another process, same window
        assert client.xlen(first.stream) == 1200
    finally:
        first.close()
        second.close()


def test_stream_is_trimmed_to_about_maxlen(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    sink = RedisStreamSink.from_url(stream_urls(), maxlen=1000)
    try:
        for _ in range(6):
            sink.write(events(500))
        length = client.xlen(sink.stream)
    finally:
        sink.close()
    assert 1000 <= length < 1500  # "~": trimmed in whole nodes, never below maxlen


def test_unreachable_server_is_a_retryable_error() -> None:
    sink = RedisStreamSink("redis://127.0.0.1:9/0", stream="s", socket_timeout=2)
    try:
        with pytest.raises(SinkError) as info:
            sink.write(events(1))
        assert info.value.retryable is True
    finally:
        sink.close()


def test_unencodable_event_is_not_retryable(stream_urls: Callable[[], str]) -> None:
    sink = RedisStreamSink.from_url(stream_urls())
    bad = events(1, props={"x": float("inf")})
    try:
        with pytest.raises(SinkError) as info:
            sink.write(bad)
        assert info.value.retryable is False
    finally:
        sink.close()


def test_query_skips_foreign_entries(stream_urls: Callable[[], str], client: redis.Redis) -> None:
    sink = RedisStreamSink.from_url(stream_urls())
    data = events(3)
    try:
        sink.write(data[:1])
        client.xadd(sink.stream, {"event": b"{not json"})
        client.xadd(sink.stream, {"other": b"field"})
        sink.write(data[1:])
        assert list(sink.query()) == data
        assert sink.erase(data[0].visitor_id or "") >= 0
    finally:
        sink.close()


def test_missing_redis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match=r"consentmw\[redis\]"):
        RedisStreamSink("redis://127.0.0.1:6379/0")


@fork_warning
def test_a_forked_child_opens_its_own_connection(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    sink = RedisStreamSink.from_url(stream_urls())
    data = events(9)
    read_end, write_end = os.pipe()
    try:
        sink.write(data[:3])
        parent_client = sink._client()
        parent_id = parent_client.client_id()

        def child() -> None:
            os.close(read_end)
            sink.write(data[3:6])
            child_client = sink._client()
            assert child_client is not parent_client
            os.write(write_end, str(child_client.client_id()).encode())

        pid = fork_call(child)
        os.close(write_end)
        assert wait_children([pid]) == [0]
        assert int(os.read(read_end, 32)) != parent_id
        sink.write(data[6:])
        assert sink._client().client_id() == parent_id  # the parent's connection still works
        assert list(sink.query()) == data
    finally:
        os.close(read_end)
        sink.close()


# -- the relay -------------------------------------------------------------------------------


class Flaky:
    """A target that stores into ``inner`` but fails once after (or before) storing: the relay
    dying between the target write and the acknowledgement."""

    def __init__(self, inner: Sink, *, store_first: bool = True) -> None:
        self.inner = inner
        self.store_first = store_first
        self.failed = False
        self.batches: list[list[str]] = []

    def write(self, events: Sequence[Event]) -> None:
        self.batches.append([e.id for e in events])
        if not self.failed:
            self.failed = True
            if self.store_first:
                self.inner.write(events)
            raise SinkError("simulated crash between write and ack")
        self.inner.write(events)

    def close(self) -> None:
        self.inner.close()


def pg_counts(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT id) FROM events").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def pending(client: redis.Redis, stream: str, group: str = "consentmw") -> int:
    return int(client.xpending(stream, group)["pending"])


def test_relay_moves_every_event_into_postgres_exactly_once(
    stream_urls: Callable[[], str], postgres_url: str, client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    target = PostgresSink(postgres_url)
    data = events(5000)
    try:
        for start in range(0, len(data), 500):
            source.write(data[start : start + 500])
        source.write(data[:1000])  # a retried batch: deduplicated at the source
        worker = StreamRelay(source, target, consumer="a")
        delivered = 0
        while moved := worker.run_once(count=700):
            delivered += moved
        assert delivered == 5000
        assert worker.stats["relayed"] == 5000
        assert pending(client, source.stream) == 0
    finally:
        source.close()
        target.close()
    assert pg_counts(postgres_url) == (5000, 5000)


def test_a_relay_killed_between_write_and_ack_causes_no_duplicates(
    stream_urls: Callable[[], str], postgres_url: str, client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    target = PostgresSink(postgres_url)
    flaky = Flaky(target)
    data = events(1500)
    try:
        source.write(data)
        dying = StreamRelay(source, flaky, consumer="dying")
        with pytest.raises(SinkError, match="simulated crash"):
            dying.run_once(count=500)
        assert pg_counts(postgres_url) == (500, 500)  # written, never acknowledged
        assert pending(client, source.stream) == 500
        # The dying relay is gone; another one claims what it left behind.
        heir = StreamRelay(source, flaky, consumer="heir", claim_idle_ms=0)
        assert heir.drain(count=400) == 1500
        assert heir.stats["claimed"] == 500
        assert pending(client, source.stream) == 0
    finally:
        source.close()
        target.close()
    assert pg_counts(postgres_url) == (1500, 1500)
    redelivered = {i for batch in flaky.batches[1:] for i in batch} & set(flaky.batches[0])
    assert redelivered == set(flaky.batches[0])


def test_a_restarted_relay_rereads_its_own_pending_entries(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    memory = MemorySink()
    flaky = Flaky(memory, store_first=False)  # fails before storing anything
    data = events(300)
    try:
        source.write(data)
        first = StreamRelay(source, flaky, consumer="same")
        with pytest.raises(SinkError):
            first.run_once(count=100)
        assert memory.events == []
        # Same consumer name after a restart; claiming is off (entries are not idle).
        again = StreamRelay(source, flaky, consumer="same", claim_idle_ms=3_600_000)
        assert again.drain(count=100) == 300
        assert again.stats["claimed"] == 0
    finally:
        source.close()
    assert [e.id for e in memory.events] == [e.id for e in data]
    assert pending(client, source.stream) == 0


def test_retrying_in_the_same_relay_delivers_the_failed_batch(
    stream_urls: Callable[[], str],
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    memory = MemorySink()
    flaky = Flaky(memory, store_first=False)
    try:
        source.write(events(50))
        worker = StreamRelay(source, flaky, consumer="c")
        with pytest.raises(SinkError):
            worker.run_once()
        assert worker.run_once() == 50
        assert worker.stats["failures"] == 1
    finally:
        source.close()
    assert len(memory.events) == 50


def test_malformed_entries_are_acknowledged_and_counted(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    memory = MemorySink()
    data = events(4)
    try:
        source.write(data[:2])
        client.xadd(source.stream, {"event": b"{garbled"})
        client.xadd(source.stream, {"event": b'{"id": 1}'})
        client.xadd(source.stream, {"something": b"else"})
        source.write(data[2:])
        worker = StreamRelay(source, memory, consumer="c")
        assert worker.drain(count=3) == 4
        assert worker.stats["malformed"] == 3
        assert pending(client, source.stream) == 0
    finally:
        source.close()
    assert memory.events == data


def test_an_entry_erased_while_pending_is_acknowledged(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    memory = MemorySink()
    flaky = Flaky(memory, store_first=False)
    data = events(6, visitor_id="v-gone")
    try:
        source.write(data)
        worker = StreamRelay(source, flaky, consumer="c")
        with pytest.raises(SinkError):
            worker.run_once()
        assert source.erase("v-gone") == 6  # a rights request while the entries are pending
        assert worker.drain() == 0
        assert pending(client, source.stream) == 0
    finally:
        source.close()
    assert memory.events == []


class Refusing(MemorySink):
    """Refuses, for good, any event whose path is /poison."""

    def write(self, events: Sequence[Event]) -> None:
        if any(e.path == "/poison" for e in events):
            raise SinkError("cannot store /poison", retryable=False)
        super().write(events)


def test_events_the_target_refuses_for_good_go_to_the_dead_letter_stream(
    stream_urls: Callable[[], str], client: redis.Redis
) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    target = Refusing()
    data = events(10)
    data[3].path = "/poison"
    try:
        source.write(data)
        worker = StreamRelay(source, target, consumer="c")
        assert worker.drain() == 10
        assert worker.stats["dead_lettered"] == 1
        assert worker.stats["relayed"] == 9
        assert pending(client, source.stream) == 0
        dead = client.xrange(f"{source.stream}:dead")
    finally:
        source.close()
    assert [e.id for e in target.events] == [e.id for i, e in enumerate(data) if i != 3]
    assert len(dead) == 1
    assert Event.from_json(dead[0][1][b"event"]).id == data[3].id
    assert b"/poison" in dead[0][1][b"error"]


def test_run_stops_when_told(stream_urls: Callable[[], str]) -> None:
    source = RedisStreamSink.from_url(stream_urls())
    arrived = threading.Event()

    class Watching(MemorySink):
        def write(self, events: Sequence[Event]) -> None:
            super().write(events)
            if len(self.events) >= 120:
                arrived.set()

    target = Watching()
    stop = threading.Event()
    worker = StreamRelay(source, target, consumer="c")
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_ms": 100})
    thread.start()
    try:
        for _ in range(3):
            source.write(events(40))
        assert arrived.wait(30)
    finally:
        stop.set()
        thread.join(30)
        source.close()
    assert not thread.is_alive()
    assert len(target.events) == 120


def test_relay_function_from_urls(stream_urls: Callable[[], str], tmp_path: Path) -> None:
    url = stream_urls()
    source = RedisStreamSink.from_url(url)
    data = events(800)
    try:
        source.write(data)
    finally:
        source.close()
    target_url = f"sqlite:///{tmp_path}/events.db"
    stats = relay(url, target_url, group="g1", consumer="cli")
    assert stats["relayed"] == 800
    again = relay(url, target_url, group="g1", consumer="cli")
    assert again["relayed"] == 0
    check = open_sink(target_url)
    try:
        assert len(list(check.query())) == 800  # type: ignore[attr-defined]
    finally:
        check.close()


def test_relay_needs_a_redis_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        relay(f"sqlite:///{tmp_path}/a.db", "memory://")

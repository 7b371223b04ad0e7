"""``sqlite://``: the contract, plus files, processes and fork safety."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from consentmw.consentlog import ConsentRecord, verify_chain
from consentmw.errors import ConfigError, SinkError
from consentmw.events import EVENT_FIELDS
from consentmw.sinks import Sink, open_sink
from consentmw.sinks._sql import COLUMNS, query_sql
from consentmw.sinks.sqlite import _DIALECT, SQLiteSink
from consentmw.testing import SinkContract, sample_events

from ._fork import fork_call, fork_warning, wait_children


class TestSQLiteContract(SinkContract):
    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Callable[[], Sink]:
        return lambda: SQLiteSink(tmp_path / f"{uuid.uuid4().hex}.db")


# -- URLs and files --------------------------------------------------------------------------


def test_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "events.db"
    sink = open_sink(f"sqlite:///{path}")
    try:
        assert isinstance(sink, SQLiteSink)
        sink.write(sample_events()[:2])
    finally:
        sink.close()
    assert path.exists()


def test_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = open_sink("sqlite:///data/events.db?busy_timeout_ms=100")
    try:
        sink.write(sample_events()[:1])
    finally:
        sink.close()
    assert (tmp_path / "data" / "events.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///x.db?journal=off", id="unknown-option"),
        pytest.param("sqlite:///x.db?busy_timeout_ms=soon", id="bad-timeout"),
        pytest.param("sqlite:///:memory:", id="memory"),
        pytest.param("sqlite://", id="no-path"),
    ],
)
def test_bad_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_sink(url)


def test_file_is_in_wal_mode_with_the_documented_schema(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sink = SQLiteSink(path)
    try:
        sink.write(sample_events()[:1])
    finally:
        sink.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        assert columns == ["seq", *EVENT_FIELDS]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(events)")}
        assert {"ix_events_visitor", "ix_events_email", "ix_events_type"} <= indexes
        assert {row[1] for row in conn.execute("PRAGMA table_info(consent_log)")} >= {"seq", "hash"}
    finally:
        conn.close()


def test_purposes_filter_runs_in_sql(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "events.db")
    try:
        sink.write(sample_events())
        sql, params = query_sql(_DIALECT, "events", purpose="marketing")
        assert "json_each" in sql
        assert params == ["marketing"]
        conn = sqlite3.connect(tmp_path / "events.db")
        try:
            assert conn.execute(sql.replace(COLUMNS, "count(*)"), params).fetchone() == (2,)
        finally:
            conn.close()
    finally:
        sink.close()


# -- errors ----------------------------------------------------------------------------------


def test_a_locked_file_is_a_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sink = SQLiteSink(path, busy_timeout_ms=50)
    data = sample_events()
    sink.write(data[:1])
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(SinkError, match="locked") as info:
            sink.write(data[1:])
        assert info.value.retryable is True
        holder.execute("ROLLBACK")
        sink.write(data[1:])  # and the sink recovers once it is released
        assert len(list(sink.query())) == len(data)
    finally:
        holder.close()
        sink.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("props", {"x": float("nan")}, id="nan"),
        pytest.param("props", {"x": object()}, id="not-json"),
        pytest.param("path", "/\ud800", id="lone-surrogate"),
        pytest.param("status", 2**70, id="huge-int"),
        pytest.param("ts", None, id="missing-ts"),
    ],
)
def test_data_sqlite_cannot_store_is_not_retryable(
    tmp_path: Path, field: str, value: object
) -> None:
    sink = SQLiteSink(tmp_path / "events.db")
    good, bad = sample_events()[:2]
    setattr(bad, field, value)
    try:
        with pytest.raises(SinkError) as info:
            sink.write([good, bad])
        assert info.value.retryable is False
        assert list(sink.query()) == []  # the batch is one transaction: nothing half-written
        sink.write([good])
        assert [e.id for e in sink.query()] == [good.id]
    finally:
        sink.close()


# -- idempotency key -------------------------------------------------------------------------


def test_idempotency_key_is_ts_and_id(tmp_path: Path) -> None:
    # Documented: a retried event repeats its (ts, id) and is stored once. An id reused with
    # another timestamp is a different event to SQLite (unlike the other sinks).
    sink = SQLiteSink(tmp_path / "events.db")
    event = sample_events()[0]
    try:
        sink.write([event, replace(event, path="/retry")])
        assert [e.path for e in sink.query()] == [event.path]
    finally:
        sink.close()


# -- processes -------------------------------------------------------------------------------


def _append_consent(path: Path, worker: int, count: int) -> None:
    sink = SQLiteSink(path, busy_timeout_ms=30_000)
    try:
        for i in range(count):
            sink.append_consent(
                ConsentRecord(f"w{worker}-{i}", "2024", "s", "v", ("a",), "custom", f"c{worker}")
            )
    finally:
        sink.close()


@pytest.mark.slow
@fork_warning
def test_processes_appending_consent_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "consent.db"
    first = SQLiteSink(path)
    first.append_consent(ConsentRecord("r0", "2024", "s", "v", (), "reject_all", "c"))
    first.close()
    pids = [fork_call(lambda w=w: _append_consent(path, w, 25)) for w in range(4)]
    assert wait_children(pids) == [0, 0, 0, 0]
    sink = SQLiteSink(path)
    try:
        records = list(sink.consent_records())
        assert len(records) == 1 + 4 * 25
        assert verify_chain(records) == []
        assert len(list(sink.consent_records(subject="c2"))) == 25
    finally:
        sink.close()


def _write_events(path: Path, worker: int) -> None:
    sink = SQLiteSink(path, busy_timeout_ms=30_000)
    base = sample_events()[0]
    try:
        for batch in range(10):
            sink.write(
                [replace(base, id=f"w{worker}-{batch}-{i}", path=f"/w{worker}") for i in range(50)]
            )
    finally:
        sink.close()


@pytest.mark.slow
@fork_warning
def test_processes_writing_together_store_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    pids = [fork_call(lambda w=w: _write_events(path, w)) for w in range(4)]
    pids += [fork_call(lambda: _write_events(path, 0))]  # a duplicate writer
    assert wait_children(pids) == [0] * 5
    sink = SQLiteSink(path)
    try:
        assert len(list(sink.query())) == 4 * 10 * 50
    finally:
        sink.close()


@fork_warning
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "events.db")
    data = sample_events()
    read_end, write_end = os.pipe()
    try:
        sink.write(data[:4])
        parent_conn = sink._conn
        assert parent_conn is not None

        def child() -> None:
            os.close(read_end)
            sink.write(data[4:8])
            os.write(write_end, b"own" if sink._conn is not parent_conn else b"shared")

        pid = fork_call(child)
        os.close(write_end)
        assert wait_children([pid]) == [0]
        assert os.read(read_end, 16) == b"own"
        sink.write(data[8:])
        assert sink._conn is parent_conn  # the parent keeps its connection
        assert [e.id for e in sink.query()] == [e.id for e in data]
    finally:
        os.close(read_end)
        sink.close()


def test_a_slow_reader_does_not_block_writers(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "events.db", busy_timeout_ms=100)
    data = [replace(e, id=str(i)) for i, e in enumerate(sample_events() * 100)]
    try:
        sink.write(data[:1000])
        reading = sink.query()
        assert next(reading).id == "0"  # a read transaction is open from here on
        sink.write(data[1000:])  # WAL: the writer does not wait for it
        assert sum(1 for _ in reading) == 999  # the reader sees its snapshot
        assert len(list(sink.query())) == len(data)
    finally:
        sink.close()


@pytest.mark.slow
@fork_warning
def test_forking_while_another_thread_writes_never_hangs_the_child(tmp_path: Path) -> None:
    # A fork taken while a thread is inside SQLite would leave SQLite's own mutexes locked in
    # the child. The sink holds forks until no write is in flight; each child must finish.
    sink = SQLiteSink(tmp_path / "events.db")
    base = sample_events()[0]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        n = 0
        try:
            while not stop.is_set():
                sink.write([replace(base, id=f"p{n}-{i}") for i in range(200)])
                n += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        pids = []
        for k in range(15):
            pids.append(
                fork_call(lambda k=k: sink.write([replace(base, id=f"c{k}", path="/child")]))
            )
        codes = wait_children(pids, timeout=30)
    finally:
        stop.set()
        thread.join(30)
    try:
        assert errors == []
        assert codes == [0] * 15
        assert len(list(sink.query(subject=None, since=None))) > 15
        assert sum(1 for e in sink.query() if e.path == "/child") == 15
    finally:
        sink.close()

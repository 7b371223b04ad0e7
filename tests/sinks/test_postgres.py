"""``postgresql://``: the contract, plus schema creation, timeouts, errors and fork safety."""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from consentmw.errors import ConfigError, MissingDependencyError, SinkError
from consentmw.sinks import Sink, open_sink
from consentmw.testing import SinkContract, sample_events

from ._fork import fork_call, fork_warning, wait_children

pytestmark = pytest.mark.services

psycopg = pytest.importorskip("psycopg")
from consentmw.sinks.postgres import STRATEGIES, PostgresSink  # noqa: E402


@pytest.fixture
def schema_urls(postgres_server: str) -> Iterator[Callable[[], str]]:
    """Make URLs whose search_path is a fresh schema each; every schema dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        schema = "cmw_test_" + uuid.uuid4().hex[:12]
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        made.append(schema)
        sep = "&" if "?" in postgres_server else "?"
        return f"{postgres_server}{sep}options=-csearch_path%3D{schema}"

    yield make
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class TestPostgresContract(SinkContract):
    @pytest.fixture
    def make_sink(self, schema_urls: Callable[[], str]) -> Callable[[], Sink]:
        return lambda: PostgresSink.from_url(schema_urls())


class TestPostgresExecutemanyContract(SinkContract):
    """The slower insert strategy must keep the same contract."""

    @pytest.fixture
    def make_sink(self, schema_urls: Callable[[], str]) -> Callable[[], Sink]:
        return lambda: PostgresSink.from_url(schema_urls(), strategy="executemany")


def tables(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for table, index in rows:
        out.setdefault(table, []).append(index)
    return out


def test_schema_is_created_on_first_use(postgres_url: str) -> None:
    sink = PostgresSink.from_url(postgres_url)
    try:
        assert tables(postgres_url) == {}  # nothing happens before the first use
        sink.write(sample_events()[:1])
    finally:
        sink.close()
    found = tables(postgres_url)
    assert set(found) == {"events", "consent_log"}
    assert {
        "events_pkey",
        "events_visitor_idx",
        "events_email_idx",
        "events_ts_idx",
        "events_type_idx",
        "events_purposes_idx",
    } <= set(found["events"])


def test_table_names_from_the_url(postgres_url: str) -> None:
    sink = open_sink(f"{postgres_url}&table=ev2&consent_table=log2&statement_timeout=2")
    try:
        sink.write(sample_events()[:2])
    finally:
        sink.close()
    assert set(tables(postgres_url)) == {"ev2", "log2"}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"table": "events; DROP TABLE x"}, id="table-injection"),
        pytest.param({"table": "Events"}, id="table-upper-case"),
        pytest.param({"consent_table": "a" * 41}, id="consent-table-too-long"),
        pytest.param({"strategy": "magic"}, id="strategy"),
        pytest.param({"statement_timeout": 0}, id="statement-timeout"),
    ],
)
def test_bad_options_raise_config_error(postgres_url: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PostgresSink(postgres_url, **options)  # type: ignore[arg-type]


def test_several_sinks_creating_the_schema_at_once(postgres_url: str) -> None:
    sinks = [PostgresSink(postgres_url) for _ in range(4)]
    barrier = threading.Barrier(len(sinks))
    errors: list[BaseException] = []
    data = sample_events()

    def first_write(sink: PostgresSink) -> None:
        try:
            barrier.wait(timeout=10)
            sink.write(data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_write, args=(s,)) for s in sinks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in sinks:
        s.close()
    assert errors == []
    check = PostgresSink(postgres_url)
    try:
        assert len(list(check.query())) == len(data)
    finally:
        check.close()


def test_statement_timeout_is_a_retryable_error(postgres_url: str) -> None:
    sink = PostgresSink(postgres_url, statement_timeout=0.2)
    data = sample_events()
    sink.write(data[:1])
    holder = psycopg.connect(postgres_url)
    try:
        # Another session holds a lock the write needs: the write waits, then times out.
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(SinkError, match="statement timeout") as info:
            sink.write(data[1:])
        assert info.value.retryable is True
    finally:
        holder.rollback()
        holder.close()
    try:
        sink.write(data[1:])  # the same sink recovers once the lock is gone
        assert len(list(sink.query())) == len(data)
    finally:
        sink.close()


def test_unreachable_server_is_a_retryable_error() -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    sink = PostgresSink("postgresql://postgres@127.0.0.1:9/test", connect_timeout=2)
    try:
        with pytest.raises(SinkError) as info:
            sink.write(sample_events()[:1])
        assert info.value.retryable is True
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("path", "/a\x00b", id="nul-in-text"),
        pytest.param("status", 2**40, id="status-out-of-range"),
    ],
)
def test_data_the_server_refuses_is_not_retryable(
    postgres_url: str, field: str, value: object
) -> None:
    sink = PostgresSink(postgres_url)
    good, bad = sample_events()[:2]
    setattr(bad, field, value)
    try:
        with pytest.raises(SinkError) as info:
            sink.write([good, bad])
        assert info.value.retryable is False
        sink.write([good])  # the connection survives the refusal
        assert [e.id for e in sink.query()] == [good.id]
    finally:
        sink.close()


def test_unencodable_props_are_not_retryable(postgres_url: str) -> None:
    sink = PostgresSink(postgres_url)
    event = sample_events()[0]
    event.props = {"when": object()}
    try:
        with pytest.raises(SinkError) as info:
            sink.write([event])
        assert info.value.retryable is False
    finally:
        sink.close()


def test_query_streams_with_a_server_side_cursor(postgres_url: str) -> None:
    sink = PostgresSink(postgres_url)
    data = [e for _ in range(300) for e in sample_events()]  # 3,600 events, several fetches
    try:
        sink.write(data)
        rows = sink.query()
        first = next(iter(rows))
        with psycopg.connect(postgres_url) as conn:
            cursors = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE 'FETCH FORWARD%%' OR query LIKE 'DECLARE%%'"
            ).fetchone()
        assert cursors is not None
        assert cursors[0] >= 1  # the reader's last statement: a server-side cursor fetch
        assert first.ts == min(e.ts for e in data)
        assert sum(1 for _ in rows) == len(data) - 1
    finally:
        sink.close()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"consentmw\[postgres\]"):
        PostgresSink("postgresql://127.0.0.1/test")


def test_strategies_are_listed() -> None:
    assert STRATEGIES[0] == "copy"


@fork_warning
def test_a_forked_child_opens_its_own_connection(postgres_url: str) -> None:
    sink = PostgresSink(postgres_url)
    data = sample_events()
    read_end, write_end = os.pipe()
    try:
        sink.write(data[:4])
        conn = sink._conn
        assert conn is not None
        parent_backend = conn.info.backend_pid

        def child() -> None:
            os.close(read_end)
            sink.write(data[4:8])
            assert sink._conn is not None
            os.write(write_end, str(sink._conn.info.backend_pid).encode())

        pid = fork_call(child)
        os.close(write_end)
        assert wait_children([pid]) == [0]
        child_backend = int(os.read(read_end, 32))
        assert child_backend != parent_backend
        # The parent's session survived the child (no Terminate sent on the shared socket).
        sink.write(data[8:])
        assert sink._conn is not None
        assert sink._conn.info.backend_pid == parent_backend
        assert [e.id for e in sink.query()] == [e.id for e in data]
    finally:
        os.close(read_end)
        sink.close()


@pytest.mark.slow
@fork_warning
def test_processes_appending_consent_keep_one_chain(postgres_url: str) -> None:
    from consentmw.consentlog import ConsentRecord, verify_chain

    def appender(worker: int) -> None:
        sink = PostgresSink(postgres_url)
        try:
            for i in range(15):
                sink.append_consent(
                    ConsentRecord(f"w{worker}-{i}", "2024", "s", "v", ("a",), "custom", "c")
                )
        finally:
            sink.close()

    first = PostgresSink(postgres_url)
    first._ready()  # schema first, so the children only append
    first.close()
    pids = [fork_call(lambda w=w: appender(w)) for w in range(4)]
    assert wait_children(pids) == [0, 0, 0, 0]
    sink = PostgresSink(postgres_url)
    try:
        records = list(sink.consent_records())
    finally:
        sink.close()
    assert len(records) == 60
    assert verify_chain(records) == []


def test_postgres_scheme_alias(postgres_url: str) -> None:
    sink = open_sink(postgres_url.replace("postgresql://", "postgres://", 1))
    try:
        assert isinstance(sink, PostgresSink)
        sink.write(sample_events()[:1])
        assert len(list(sink.query())) == 1
    finally:
        sink.close()


def test_a_lost_connection_is_reopened(postgres_url: str) -> None:
    sink = PostgresSink(postgres_url)
    data = sample_events()
    try:
        sink.write(data[:3])
        assert sink._conn is not None
        backend = sink._conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend])
        # The first write after the server dropped the session may fail, retryably; the next
        # one runs on a new connection.
        failure: SinkError | None = None
        try:
            sink.write(data[3:6])
        except SinkError as exc:
            failure = exc
            sink.write(data[3:6])
        assert failure is None or failure.retryable is True
        sink.write(data[6:])
        assert sink._conn is not None
        assert sink._conn.info.backend_pid != backend
        assert [e.id for e in sink.query()] == [e.id for e in data]
    finally:
        sink.close()

"""Section 4: events per second through the dispatcher, next to the bare client.

Dispatcher: N request-thread items (a page visit each, as the middleware queues them) are
enqueued — ``when_full = "block"`` so that none is dropped — and ``flush()`` waits until
the sink has every one; the wall time covers it all: event building, enrichment (when on),
redaction, serialisation and the writes. Each round checks that the sink counted N events.

Bare client: the same rows, already built (outside the timing), written the plainest fast
way in batches of 500 — ``executemany`` in one transaction (SQLite), ``os.write`` plus one
``fsync`` (JSON Lines), ``COPY`` (PostgreSQL), a pipeline of ``XADD`` (Redis) — into the
same schema. So the ratio shows what the pipeline's own Python work costs.

Enrichment "on" classifies the user agent (cached), anonymises the IP and resolves its name
through a reverse-DNS cache that a DNS server on 127.0.0.1 filled before the timing.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from consentmw.dispatch import Dispatcher, RequestInfo
from consentmw.events import Event, RequestFacts
from consentmw.resolve import Enricher, Redactor, UAClassifier
from consentmw.spool import Spool

from ._harness import WALL, Goal, Row, SkipSection, interleave, row

SECTION = "dispatcher throughput"
BATCH = 500
PG_URL = os.environ.get("CONSENTMW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONSENTMW_TEST_REDIS", "redis://127.0.0.1:6379/0")
UAS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
]
ADDRESSES = [f"66.{1 + i // 200}.{i % 200}.{10 + i % 7}" for i in range(300)]


def items(n: int) -> list[Any]:
    """Page-visit items as the request thread queues them: 300 visitors, 3 browsers."""
    now = time.time()
    infos = []
    for v in range(300):
        infos.append(
            RequestInfo(
                policy_version="2014-12-12",
                purposes=("analytics", "necessary"),
                aggregate=False,
                visitor_id=f"visitor-{v:04d}-0123456789",
                session_id=f"session-{v:04d}-012345678",
                method="GET",
                path=f"/products/{v % 70}",
                referrer="https://search.example/?q=consent",
                email=None,
                facts=RequestFacts(
                    remote_addr=ADDRESSES[v], user_agent=UAS[v % 3], host="shop.example.test"
                ),
            )
        )
    return [("page_visit", None, now + i / 1e5, {}, infos[i % 300], 200) for i in range(n)]


def events(n: int) -> list[Event]:
    """The events the dispatcher would make of :func:`items` (for the bare clients)."""
    d = Dispatcher({}, site="shop.example.test", spool=Spool(None), redact=Redactor().redact)
    try:
        return d._prepare(items(n))
    finally:
        d.close(1)


def through_dispatcher(
    sink_factory: Callable[[], Any],
    count: Callable[[Any], int],
    work: list[Any],
    enrich: Any = None,
) -> tuple[float, float]:
    """Events per second of wall time and per CPU-second of the process (all threads):
    enqueue every item, flush, check the count."""
    sink = sink_factory()
    dispatcher = Dispatcher(
        {"bench://sink": sink},
        site="shop.example.test",
        spool=Spool(None),
        batch_size=BATCH,
        queue_size=10_000,
        when_full="block",
        enrich=enrich,
        redact=Redactor().redact,
    )
    try:
        enqueue = dispatcher.enqueue
        cpu0 = time.process_time()
        started = WALL()
        for item in work:
            enqueue(item)
        ok = dispatcher.flush(300)
        # Batches the writer could not take at once went to the spool (a backlog): they
        # count only once replayed into the sink.
        deadline = started + 300
        while ok and dispatcher.spool.count() and WALL() < deadline:
            time.sleep(0.002)
            ok = dispatcher.flush(300)
        took = WALL() - started
        cpu = time.process_time() - cpu0
        stats = dispatcher.stats()
    finally:
        dispatcher.close(30)
    try:
        got = count(sink)
    finally:
        sink.close()
    if not ok or got != len(work) or stats["dropped"]:
        raise AssertionError(
            f"{got} of {len(work)} events in the sink (dropped {stats['dropped']}, "
            f"spooled {stats['spooled']}, replayed {stats['replayed']})"
        )
    return len(work) / took, len(work) / cpu


def _chunks(seq: Sequence[Any], size: int = BATCH) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


# ----------------------------------------------------------------------------- SQLite


def sqlite_cases(root: Path, work: list[Any], evs: list[Event], enricher: Any) -> dict[str, Any]:
    from consentmw.sinks.sqlite import _INSERT, SQLiteSink, _rows

    def new_path() -> str:
        return str(root / f"{uuid.uuid4().hex}.db")

    def count(sink: Any) -> int:
        conn = sqlite3.connect(sink.path if hasattr(sink, "path") else sink._path)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()

    def factory() -> Any:
        path = new_path()
        sink = SQLiteSink(path)
        sink.path = path  # type: ignore[attr-defined]
        return sink

    rows = [_rows(b) for b in _chunks(evs)]  # built once, outside every timing

    def bare() -> tuple[float, float]:
        path = new_path()
        sink = SQLiteSink(path)
        sink.write(evs[:1])  # the schema, as the sink makes it
        sink.close()
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("DELETE FROM events")
            cpu0 = time.process_time()
            started = WALL()
            for chunk in rows:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, chunk)
                conn.execute("COMMIT")
            took = WALL() - started
            cpu = time.process_time() - cpu0
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(evs)
        finally:
            conn.close()
        return len(evs) / took, len(evs) / cpu

    return {
        "SQLite, bare executemany": bare,
        "SQLite, dispatcher": lambda: through_dispatcher(factory, count, work),
        "SQLite, dispatcher + enrichment": lambda: through_dispatcher(
            factory, count, work, enricher.enrich
        ),
    }


# ----------------------------------------------------------------------------- JSON Lines


def jsonl_cases(root: Path, work: list[Any], evs: list[Event]) -> dict[str, Any]:
    from consentmw.sinks.jsonl import JsonlSink

    lines = [b"".join(e.to_json().encode() + b"\n" for e in chunk) for chunk in _chunks(evs)]

    def factory() -> Any:
        path = root / f"{uuid.uuid4().hex}.jsonl"
        sink = JsonlSink(path)
        sink.bench_path = path  # type: ignore[attr-defined]
        return sink

    def count(sink: Any) -> int:
        with open(sink.bench_path, "rb") as fh:
            return sum(1 for _ in fh)

    def bare() -> tuple[float, float]:
        path = root / f"{uuid.uuid4().hex}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            cpu0 = time.process_time()
            started = WALL()
            for chunk in lines:
                os.write(fd, chunk)
                os.fsync(fd)
            took = WALL() - started
            cpu = time.process_time() - cpu0
        finally:
            os.close(fd)
        return len(evs) / took, len(evs) / cpu

    return {
        "JSON Lines, bare write + fsync": bare,
        "JSON Lines, dispatcher": lambda: through_dispatcher(factory, count, work),
    }


# ----------------------------------------------------------------------------- PostgreSQL


def postgres_cases(work: list[Any], evs: list[Event]) -> dict[str, Any]:
    try:
        import psycopg

        from consentmw.sinks import postgres as pg
        from consentmw.sinks._sql import COLUMNS

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        raise SkipSection(f"PostgreSQL at {PG_URL}: {exc}") from None
    schemas: list[str] = []

    def schema_url() -> str:
        schema = "cmw_bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    def factory() -> Any:
        sink = pg.PostgresSink(schema_url())
        sink.write(evs[:1])  # create the schema outside the timing
        with sink._writer().cursor() as cur:
            cur.execute("DELETE FROM events")
        sink._writer().commit()
        return sink

    def count(sink: Any) -> int:
        return sum(1 for _ in sink.query())

    rows = [pg._rows(b) for b in _chunks(evs)]

    def bare() -> tuple[float, float]:
        url = schema_url()
        sink = pg.PostgresSink(url)
        sink.write(evs[:1])
        sink.close()
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM events")
            conn.commit()
            cpu0 = time.process_time()
            started = WALL()
            for chunk in rows:
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy,
                ):
                    for r in chunk:
                        copy.write_row(r)
            took = WALL() - started
            cpu = time.process_time() - cpu0
            got = conn.execute("SELECT count(*) FROM events").fetchone()
        assert got is not None
        assert got[0] == len(evs)
        return len(evs) / took, len(evs) / cpu

    def cleanup() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            for schema in schemas:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return {
        "PostgreSQL, bare COPY": bare,
        "PostgreSQL, dispatcher": lambda: through_dispatcher(factory, count, work),
        "_cleanup": cleanup,
    }


# ----------------------------------------------------------------------------- Redis


def redis_cases(work: list[Any], evs: list[Event]) -> dict[str, Any]:
    try:
        import redis

        from consentmw.sinks.redis import RedisStreamSink

        probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        probe.ping()
    except Exception as exc:
        raise SkipSection(f"Redis at {REDIS_URL}: {exc}") from None
    streams: list[str] = []
    payload = [[e.to_json() for e in chunk] for chunk in _chunks(evs)]

    def new_stream() -> str:
        name = "cmw-bench-" + uuid.uuid4().hex[:10]
        streams.append(name)
        return name

    def factory() -> Any:
        sink = RedisStreamSink.from_url(f"{REDIS_URL}?stream={new_stream()}&dedup_ttl=600")
        return sink

    def count(sink: Any) -> int:
        return int(probe.xlen(sink.stream))

    def bare() -> tuple[float, float]:
        stream = new_stream()
        cpu0 = time.process_time()
        started = WALL()
        pipe = probe.pipeline(transaction=False)
        for chunk in payload:
            for text in chunk:
                pipe.xadd(stream, {"e": text}, maxlen=1_000_000, approximate=True)
            pipe.execute()
        took = WALL() - started
        cpu = time.process_time() - cpu0
        assert probe.xlen(stream) == len(evs)
        return len(evs) / took, len(evs) / cpu

    def cleanup() -> None:
        for stream in streams:
            probe.delete(stream)
            for key in probe.scan_iter(match=f"cmw:{stream}:*", count=1000):
                probe.delete(key)
        probe.close()

    return {
        "Redis, bare pipelined XADD": bare,
        "Redis, dispatcher": lambda: through_dispatcher(factory, count, work),
        "_cleanup": cleanup,
    }


# ----------------------------------------------------------------------------- the section


def _enricher(stack: list[Callable[[], None]]) -> Any:
    """Enrichment as the engine builds it, with reverse DNS answered from a warm cache."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from consentmw.resolve import ReverseResolver
    from resolve.dnsstub import StubDNSServer

    server = StubDNSServer()
    server.__enter__()
    stack.append(lambda: server.__exit__(None, None, None))
    for i, ip in enumerate(ADDRESSES):
        name = f"host-{i}.isp{i % 7}.example.net."
        server.ptr(ip, name)
        server.address(name, ip)
    rdns = ReverseResolver(nameservers=["127.0.0.1"], port=server.port, timeout=1.0)
    stack.append(rdns.close)
    rdns.resolve_batch(ADDRESSES, deadline_s=30)  # every later lookup is a cache hit
    return Enricher(anonymize="truncate", ua=UAClassifier(), resolver=rdns)


def run(
    n: int, n_remote: int, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    tmp = tempfile.TemporaryDirectory(prefix="cmw-bench-")
    root = Path(tmp.name)
    stack: list[Callable[[], None]] = [tmp.cleanup]
    rows: list[Row] = []
    skipped: list[str] = []
    try:
        work, evs = items(n), events(n)
        enricher = _enricher(stack)
        groups: list[tuple[str, dict[str, Any]]] = [
            ("SQLite", sqlite_cases(root, work, evs, enricher)),
            ("JSON Lines", jsonl_cases(root, work, evs)),
        ]
        remote_work, remote_evs = work[:n_remote], evs[:n_remote]
        for label, build in (("PostgreSQL", postgres_cases), ("Redis", redis_cases)):
            try:
                groups.append((label, build(remote_work, remote_evs)))
            except SkipSection as exc:
                skipped.append(str(exc))
        cases: dict[str, Callable[[], tuple[float, float]]] = {}
        for _, group in groups:
            cleanup = group.pop("_cleanup", None)
            if cleanup is not None:
                stack.append(cleanup)
            cases.update(group)
        cpu: dict[str, list[float]] = {name: [] for name in cases}

        def keep_cpu(name: str, fn: Callable[[], tuple[float, float]]) -> Callable[[], float]:
            def one() -> float:
                wall, per_cpu = fn()
                cpu[name].append(per_cpu)
                return wall

            return one

        timed = {name: keep_cpu(name, fn) for name, fn in cases.items()}
        results = interleave(timed, rounds, warmup=False, progress=progress)
    finally:
        for undo in reversed(stack):
            try:
                undo()
            except Exception as exc:
                print(f"cleanup: {exc}", file=sys.stderr)
    goal = Goal("ratio", 0.5, least=True, text="≥ 0.5 of bare")
    import statistics

    for name, values in results.items():
        label, _, kind = name.partition(", ")
        if kind.startswith("bare"):
            rows.append(
                row(
                    SECTION,
                    name,
                    values,
                    unit="events/s",
                    note=f"{n if label in ('SQLite', 'JSON Lines') else n_remote} events",
                )
            )
            bare_name = name
            continue
        rows.append(
            row(
                SECTION,
                name,
                values,
                unit="events/s",
                baseline=(bare_name, results[bare_name]),
                goal=goal if name == "SQLite, dispatcher" else None,
            )
        )
    for r in rows:
        r.extra["events_per_cpu_second"] = statistics.median(cpu[r.case])
    if "SQLite, dispatcher" in cpu:
        # The same ratio by CPU time (all threads): what the pipeline spends per event,
        # whatever else the machine runs.
        rows.append(
            row(
                SECTION,
                "SQLite, dispatcher, per CPU-second",
                cpu["SQLite, dispatcher"],
                unit="events/s",
                baseline=(
                    "SQLite, bare executemany, per CPU-second",
                    cpu["SQLite, bare executemany"],
                ),
                note="process CPU time, all threads",
            )
        )
    for r in rows:
        r.added = None  # a difference of rates means nothing; the ratio does
    if skipped:
        rows[-1].note = "; ".join(skipped)
    return rows


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    if quick:
        return run(20_000, 5_000, 2, progress)
    return run(100_000, 30_000, min(rounds, 5), progress)

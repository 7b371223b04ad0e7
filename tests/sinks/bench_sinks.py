"""Throughput of the persistent sinks' ``write``, against the floor of the bare client.

Not a test (pytest does not collect it): run ``python tests/sinks/bench_sinks.py [sqlite]
[postgres] [redis] [-n EVENTS]``. SQLite compares ``SQLiteSink.write`` in batches of 500 with
a bare ``executemany`` of the same rows into the same schema, so the sink's own per-event
Python work shows as the gap. PostgreSQL compares the two insert strategies the sink could
use. Redis measures the Lua-deduplicated ``XADD`` path.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from consentmw.events import Event, TimestampFormatter, new_event_ids

BATCH = 500
UAS = [
    {"browser": "Firefox 128", "os": "Linux", "device": "Other", "is_bot": False},
    {"browser": "Chrome 126", "os": "Windows 10", "device": "Other", "is_bot": False},
    {"browser": "Mobile Safari 17", "os": "iOS 17.5", "device": "iPhone", "is_bot": False},
]


def make_events(n: int) -> list[Event]:
    """Page visits shaped like the dispatcher's: ua set, props empty, a few purposes."""
    fmt = TimestampFormatter()
    start = time.time()
    out = []
    for i, ev_id in enumerate(new_event_ids(n)):
        out.append(
            Event(
                id=ev_id,
                type="page_visit",
                name=None,
                ts=fmt(start + i / 1e5),
                site="shop.example.test",
                policy_version="2014-12-12",
                purposes=("necessary", "analytics"),
                visitor_id=f"v{i % 5000:05d}",
                session_id=f"s{i % 9000:05d}",
                method="GET",
                path=f"/products/{i % 700}",
                status=200,
                referrer=None,
                ip="203.0.113.0",
                ua=UAS[i % len(UAS)],
            )
        )
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} events/s"


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def bench_sqlite(n: int) -> None:
    from consentmw.sinks.sqlite import _INSERT, SQLiteSink, _rows

    events = make_events(n)
    batches = [events[i : i + BATCH] for i in range(0, n, BATCH)]
    with tempfile.TemporaryDirectory() as tmp:

        def sink_run() -> float:
            sink = SQLiteSink(os.path.join(tmp, f"{uuid.uuid4().hex}.db"))
            try:
                sink.write(events[:1])  # open and create the schema outside the timing
                t0 = time.perf_counter()
                for batch in batches:
                    sink.write(batch)
                return time.perf_counter() - t0
            finally:
                sink.close()

        def bare_run() -> float:
            path = os.path.join(tmp, f"{uuid.uuid4().hex}.db")
            SQLiteSink(path).close()  # nothing opened: create the schema below
            sink = SQLiteSink(path)
            sink.write(events[:1])
            sink.close()
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = NORMAL")
                rows = [_rows(b) for b in batches]  # built outside the timing
                t0 = time.perf_counter()
                for chunk in rows:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(_INSERT, chunk)
                    conn.execute("COMMIT")
                return time.perf_counter() - t0
            finally:
                conn.close()

        def rows_only() -> float:
            t0 = time.perf_counter()
            for batch in batches:
                _rows(batch)
            return time.perf_counter() - t0

        # The same with a user-agent dict of its own per event (no encoding shared).
        own_ua = [[replace(e, ua=dict(e.ua or {})) for e in batch] for batch in batches]

        def rows_own_ua() -> float:
            t0 = time.perf_counter()
            for batch in own_ua:
                _rows(batch)
            return time.perf_counter() - t0

        print(f"SQLite, {n:,} events in batches of {BATCH}:")
        print(f"  SQLiteSink.write      {rate(n, best_of(3, sink_run))}")
        print(f"  bare executemany      {rate(n, best_of(3, bare_run))}")
        print(f"  row building alone    {rate(n, best_of(3, rows_only))}")
        print(f"  ... one ua dict each  {rate(n, best_of(3, rows_own_ua))}")


def bench_postgres(n: int, url: str) -> None:
    import psycopg

    from consentmw.sinks import postgres as pg

    events = make_events(n)
    batches = [events[i : i + BATCH] for i in range(0, n, BATCH)]
    print(f"PostgreSQL, {n:,} events in batches of {BATCH}:")
    for strategy in pg.STRATEGIES:
        schema = "cmw_bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in url else "?"
        sink = pg.PostgresSink(f"{url}{sep}options=-csearch_path%3D{schema}", strategy=strategy)
        try:
            sink.write(events[:1])
            t0 = time.perf_counter()
            for batch in batches:
                sink.write(batch)
            took = time.perf_counter() - t0
        finally:
            sink.close()
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        print(f"  {strategy:<20}  {rate(n, took)}")


def bench_redis(n: int, url: str) -> None:
    import redis

    from consentmw.sinks.redis import RedisStreamSink

    events = make_events(n)
    batches = [events[i : i + BATCH] for i in range(0, n, BATCH)]
    stream = "cmw-bench-" + uuid.uuid4().hex[:10]
    sink = RedisStreamSink.from_url(f"{url}?stream={stream}&dedup_ttl=600")
    try:
        t0 = time.perf_counter()
        for batch in batches:
            sink.write(batch)
        took = time.perf_counter() - t0
    finally:
        sink.close()
        client = redis.Redis.from_url(url)
        try:
            client.delete(stream)
            for key in client.scan_iter(match=f"cmw:{stream}:*", count=1000):
                client.delete(key)
        finally:
            client.close()
    print(f"Redis, {n:,} events in batches of {BATCH}:")
    print(f"  RedisStreamSink.write {rate(n, took)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", default=["sqlite"])
    parser.add_argument("-n", type=int, default=200_000)
    args = parser.parse_args(argv)
    if "sqlite" in args.which:
        bench_sqlite(args.n)
    if "postgres" in args.which:
        bench_postgres(
            args.n,
            os.environ.get("CONSENTMW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
        )
    if "redis" in args.which:
        bench_redis(args.n, os.environ.get("CONSENTMW_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

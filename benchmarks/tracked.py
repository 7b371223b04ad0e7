"""Section 2: the full cost of a tracked request, delivery included.

N requests with page-visit tracking through the middleware into a real sink (SQLite, JSON
Lines), then ``flush()`` until every event is written; the wall time divided by N, minus
the bare app's per-request time in the same round. The dispatcher's threads share the
interpreter lock with the request thread, so this is the cost a site's throughput feels.

Every round checks that the sink holds exactly one event per request (nothing dropped; a
batch the writer could not take at once is spooled and counts only once replayed into the
sink, inside the timing): a figure bought by losing events would fail here.
The dispatcher runs with its defaults (queue of 10,000, batches of 500, spool next to the
sink file) except ``when_full = "block"``: the requests here come back to back, faster than
any background writer sharing the interpreter can deliver, and under ``drop_newest`` a full
queue would drop events (counted) instead of making the request wait.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consentmw import ConsentMiddleware

from . import bench_request
from ._harness import WALL, Goal, Row, interleave, loop_us, row

SECTION = "tracked request (full cost)"


def _config(url: str) -> dict[str, Any]:
    cfg = bench_request.config(tracking=True)
    cfg["sinks"] = {"events": [url]}
    # The defaults, but a full queue makes the request wait instead of dropping the event:
    # requests sent back to back outpace any background writer sharing the interpreter,
    # and the figure must include delivering every event, not drop some.
    cfg["dispatch"] = {"when_full": "block"}
    return cfg


def _count(url: str) -> int:
    path = url.split(":///", 1)[1]
    if url.startswith("sqlite"):
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            conn.close()
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if json.loads(line)["type"] == "page_visit")


def run(calls: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    tmp = tempfile.TemporaryDirectory(prefix="cmw-bench-")
    root = Path(tmp.name)
    seq = iter(range(10**6))
    cpu: dict[str, list[float]] = {"sqlite": [], "jsonl": [], "bare": []}
    # A visitor who accepted, with a session: no cookie is re-signed, one page visit each.
    probe = ConsentMiddleware(bench_request.app, bench_request.config())
    cookie = bench_request.prefs_cookie(probe, "accept_all")
    session = bench_request.session_cookie(probe)
    probe.close(1)
    environ = bench_request.environ_for(cookie, session=session)

    def tracked(kind: str) -> Callable[[], float]:
        def one() -> float:
            n = next(seq)
            url = (
                f"sqlite:///{root}/events-{n}.db"
                if kind == "sqlite"
                else (f"jsonl:///{root}/events-{n}.jsonl")
            )
            mw = ConsentMiddleware(bench_request.app, _config(url))
            try:
                loop_us(mw, [environ] * 10, clock=WALL)  # open the sink, start the threads
                assert mw.flush(30)
                cpu0 = time.process_time()
                started = WALL()
                loop_us(mw, [environ] * calls, clock=WALL)
                delivered = mw.flush(120)
                spool = mw.engine.dispatcher.spool
                while delivered and spool.count() and WALL() - started < 120:
                    time.sleep(0.002)
                    delivered = mw.flush(120)
                elapsed = WALL() - started
                cpu[kind].append((time.process_time() - cpu0) / calls * 1e6)
                stats = mw.stats()
            finally:
                mw.close(30)
            got = _count(url)
            if not delivered or got != calls + 10 or stats["dropped"]:
                raise AssertionError(
                    f"{kind}: {got} of {calls + 10} events delivered "
                    f"(dropped {stats['dropped']}, spooled {stats['spooled']})"
                )
            return elapsed / calls * 1e6

        return one

    def bare() -> float:
        cpu0 = time.process_time()
        took = loop_us(bench_request.app, [environ] * calls, clock=WALL)
        cpu["bare"].append((time.process_time() - cpu0) / calls * 1e6)
        return took

    cases = {
        "bare app": bare,
        "SQLite": tracked("sqlite"),
        "JSON Lines": tracked("jsonl"),
    }
    try:
        results = interleave(cases, rounds, progress=progress)
    finally:
        tmp.cleanup()
    base = ("bare app", results["bare app"])
    note = f"{calls} requests + flush per round; all {calls} events delivered, checked"
    import statistics

    return [
        row(SECTION, "bare app (wall clock)", results["bare app"], note=f"{calls} requests"),
        row(
            SECTION,
            "page visit into SQLite, delivered",
            results["SQLite"],
            baseline=base,
            goal=Goal("added", 15.0),
            note=note,
            extra={"cpu_us_per_request_all_threads": statistics.median(cpu["sqlite"])},
        ),
        row(
            SECTION,
            "page visit into JSON Lines, delivered",
            results["JSON Lines"],
            baseline=base,
            goal=Goal("added", 15.0),
            note=note,
            extra={"cpu_us_per_request_all_threads": statistics.median(cpu["jsonl"])},
        ),
        # The same runs by the CPU time of the whole process (request thread and dispatcher
        # threads): what the work costs whatever else the machine runs meanwhile.
        row(
            SECTION,
            "page visit into SQLite, CPU time of all threads",
            cpu["sqlite"],
            baseline=("bare app, CPU time", cpu["bare"]),
        ),
        row(
            SECTION,
            "page visit into JSON Lines, CPU time of all threads",
            cpu["jsonl"],
            baseline=("bare app, CPU time", cpu["bare"]),
        ),
    ]


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(5000 if quick else 20000, min(rounds, 3 if quick else 9), progress)

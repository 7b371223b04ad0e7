"""Section 6: memory during a burst of events while the sink is down.

A child process (so that nothing else in the suite's heap counts) builds the middleware
around a sink that refuses every write as a database that is down does (a retryable
``SinkError``), with a spool file, then records a burst of actions with ``ctx.record()``
as fast as one thread can. ``when_full = "block"``: no event may be dropped, so every one of
them must end up in the spool. A sampler thread reads the resident set size (``VmRSS``)
every 20 ms. The baseline is the RSS of the same process just before the burst; a burst of
100,000 and one of 1,000,000 show whether memory grows with the number of events (it must
not: the queue and the writer backlog are bounded, the rest is on disk).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._harness import Row, row

SECTION = "memory (sink down)"


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(n: int, spool_path: str) -> dict[str, Any]:
    from consentmw import ConsentMiddleware
    from consentmw.errors import SinkError
    from consentmw.sinks import MemorySink

    from . import bench_request

    class DownSink(MemorySink):
        def write(self, events: Sequence[Any]) -> None:
            raise SinkError("connection refused", retryable=True)

    cfg = bench_request.config(tracking=True)
    cfg["sinks"] = {"events": ["memory://down"]}
    cfg["dispatch"] = {
        "spool": spool_path,
        "when_full": "block",
        "max_retries": 1,
        "retry_base_ms": 50,
    }
    mw = ConsentMiddleware(bench_request.app, cfg, sinks={"memory://down": DownSink()})
    env = bench_request.environ_for(
        bench_request.prefs_cookie(mw, "accept_all"), session=bench_request.session_cookie(mw)
    )
    ctx = mw.engine.context(env)
    env["consentmw.context"] = ctx
    assert ctx.record("warm")
    assert mw.flush(30)
    time.sleep(0.2)
    before = _rss_kib()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    record = ctx.record
    refused = 0
    for i in range(n):
        if not record("download", i=i):
            refused += 1
    enqueued_in = time.perf_counter() - started
    flushed = mw.flush(600)
    took = time.perf_counter() - started
    stop.set()
    sampler.join()
    stats = mw.stats()
    mw.close(60)
    from consentmw.spool import Spool

    spool = Spool(spool_path)
    try:
        on_disk = spool.count()
    finally:
        spool.close()
    return {
        "events": n,
        "rss_before_mib": before / 1024,
        "rss_peak_mib": peak[0] / 1024,
        "refused": refused,
        "dropped": stats["dropped"],
        "spooled": stats["spooled"],
        "spool_rows": on_disk,
        "flushed": flushed,
        "seconds": took,
        "enqueue_seconds": enqueued_in,
        "spool_file_mib": os.path.getsize(spool_path) / 2**20,
    }


def run_child(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cmw-bench-") as tmp:
        spool = str(Path(tmp) / "spool.db")
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", str(n), spool],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory child failed: {out.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # +1: the "warm" action recorded before the burst.
    if result["refused"] or result["dropped"] or result["spool_rows"] != n + 1:
        raise AssertionError(f"events lost in the burst: {result}")
    return result


def run(
    sizes: Sequence[int], rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for i in range(rounds):
        for n in sizes:
            runs[n].append(run_child(n))
        if progress is not None:
            progress(f"round {i + 1}/{rounds}")
    rows = []
    for n, results in runs.items():
        peak = [r["rss_peak_mib"] for r in results]
        before = [r["rss_before_mib"] for r in results]
        rate = sorted(r["events"] / r["seconds"] for r in results)[len(results) // 2]
        rows.append(
            row(
                SECTION,
                f"RSS peak, burst of {n:,} events, sink down",
                peak,
                unit="MiB",
                baseline=("RSS before the burst", before),
                note=f"all {n:,} spooled, none dropped; {rate:,.0f} events/s into the spool",
                extra={"runs": results},
            )
        )
    return rows


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    if quick:
        return run([20_000, 100_000], 1, progress)
    return run([100_000, 1_000_000], 1, progress)


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), sys.argv[2])))

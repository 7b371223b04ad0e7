"""Real processes: exit without close, fork after start, SIGKILL mid-stream then restart,
and the request path while a sink is down or slow."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

import consentmw
from consentmw import Event, MemorySink, SinkError
from tests.core.support import choose, make_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def run_site(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.core.proc_site", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(db: Path, where: str = "type = 'page_visit'") -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT id, path FROM events WHERE {where}").fetchall()


def test_exit_without_close_delivers_every_queued_event(tmp_path: Path) -> None:
    result = run_site("exit", str(tmp_path), "3000")
    assert result.returncode == 0, result.stderr
    found = rows(tmp_path / "events.db")
    assert len(found) == 3000 and len({i for i, _ in found}) == 3000


def test_fork_after_start_the_child_delivers_its_own_events(tmp_path: Path) -> None:
    result = run_site("fork", str(tmp_path), "500")
    assert result.returncode == 0, result.stderr
    assert len(rows(tmp_path / "events.db", "path LIKE '/child/%'")) == 500
    assert len(rows(tmp_path / "events.db", "path LIKE '/parent/%'")) == 501
    # No event of the parent was delivered twice by the child.
    assert len({p for _, p in rows(tmp_path / "events.db")}) == 1001


def test_sigkill_mid_stream_then_restart_delivers_what_the_spool_acknowledged(
    tmp_path: Path,
) -> None:
    (tmp_path / "down").touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core.proc_site", "stream", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged = 0
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            acknowledged = int(line.strip().split("=")[1])
            if acknowledged >= 1500:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
    assert acknowledged >= 1500
    with sqlite3.connect(tmp_path / "spool.db") as conn:
        in_spool = conn.execute("SELECT count(*) FROM spool").fetchone()[0]
    assert in_spool >= acknowledged
    (tmp_path / "down").unlink()
    result = run_site("replay", str(tmp_path))
    assert result.returncode == 0, result.stderr
    found = rows(tmp_path / "events.db", "1=1")
    assert len(found) == in_spool  # everything spooled was delivered
    assert len({i for i, _ in found}) == len(found)  # and nothing twice
    with sqlite3.connect(tmp_path / "spool.db") as conn:
        assert conn.execute("SELECT count(*) FROM spool").fetchone()[0] == 0


class SwitchSink(MemorySink):
    def __init__(self, *, delay: float = 0.0) -> None:
        super().__init__()
        self.down = False
        self.delay = delay
        self.in_write = threading.Event()

    def write(self, events: Sequence[Event]) -> None:
        self.in_write.set()
        if self.delay:
            time.sleep(self.delay)  # the sink under test is slow: that is the point
        if self.down:
            raise SinkError("down")
        super().write(events)


def _site(sink: SwitchSink, tmp_path: Path, **dispatch: Any) -> consentmw.ConsentMiddleware:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    config = make_config(
        tracking={"tracking_purpose": "analytics"},
        sinks={"events": ["memory://"], "consent_log": "sqlite:///" + str(tmp_path / "log.db")},
        dispatch={
            "flush_interval_ms": 20,
            "retry_base_ms": 5,
            "retry_max_ms": 100,
            "max_retries": 1,
            "spool": str(tmp_path / "spool.db"),
            **dispatch,
        },
    )
    return consentmw.ConsentMiddleware(app, config, sinks={"memory://": sink})


def test_a_sink_down_under_load_then_back_loses_nothing(tmp_path: Path) -> None:
    sink = SwitchSink()
    mw = _site(sink, tmp_path, queue_size=100_000)
    sink.down = True
    per_thread, threads = 400, 4

    def load(k: int) -> None:
        client = Client(mw)
        choose(client, "accept_all")
        for i in range(per_thread):
            client.get(f"/t{k}/{i}")

    workers = [threading.Thread(target=load, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert mw.flush(20)
    stats = mw.stats()
    assert stats["spooled"] == stats["enqueued"] and stats["written"] == 0
    sink.down = False
    deadline = time.monotonic() + 20
    while mw.engine.spool.count() and time.monotonic() < deadline:
        mw.engine.dispatcher.wake.set()
        for w in mw.engine.dispatcher._writers:
            with w.cond:
                w.cond.notify()
        time.sleep(0.02)
    assert mw.close(10)
    visits = [e for e in sink.events if e.type == "page_visit"]
    consents = [e for e in sink.events if e.type == "consent"]
    assert len(visits) == per_thread * threads and len(consents) == threads
    assert len({e.id for e in sink.events}) == len(sink.events)
    stats = mw.stats()
    assert stats["written"] == stats["enqueued"] == len(sink.events) and stats["dropped"] == {}


def test_a_sink_that_takes_two_seconds_per_batch_does_not_slow_requests(tmp_path: Path) -> None:
    sink = SwitchSink(delay=2.0)
    mw = _site(sink, tmp_path, batch_size=100)
    client = Client(mw)
    choose(client, "accept_all")
    client.get("/warm")
    assert sink.in_write.wait(5)  # the writer is now inside a two-second write
    latencies = []
    for i in range(300):
        started = time.perf_counter()
        client.get(f"/p/{i}")
        latencies.append(time.perf_counter() - started)
    # Were any request waiting on the sink, one of them would take ~2 s.
    assert max(latencies) < 0.5
    assert sum(latencies) < 2.0
    mw.close(15)
    # Nothing lost: what the slow sink did not take by the deadline is in the spool.
    assert len(sink.events) + mw.engine.spool.count() == 302  # 301 visits and the consent

"""Section 8: under load — gunicorn with 2 workers on 127.0.0.1, driven by ``wrk``.

The demo site (``consentmw demo``'s pages), bare and wrapped in consentmw with page-visit
tracking into PostgreSQL; and the same with PostgreSQL down (the sink URL points at a
loopback port nobody listens on: every connection is refused, so events are retried and
spooled). Each run starts a fresh server, warms it up, runs ``wrk -t2 -c8 --latency`` for a
fixed time on ``/docs`` (HTML with gated scripts) as a visitor who accepted everything, then
stops the server with SIGTERM (the workers flush or spool at exit). Nothing but 127.0.0.1
is contacted.

No event lost: the gunicorn access log counts the ``200`` answers to ``/docs`` (each is
a page visit); with the sink up PostgreSQL must hold exactly that many events, with it
down the spool must.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from ._harness import Goal, Row, SkipSection, interleave, row

SECTION = "under load (gunicorn -w 2, wrk)"
ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("CONSENTMW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cookie(data: str) -> str:
    from consentmw import ConsentMiddleware
    from consentmw.consent import apply_choice
    from consentmw.demo import demo_site

    from .loadapp import config

    mw = ConsentMiddleware(demo_site(), config(data, "memory://", ""))
    try:
        engine = mw.engine
        stored, _ = apply_choice(engine.config, "accept_all", (), previous=None, now=time.time())
        prefs = engine.prefs_signer.dumps(stored.to_payload())
        session = engine.session_signer.dumps({"sid": "load-session-0123456789", "d": {}})
    finally:
        mw.close(1)
    return f"cmw_prefs={prefs}; cmw_session={session}"


_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _wrk(url: str, cookie: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c8",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            "-H",
            f"Cookie: {cookie}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    text = out.stdout
    lat = {m.group(1): float(m.group(2)) * _UNIT[m.group(3)] for m in _LATENCY.finditer(text)}
    rate = _RATE.search(text)
    if rate is None or "99" not in lat:
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return {"rps": float(rate.group(1)), "p50_ms": lat["50"], "p99_ms": lat["99"]}


class Server:
    """gunicorn with 2 sync workers on a loopback port, for one run."""

    def __init__(self, mode: str, data: str, sink: str, spool: str, log: str) -> None:
        self.port = _free_port()
        env = dict(
            os.environ,
            CMW_BENCH_MODE=mode,
            CMW_BENCH_DATA=data,
            CMW_BENCH_SINK=sink,
            CMW_BENCH_SPOOL=spool,
            PYTHONPATH=str(ROOT),
        )
        # The servers' log goes to a file: a pipe nobody reads fills up, and a worker that
        # logs (a sink down is logged) would then block writing to it.
        self.errors = open(log + ".err", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "--access-logfile",
                log,
                "--log-level",
                "warning",
                "--graceful-timeout",
                "30",
                "benchmarks.loadapp:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
        )
        # /docs: a page of the demo that does not need the middleware, with gated scripts.
        self.url = f"http://127.0.0.1:{self.port}/docs"
        deadline = time.monotonic() + 30
        while True:
            try:
                # A browser's User-Agent: urllib's is a bot's, and bots are not tracked.
                probe = urllib.request.Request(self.url, headers={"User-Agent": _BROWSER})
                with urllib.request.urlopen(probe, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait(10)
                    self.errors.seek(0)
                    err = self.errors.read().decode(errors="replace")
                    self.stop()
                    raise RuntimeError(f"gunicorn did not start: {err[-1500:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.errors.close()


def _served(log: str) -> int:
    with open(log, encoding="utf-8", errors="replace") as fh:
        return sum(1 for line in fh if '"GET /docs HTTP' in line and '" 200 ' in line)


def run(seconds: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    if shutil.which("wrk") is None:
        raise SkipSection("wrk is not installed (apt-get install wrk)")
    try:
        import gunicorn  # noqa: F401
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        raise SkipSection(f"needs gunicorn and PostgreSQL at {PG_URL}: {exc}") from None
    tmp = tempfile.TemporaryDirectory(prefix="cmw-load-")
    root = Path(tmp.name)
    data = str(root / "data")
    Path(data).mkdir()
    cookie = _cookie(data)
    schemas: list[str] = []
    counts: dict[str, list[str]] = {"sink up": [], "sink down": []}
    seq = iter(range(10**6))

    def one(mode: str) -> Callable[[], dict[str, float]]:
        def go() -> dict[str, float]:
            n = next(seq)
            spool = str(root / f"spool-{n}.db")
            log = str(root / f"access-{n}.log")
            # Down: a port bound but not listening (every connection refused), held for the
            # whole run so that nothing else, the server included, can take it.
            dead = socket.socket()
            dead.bind(("127.0.0.1", 0))
            sink = f"postgresql://postgres@127.0.0.1:{dead.getsockname()[1]}/test"
            if mode == "sink up":
                schema = "cmw_load_" + uuid.uuid4().hex[:10]
                with psycopg.connect(PG_URL, autocommit=True) as admin:
                    admin.execute(f'CREATE SCHEMA "{schema}"')
                schemas.append(schema)
                sep = "&" if "?" in PG_URL else "?"
                sink = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
            try:
                server = Server("bare" if mode == "bare" else "consentmw", data, sink, spool, log)
                try:
                    result = _wrk(server.url, cookie, seconds)
                finally:
                    server.stop()
            finally:
                dead.close()
            if mode == "bare":
                return result
            served = _served(log)
            if mode == "sink up":
                with psycopg.connect(PG_URL) as conn:
                    got = conn.execute(
                        f'SELECT count(*) FROM "{schema}".events WHERE type = %s', ("page_visit",)
                    ).fetchone()
                stored = int(got[0]) if got else 0
            else:
                from consentmw.spool import Spool

                spooled = Spool(spool)
                try:
                    stored = spooled.count()
                finally:
                    spooled.close()
            where = "in PostgreSQL" if mode == "sink up" else "in the spool"
            counts[mode].append(f"{stored}/{served} {where}")
            if stored != served:
                raise AssertionError(f"{mode}: {stored} events {where} for {served} page views")
            return result

        return go

    try:
        raw: dict[str, list[dict[str, float]]] = {"bare": [], "sink up": [], "sink down": []}

        def keep(mode: str) -> Callable[[], float]:
            run_one = one(mode)

            def go() -> float:
                result = run_one()
                raw[mode].append(result)
                return result["p99_ms"]

            return go

        interleave({mode: keep(mode) for mode in raw}, rounds, warmup=False, progress=progress)
    finally:
        if schemas:
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                for schema in schemas:
                    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        tmp.cleanup()

    def series(mode: str, key: str) -> list[float]:
        return [r[key] for r in raw[mode]]

    label = {
        "bare": "demo site, bare",
        "sink up": "demo + consentmw, PostgreSQL up",
        "sink down": "demo + consentmw, PostgreSQL down",
    }
    rows: list[Row] = []
    note = f"wrk -t2 -c8 -d{seconds}s per run"
    for mode in raw:
        base = None if mode == "bare" else (label["bare"], series("bare", "rps"))
        rows.append(
            row(
                SECTION,
                f"{label[mode]}: requests/s",
                series(mode, "rps"),
                unit="req/s",
                baseline=base,
                note=note if mode == "bare" else "; ".join(counts[mode]),
            )
        )
    for mode in raw:
        rows.append(row(SECTION, f"{label[mode]}: p50", series(mode, "p50_ms"), unit="ms"))
    for mode in raw:
        if mode == "sink down":
            rows.append(
                row(
                    SECTION,
                    f"{label[mode]}: p99",
                    series(mode, "p99_ms"),
                    unit="ms",
                    baseline=(f"{label['sink up']}: p99", series("sink up", "p99_ms")),
                    goal=Goal("ratio", 1.10, text="≤ 1.10 x sink up, no event lost"),
                )
            )
        else:
            rows.append(row(SECTION, f"{label[mode]}: p99", series(mode, "p99_ms"), unit="ms"))
    for r in rows:
        if r.unit == "req/s":
            r.added = None
    rows[-1].extra["rps_median"] = {m: statistics.median(series(m, "rps")) for m in raw}
    return rows


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(3 if quick else 8, 1 if quick else 5, progress)

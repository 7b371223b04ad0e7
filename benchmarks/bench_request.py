"""Request-path cost of the middleware, against a bare WSGI app measured in the same run.

Run: ``python benchmarks/bench_request.py [--calls 20000] [--rounds 9] [--json out.json]``

Every case calls the WSGI application in-process with a prepared environ (no server, no
sockets), consumes and closes the body as a server would. Cases run interleaved, round after
round, so machine noise hits them alike; the table shows the median time per request over
the rounds, the spread (min-max of the round medians) and the cost added to the bare app.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.test import EnvironBuilder

import consentmw
from consentmw import ConsentMiddleware
from consentmw.consent import apply_choice

KEYS = [
    "bench-old-key-0123456789abcdef",
    "bench-mid-key-0123456789abcdef",
    "bench-new-key-0123456789abcdef",
]


def config(*, tracking: bool = False, keys: list[str] | None = None) -> dict[str, Any]:
    return {
        "site": {"name": "bench.example.test", "secret_keys": keys or KEYS[-1:]},
        "purposes": {
            "necessary": {"title": "Strictly necessary", "required": True},
            "analytics": {"title": "Improve our content"},
            "marketing": {"title": "Marketing contact", "gpc_opt_out": True},
        },
        "cookies": [{"name": "_ga", "match": "prefix", "purpose": "analytics"}],
        "cookie_settings": {"secure": False},
        "tracking": {"page_visits": tracking, "tracking_purpose": "analytics"},
        "sinks": {"events": ["memory://"]},
        "dispatch": {"spool": "", "queue_size": 10_000_000, "batch_size": 2000},
        "ui": {"banner": False, "settings_link": False},
    }


# The app sets a cookie of a consent-gated purpose, so every case must decide consent.
HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", "2"),
    ("Set-Cookie", "_ga_X=1; Path=/"),
]


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", list(HEADERS))
    return [b"ok"]


def recording_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    consentmw.get_context(environ).record("purchase", total=3)
    start_response("200 OK", list(HEADERS))
    return [b"ok"]


def prefs_cookie(mw: ConsentMiddleware, choice: str, purposes: tuple[str, ...] = ()) -> str:
    engine = mw.engine
    stored, _ = apply_choice(engine.config, choice, purposes, previous=None, now=time.time())
    return engine.prefs_signer.dumps(stored.to_payload())


def session_cookie(mw: ConsentMiddleware) -> str:
    return mw.engine.session_signer.dumps({"sid": "bench-session-0123456789", "d": {}})


def environ_for(
    cookie: str | None, path: str = "/page", session: str | None = None, *, ga: bool = True
) -> dict[str, Any]:
    """``ga``: the browser still sends the analytics cookie (``_ga_X``), as it does once the
    visitor granted analytics; after a refusal consentmw expires it, and a browser stops
    sending it."""
    headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}
    if cookie is not None:
        headers["Cookie"] = f"{'_ga_X=1; ' if ga else ''}cmw_prefs={cookie}; other=2"
        if session is not None:
            headers["Cookie"] += f"; cmw_session={session}"
    env: dict[str, Any] = EnvironBuilder(path=path, headers=headers).get_environ()
    return env


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def call(wsgi: Callable[..., Iterable[bytes]], base: dict[str, Any]) -> None:
    body = wsgi(dict(base), _start_response)
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()


def cases() -> tuple[
    dict[str, tuple[Callable[..., Any], dict[str, Any], Callable[[], None]]],
    list[ConsentMiddleware],
]:
    mws: list[ConsentMiddleware] = []

    def mw(**kw: Any) -> ConsentMiddleware:
        m = ConsentMiddleware(kw.pop("inner", app), config(**kw))
        mws.append(m)
        return m

    plain = mw()
    accepted = prefs_cookie(plain, "accept_all")
    declined = prefs_cookie(plain, "reject_all")
    first = mw()
    rotated = mw(keys=KEYS)
    old = ConsentMiddleware(app, config(keys=KEYS[:1]))
    old_cookie = prefs_cookie(old, "accept_all")
    old.close(1)
    tracked = mw(tracking=True)
    recording = mw(tracking=True, inner=recording_app)
    tampered = accepted[:-2] + ("AA" if accepted[-2:] != "AA" else "BB")
    nothing = lambda: None  # noqa: E731

    def clear_first() -> None:
        first.engine._prefs_cache.clear()
        first.engine._state_cache.clear()

    def drain(m: ConsentMiddleware) -> Callable[[], None]:
        def run() -> None:
            m.engine.dispatcher.queue.clear()

        return run

    table = {
        "bare app": (app, environ_for(None), nothing),
        "no cookie": (plain, environ_for(None), nothing),
        "valid cookie, warm": (plain, environ_for(accepted), nothing),
        "valid cookie, first verification": (first, environ_for(accepted), clear_first),
        "declined": (plain, environ_for(declined), nothing),
        "tampered cookie": (plain, environ_for(tampered), nothing),
        "3-key ring, old key (re-sign)": (rotated, environ_for(old_cookie), nothing),
        "tracking on, page visit queued": (
            tracked,
            environ_for(accepted, session=session_cookie(tracked)),
            drain(tracked),
        ),
        "tracking on + record()": (
            recording,
            environ_for(accepted, session=session_cookie(recording)),
            drain(recording),
        ),
    }
    return table, mws


def run(calls: int, rounds: int) -> dict[str, list[float]]:
    table, mws = cases()
    results: dict[str, list[float]] = {name: [] for name in table}
    for wsgi, base, before in table.values():  # warm up
        for _ in range(200):
            before()
            call(wsgi, base)
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, (wsgi, base, before) in table.items():
                if before.__name__ == "<lambda>":
                    started = time.perf_counter()
                    for _ in range(calls):
                        call(wsgi, base)
                    elapsed = time.perf_counter() - started
                else:
                    # Per-call preparation (cache clearing, queue draining) is not timed.
                    elapsed = 0.0
                    for _ in range(calls):
                        before()
                        started = time.perf_counter()
                        call(wsgi, base)
                        elapsed += time.perf_counter() - started
                results[name].append(elapsed / calls * 1e6)
    finally:
        gc.enable()
        for m in mws:
            m.close(2)
    return results


def record_cost(calls: int, rounds: int) -> list[float]:
    """``ctx.record()`` alone, on a warm context with tracking granted (per call, µs)."""
    mw = ConsentMiddleware(app, config(tracking=True))
    engine = mw.engine
    env = environ_for(prefs_cookie(mw, "accept_all"))
    ctx = engine.context(env)
    env["consentmw.context"] = ctx
    ctx.record("warm")
    out = []
    for _ in range(rounds):
        engine.dispatcher.queue.clear()
        started = time.perf_counter()
        for _ in range(calls):
            ctx.record("purchase", total=3)
        out.append((time.perf_counter() - started) / calls * 1e6)
    engine.dispatcher.queue.clear()
    mw.close(2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results = run(args.calls, args.rounds)
    results["ctx.record() alone"] = record_cost(args.calls, args.rounds)
    bare = statistics.median(results["bare app"])
    rows = []
    print(f"{'case':36} {'median µs':>10} {'spread':>14} {'added µs':>9} {'ratio':>6}")
    for name, values in results.items():
        med = statistics.median(values)
        added = med - bare if name != "ctx.record() alone" else med
        ratio = med / bare
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{name:36} {med:10.2f} {spread:>14} {added:9.2f} {ratio:6.2f}")
        rows.append(
            {
                "case": name,
                "median_us": med,
                "min_us": min(values),
                "max_us": max(values),
                "added_us": added,
                "ratio": ratio,
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"calls": args.calls, "rounds": args.rounds, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()

"""Section 3: ``ctx.record()`` on the request thread, next to the peers' tracker calls.

Each call records one action with one property, on a warm request whose visitor granted
tracking. What is timed is the request thread's share: building the event and handing it
to the background queue; delivery is left out for everybody (consentmw's dispatcher is held,
Segment's consumer thread is never started, Snowplow buffers to a loopback port it never
reaches within a round, PostHog runs with ``send=False``, which does all its work up to the
queue). Nothing leaves the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from consentmw import ConsentMiddleware

from . import bench_request
from ._harness import CPU, Goal, Row, interleave, row
from .request_path import hold_dispatcher

SECTION = "record() vs peers"


def _consentmw(calls: int) -> tuple[Callable[[], float], Callable[[], None]]:
    mw = ConsentMiddleware(bench_request.app, bench_request.config(tracking=True))
    drain = hold_dispatcher(mw)
    engine = mw.engine
    env = bench_request.environ_for(
        bench_request.prefs_cookie(mw, "accept_all"), session=bench_request.session_cookie(mw)
    )
    ctx = engine.context(env)
    env["consentmw.context"] = ctx
    assert ctx.record("warm")  # the request's shared part is built once per request

    def one() -> float:
        drain()
        record = ctx.record
        started = CPU()
        for _ in range(calls):
            record("purchase", total=3)
        took = CPU() - started
        assert len(engine.dispatcher.queue) == calls
        return took / calls * 1e6

    def close() -> None:
        drain()
        engine.dispatcher._router = None
        mw.close(2)

    return one, close


def _segment(calls: int) -> tuple[Callable[[], float], Callable[[], None]] | None:
    try:
        from segment.analytics import Client
    except ImportError:
        return None
    # send=False keeps the consumer thread from starting; send=True afterwards makes track()
    # put the message on the queue as it does in production.
    client = Client(
        "bench-write-key", send=False, max_queue_size=calls + 10, host="http://127.0.0.1:9"
    )
    client.send = True

    def one() -> float:
        client.queue.queue.clear()
        track = client.track
        started = CPU()
        for _ in range(calls):
            track(user_id="visitor-1", event="purchase", properties={"total": 3})
        took = CPU() - started
        assert client.queue.qsize() == calls
        return took / calls * 1e6

    return one, lambda: client.queue.queue.clear()


def _posthog(calls: int) -> tuple[Callable[[], float], Callable[[], None]] | None:
    try:
        from posthog import Posthog
    except ImportError:
        return None
    client = Posthog("phc_bench", host="http://127.0.0.1:9", send=False, disable_geoip=True)

    def one() -> float:
        capture = client.capture
        started = CPU()
        for _ in range(calls):
            capture("purchase", distinct_id="visitor-1", properties={"total": 3})
        return (CPU() - started) / calls * 1e6

    def close() -> None:
        try:
            client.shutdown()
        except Exception:
            logging.getLogger(__name__).debug("posthog shutdown", exc_info=True)

    return one, close


def _snowplow(calls: int) -> tuple[Callable[[], float], Callable[[], None]] | None:
    try:
        from snowplow_tracker import Emitter, StructuredEvent, Tracker
    except ImportError:
        return None
    logging.getLogger("snowplow_tracker").setLevel(logging.ERROR)
    emitter = Emitter("127.0.0.1", protocol="http", port=9, batch_size=10**9, buffer_capacity=10**9)
    tracker = Tracker(namespace="bench", emitters=emitter, app_id="bench")
    buffer: Any = emitter.event_store.event_buffer  # type: ignore[attr-defined]

    def one() -> float:
        buffer.clear()
        track = tracker.track
        started = CPU()
        for _ in range(calls):
            track(StructuredEvent("shop", "purchase", value=3))
        took = CPU() - started
        assert len(buffer) == calls
        return took / calls * 1e6

    return one, buffer.clear


def run(calls: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    ours, close_ours = _consentmw(calls)
    cases: dict[str, Callable[[], float]] = {"consentmw ctx.record()": ours}
    closers = [close_ours]
    for name, build in (
        ("Segment analytics.track()", _segment),
        ("PostHog capture()", _posthog),
        ("Snowplow Tracker.track()", _snowplow),
    ):
        built = build(calls)
        if built is not None:
            cases[name], closer = built
            closers.append(closer)
    try:
        results = interleave(cases, rounds, progress=progress)
    finally:
        for closer in closers:
            closer()
    ours_values = results.pop("consentmw ctx.record()")
    base = ("consentmw ctx.record()", ours_values)
    rows = [
        row(
            SECTION,
            "consentmw ctx.record()",
            ours_values,
            goal=Goal("value", 1.0),
            note=f"{calls} calls per round",
        )
    ]
    for name, values in results.items():
        rows.append(
            row(
                SECTION,
                name,
                values,
                baseline=base,
                goal=Goal("ratio", 1.0, least=True, text="slower than record()"),
            )
        )
    return rows


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(2000 if quick else 10000, rounds, progress)

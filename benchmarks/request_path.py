"""Section 1: the request path, in-process WSGI calls against a bare app in the same run.

Every request is a full WSGI call (a fresh environ, the body consumed and closed), timed
with the CPU clock of the calling thread. The app sets a cookie of a consent-gated purpose
(``_ga_X``, analytics), so every case decides consent and filters a ``Set-Cookie``.

"First verification" cases send a cookie the process has never seen (a new one for every
request), so the HMAC and the payload parsing are paid each time; "warm" cases send the same
cookie again, as a returning visitor's browser does. Tracking rows here are the request
thread's share (the event is built and queued; the dispatcher is held so that it does not
run): the full cost, delivery included, is in the ``tracked`` section.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterable
from typing import Any

from consentmw import ConsentMiddleware

from . import bench_inject, bench_request
from ._harness import Goal, Row, interleave, loop_us, row

SECTION = "request path"
HTML = "HTML responses"


def hold_dispatcher(mw: ConsentMiddleware) -> Callable[[], None]:
    """Keep the dispatcher's threads from starting: events stay in its queue, which the
    returned function empties. The request thread's work is then measured alone."""
    dispatcher = mw.engine.dispatcher
    dispatcher._router = types.SimpleNamespace(is_alive=lambda: False)  # type: ignore[assignment]

    def drain() -> None:
        dispatcher.queue.clear()

    return drain


def run(calls: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    mws: list[ConsentMiddleware] = []

    def mw(**kw: Any) -> ConsentMiddleware:
        m = ConsentMiddleware(kw.pop("inner", bench_request.app), bench_request.config(**kw))
        mws.append(m)
        return m

    env = bench_request.environ_for
    plain = mw()
    accepted = bench_request.prefs_cookie(plain, "accept_all")
    declined = bench_request.prefs_cookie(plain, "reject_all")
    rotated = mw(keys=bench_request.KEYS)
    old = mw(keys=bench_request.KEYS[:1])
    old_cookie = bench_request.prefs_cookie(old, "accept_all")
    tracked = mw(tracking=True)
    recording = mw(tracking=True, inner=bench_request.recording_app)
    drain_tracked = hold_dispatcher(tracked)
    drain_recording = hold_dispatcher(recording)

    # Fresh cookies for every request of the "first verification" cases.
    batches = rounds + 1

    def fresh(signer_mw: ConsentMiddleware, choice: str = "accept_all") -> list[str]:
        return [bench_request.prefs_cookie(signer_mw, choice) for _ in range(calls * batches)]

    def tamper(value: str) -> str:
        return value[:-2] + ("AA" if value[-2:] != "AA" else "BB")

    first_pool = iter(_chunks([env(c) for c in fresh(plain)], calls))
    old_pool = iter(_chunks([env(c) for c in fresh(old)], calls))
    forged_pool = iter(_chunks([env(tamper(c), ga=False) for c in fresh(plain)], calls))

    def same(e: dict[str, Any]) -> list[dict[str, Any]]:
        return [e] * calls

    bare = bench_request.app
    cases: dict[str, Callable[[], float]] = {
        "bare app": lambda: loop_us(bare, same(env(None))),
        "no cookie": lambda: loop_us(plain, same(env(None))),
        # A browser that refused analytics no longer sends its cookie: the first response
        # after the refusal expired it. The second row is that first response.
        "declined": lambda: loop_us(plain, same(env(declined, ga=False))),
        "declined, browser still sends _ga_X (expired again)": lambda: loop_us(
            plain, same(env(declined))
        ),
        "valid cookie, warm": lambda: loop_us(plain, same(env(accepted))),
        "valid cookie, first verification": lambda: loop_us(plain, next(first_pool)),
        "tampered cookie, a new one each request": lambda: loop_us(plain, next(forged_pool)),
        "3-key ring, oldest key, warm (re-sign)": lambda: loop_us(rotated, same(env(old_cookie))),
        "3-key ring, oldest key, first verification + re-sign": lambda: loop_us(
            rotated, next(old_pool)
        ),
        "tracking on: page visit queued (request thread)": lambda: loop_us(
            tracked,
            same(env(accepted, session=bench_request.session_cookie(tracked))),
            before=drain_tracked,
        ),
        "tracking on + ctx.record() (request thread)": lambda: loop_us(
            recording,
            same(env(accepted, session=bench_request.session_cookie(recording))),
            before=drain_recording,
        ),
    }
    try:
        results = interleave(cases, rounds, progress=progress)
    finally:
        drain_tracked()
        drain_recording()
        for m in mws:
            m.engine.dispatcher._router = None
            m.close(2)
    base = ("bare app", results["bare app"])
    goals = {
        "no cookie": Goal("added", 2.0),
        "declined": Goal("added", 2.0),
        "valid cookie, warm": Goal("added", 5.0),
        "valid cookie, first verification": Goal("added", 15.0),
    }
    rows = [row(SECTION, "bare app", results["bare app"], note=f"{calls} requests per round")]
    for name, values in results.items():
        if name != "bare app":
            rows.append(row(SECTION, name, values, baseline=base, goal=goals.get(name)))
    return rows + run_html(max(200, calls // 4), rounds, progress)


def run_html(calls: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    """The consent UI on a 1.4 KB HTML page: banner inserted (no decision yet), settings
    link only (decided), and a JSON response that is left alone."""
    mw = ConsentMiddleware(bench_inject.app, bench_inject.CONFIG)
    try:
        accepted = bench_inject.decided_cookie(mw)
        env = bench_inject.environ_for
        page, api = env("/"), env("/api")
        page_ok, api_ok = env("/", accepted), env("/api", accepted)
        # Check what each case really does before timing it.
        size = bench_inject._one
        assert size(mw, dict(page)) > size(bench_inject.app, dict(page)) + 2000
        assert size(mw, dict(page_ok)) < size(bench_inject.app, dict(page)) + 400
        assert size(mw, dict(api_ok)) == size(bench_inject.app, dict(api))
        app = bench_inject.app
        cases: dict[str, Callable[[], float]] = {
            "bare app, HTML page": lambda: loop_us(app, [page] * calls),
            "banner inserted (no decision yet)": lambda: loop_us(mw, [page] * calls),
            "settings link only (decided)": lambda: loop_us(mw, [page_ok] * calls),
            "bare app, JSON": lambda: loop_us(app, [api] * calls),
            "JSON response (not HTML), decided": lambda: loop_us(mw, [api_ok] * calls),
        }
        results = interleave(cases, rounds, progress=progress)
    finally:
        mw.close(5)
    page_base = ("bare app, HTML page", results["bare app, HTML page"])
    json_base = ("bare app, JSON", results["bare app, JSON"])
    note = f"page of {len(bench_inject.PAGE)} bytes"
    return [
        row(HTML, "bare app, HTML page", results["bare app, HTML page"], note=note),
        row(
            HTML,
            "banner inserted (no decision yet)",
            results["banner inserted (no decision yet)"],
            baseline=page_base,
        ),
        row(
            HTML,
            "settings link only (decided)",
            results["settings link only (decided)"],
            baseline=page_base,
        ),
        row(HTML, "bare app, JSON", results["bare app, JSON"]),
        row(
            HTML,
            "JSON response (not HTML), decided",
            results["JSON response (not HTML), decided"],
            baseline=json_base,
        ),
    ]


def _chunks(items: list[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(500 if quick else 2000, rounds, progress)

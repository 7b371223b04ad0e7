"""Per-response cost of the consent UI: the middleware around a small HTML page with the
banner injected, with only the settings link, and around a non-HTML response, against the
bare application measured in the same run.

Run: ``python benchmarks/bench_inject.py [--calls 3000] [--rounds 7]``

Each case calls the WSGI application directly (no server, no sockets) with a fresh copy of
a prepared environ, consumes the body and closes it, as a server would. The table shows the
median time per response and the spread between the 10th and 90th percentile of the
per-response times, and the cost over the bare application.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.test import Client, EnvironBuilder

from consentmw import ConsentMiddleware

PAGE = (
    b"<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>"
    b'<link rel="stylesheet" href="/static/site.css"></head><body>'
    b'<header><nav><a href="/">Home</a> <a href="/docs">Docs</a> <a href="/cart">Cart</a></nav>'
    b"</header><main><h1>Welcome</h1>"
    + b'<p class="intro">Some text about the shop, with <a href="/x?a=1&amp;b=2">a link</a>.</p>'
    * 12
    + b'<script data-consent="analytics" src="/static/analytics.js"></script>'
    b"</main><footer>&copy; Example</footer></body></html>"
)
JSON = json.dumps({"items": list(range(50))}).encode()

CONFIG: dict[str, Any] = {
    "site": {"name": "bench.example.test", "secret_keys": ["bench-secret-key-0123456789abcdef"]},
    "purposes": {
        "necessary": {"title": "Strictly necessary", "required": True},
        "analytics": {"title": "Improve our content"},
        "marketing": {"title": "Marketing contact", "gpc_opt_out": True},
    },
    "cookie_settings": {"secure": False},
    "tracking": {"page_visits": False},
    "sinks": {"events": ["memory://"]},
    "dispatch": {"spool": ""},
}

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/api":
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(JSON)))]
        )
        return [JSON]
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))],
    )
    return [PAGE]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def measure(target: WSGIApp, environ: dict[str, Any], calls: int, rounds: int) -> list[float]:
    """Per-response times in microseconds (``calls * rounds`` of them, after a warm-up)."""
    times: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(200):
        _one(target, dict(environ))
    for _ in range(rounds):
        gc.collect()
        for _ in range(calls):
            env = dict(environ)
            start = clock()
            _one(target, env)
            times.append((clock() - start) / 1000.0)
    return times


def _one(target: WSGIApp, environ: dict[str, Any]) -> int:
    body = target(environ, _start_response)
    try:
        return sum(len(chunk) for chunk in body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def decided_cookie(mw: ConsentMiddleware) -> str:
    """A prefs cookie of a visitor who accepted everything."""
    client = Client(mw)
    state = json.loads(client.get("/_consent").get_data())
    client.post(
        "/_consent",
        data={"choice": "accept_all", "csrf": state["csrf"], "next": "/"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    cookie = client.get_cookie("cmw_prefs")
    assert cookie is not None
    return f"cmw_prefs={cookie.value}"


def environ_for(path: str, cookie: str | None = None) -> dict[str, Any]:
    headers = {"Accept-Language": "en-GB,en;q=0.8", "User-Agent": "Mozilla/5.0 (bench)"}
    if cookie:
        headers["Cookie"] = cookie
    return EnvironBuilder(path=path, headers=headers).get_environ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="responses per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case")
    args = parser.parse_args()

    mw = ConsentMiddleware(app, CONFIG)
    try:
        accepted = decided_cookie(mw)
        cases: list[tuple[str, WSGIApp, dict[str, Any], str]] = [
            ("bare app, HTML page", app, environ_for("/"), ""),
            ("bare app, JSON", app, environ_for("/api"), ""),
            ("middleware, HTML, banner injected", mw, environ_for("/"), "bare app, HTML page"),
            (
                "middleware, HTML, settings link only",
                mw,
                environ_for("/", accepted),
                "bare app, HTML page",
            ),
            ("middleware, JSON (not HTML)", mw, environ_for("/api", accepted), "bare app, JSON"),
        ]
        # Check what each case really does before timing it.
        sizes = {name: _one(target, dict(env)) for name, target, env, _ in cases}
        assert sizes["middleware, HTML, banner injected"] > sizes["bare app, HTML page"] + 2000
        assert sizes["middleware, HTML, settings link only"] < sizes["bare app, HTML page"] + 400
        assert sizes["middleware, JSON (not HTML)"] == sizes["bare app, JSON"]

        results: dict[str, float] = {}
        rows = []
        for name, target, env, baseline in cases:
            times = measure(target, env, args.calls, args.rounds)
            median = statistics.median(times)
            results[name] = median
            spread = f"{percentile(times, 0.1):.1f}-{percentile(times, 0.9):.1f}"
            extra = f"+{median - results[baseline]:.1f}" if baseline else ""
            rows.append((name, f"{median:.1f}", spread, extra, str(sizes[name])))
    finally:
        mw.close(timeout=5)

    headers = ("case", "median µs", "p10-p90 µs", "over bare µs", "bytes")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"{args.rounds} rounds x {args.calls} responses per case; page {len(PAGE)} bytes")
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


if __name__ == "__main__":
    main()

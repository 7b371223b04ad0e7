"""How fast user-agent classification and batch enrichment are.

Run from the repository root::

    python benchmarks/bench_enrich.py [--repeat 7] [--batch 500]

Prints one table: per-call times of the user-agent parsers (uncached: the legacy
``user_agents.parse``, the same rules fed by ua-parser 1.x's resolvers, and
:class:`~consentmw.resolve.UAClassifier` without and with its cache), of the request thread's
bot filter, and the throughput of :meth:`~consentmw.resolve.Enricher.enrich` (and of the
redactor) on batches with a realistic user-agent mix and warm reverse-DNS caches. Reverse DNS
is answered by a DNS server this script starts on 127.0.0.1; nothing else is contacted.

Each figure is the median of ``--repeat`` runs, with the spread (min-max) around it.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import ua_parser
import user_agents
from ua_parser import user_agent_parser

from consentmw.events import Event, RequestFacts
from consentmw.resolve import (
    BotFilter,
    Enricher,
    Redactor,
    ReverseResolver,
    UAClassifier,
)
from consentmw.resolve.useragent import (
    _user_agent_from_resolver,
    compiled_backend_available,
)
from resolve.dnsstub import StubDNSServer
from resolve.ua_corpus import REALISTIC_MIX

# Global addresses only: the resolver never looks up private ones. They are names in the
# local server's table, nothing more.
ADDRESSES = [f"66.{1 + i // 200}.{i % 200}.{10 + i % 7}" for i in range(500)]


def measure(fn: Callable[[], object], repeat: int) -> list[float]:
    """Seconds per call of ``fn`` over ``repeat`` runs (after one warm-up run)."""
    fn()
    runs = []
    for _ in range(repeat):
        gc.collect()  # start every run with the same heap, so runs are comparable
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def per_item(runs: list[float], items: int) -> list[float]:
    return [r / items for r in runs]


_Batch = list[tuple[Event, RequestFacts | None]]


def _batch(size: int, visitors: int) -> _Batch:
    """``size`` page-visit events from ``visitors`` visitors, each with its own browser."""
    out: _Batch = []
    for i in range(size):
        visitor = i % visitors
        facts = RequestFacts(
            remote_addr="10.0.0.1",
            forwarded_for=f"198.51.100.9, {ADDRESSES[visitor % len(ADDRESSES)]}",
            user_agent=REALISTIC_MIX[visitor % len(REALISTIC_MIX)],
            from_header=None,
            referrer="https://search.example/?q=consent",
        )
        event = Event(
            id=str(i),
            type="page_visit",
            name=None,
            ts="2026-03-01T00:00:00.000000Z",
            site="shop.example.test",
            policy_version="2014-12-12",
            purposes=("necessary", "analytics"),
            path=f"/products/{i}?ref=mail&utm_source=x",
            referrer="https://search.example/?q=consent",
            props={"sku": f"A{i}", "qty": 1, "note": "gift wrap please"},
        )
        out.append((event, facts))
    return out


def _enrich_next(enricher: Enricher, batches: Iterator[_Batch]) -> None:
    enricher.enrich(next(batches))


def legacy_uncached(ua: str) -> object:
    # user_agents.parse goes through ua-parser's legacy module, which keeps its own global
    # cache of 200 strings; clearing it makes every call a real parse.
    user_agent_parser._PARSE_CACHE.clear()
    return user_agents.parse(ua)


def fmt_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:8.2f} µs"
    return f"{seconds * 1e9:8.1f} ns"


def spread(runs: list[float]) -> str:
    med = statistics.median(runs)
    return f"-{(med - min(runs)) / med:5.1%} / +{(max(runs) - med) / med:5.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    repeat = args.repeat
    mix = [ua[:512] for ua in REALISTIC_MIX]
    rows: list[tuple[str, list[float], str]] = []

    # -- user agents, per call ------------------------------------------------------------
    rows.append(
        (
            "user_agents.parse, uncached",
            per_item(measure(lambda: [legacy_uncached(ua) for ua in mix], repeat), len(mix)),
            "time",
        )
    )
    basic = ua_parser.BasicResolver(ua_parser.load_builtins())
    rows.append(
        (
            "ua-parser 1.x basic resolver -> user_agents, uncached",
            per_item(
                measure(lambda: [_user_agent_from_resolver(basic, ua) for ua in mix], repeat),
                len(mix),
            ),
            "time",
        )
    )
    if compiled_backend_available():
        best = ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins())
        rows.append(
            (
                "ua-parser 1.x compiled resolver -> user_agents, uncached",
                per_item(
                    measure(lambda: [_user_agent_from_resolver(best, ua) for ua in mix], repeat),
                    len(mix),
                ),
                "time",
            )
        )
    classifier = UAClassifier()

    def classify_uncached() -> None:
        for ua in mix:
            user_agent_parser._PARSE_CACHE.clear()
            classifier.classify_uncached(ua)

    rows.append(
        (
            f"UAClassifier({classifier.backend}), uncached",
            per_item(measure(classify_uncached, repeat), len(mix)),
            "time",
        )
    )
    rows.append(
        (
            "UAClassifier, cached (warm)",
            per_item(measure(lambda: [classifier.classify(ua) for ua in mix], repeat), len(mix)),
            "time",
        )
    )
    bots = BotFilter()
    rows.append(
        (
            "BotFilter (request thread), cached",
            per_item(measure(lambda: [bots(ua) for ua in mix], repeat), len(mix)),
            "time",
        )
    )
    uncached_bots = BotFilter(cache_size=0)
    rows.append(
        (
            "BotFilter, uncached",
            per_item(measure(lambda: [uncached_bots(ua) for ua in mix], repeat), len(mix)),
            "time",
        )
    )

    # -- batch enrichment -------------------------------------------------------------------
    size = args.batch
    with StubDNSServer() as server:
        for i, ip in enumerate(ADDRESSES):
            name = f"host-{i}.isp{i % 7}.example.net."
            server.ptr(ip, name)
            server.address(name, ip)
        with ReverseResolver(nameservers=["127.0.0.1"], port=server.port, timeout=1.0) as rdns:
            rdns.resolve_batch(ADDRESSES, deadline_s=30)  # warm: every lookup a cache hit
            redactor = Redactor()
            # A realistic batch has a few events per visitor (here about three); the worst
            # case has a new visitor for every event.
            few = max(1, size * 3 // 10)
            for visitors, label in ((few, f"{few} visitors"), (size, "all distinct")):
                enricher = Enricher(trusted_proxies=1, ua=UAClassifier(), resolver=rdns)
                batches = iter([_batch(size, visitors) for _ in range(repeat + 1)])
                runs = measure(partial(_enrich_next, enricher, batches), repeat)
                rows.append(
                    (
                        f"Enricher.enrich, {size}/batch, {label}, rDNS cache hits",
                        runs,
                        f"rate:{size}",
                    )
                )
            prepared = [_batch(size, size) for _ in range(repeat + 1)]
            it = iter(prepared)
            runs = measure(lambda: [redactor.redact(e) for e, _ in next(it)], repeat)
            rows.append((f"Redactor.redact, {size}/batch", runs, f"rate:{size}"))
            hits = rdns.stats()["cache_hit"]

    # -- the table ------------------------------------------------------------------------
    print(
        f"Python {platform.python_version()}, user-agents {version('user-agents')}, "
        f"ua-parser {version('ua-parser')}, compiled ua-parser backend: "
        f"{'yes' if compiled_backend_available() else 'no'}; "
        f"{len(mix)} user agents per run ({len(set(mix))} distinct); median of {repeat} runs"
    )
    print()
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement':<{width}}  {'median':>14}  {'spread (min / max)':>18}")
    print("-" * (width + 36))
    medians = {}
    for name, runs, kind in rows:
        med = statistics.median(runs)
        medians[name] = med
        if kind.startswith("rate:"):
            items = int(kind[5:])
            rates = [items / r for r in runs]
            shown = f"{statistics.median(rates):9,.0f} ev/s"
            print(f"{name:<{width}}  {shown:>14}  {spread(rates):>18}")
        else:
            print(f"{name:<{width}}  {fmt_time(med):>14}  {spread(runs):>18}")
    print()
    legacy = medians["user_agents.parse, uncached"]
    basic_med = medians["ua-parser 1.x basic resolver -> user_agents, uncached"]
    print(f"1.x basic resolver / legacy parse time: {basic_med / legacy:.2f}x")
    for name, med in medians.items():
        if "compiled" in name:
            print(f"1.x compiled resolver speed-up over legacy: {legacy / med:.1f}x")
    cached = medians["UAClassifier, cached (warm)"]
    uncached = medians[f"UAClassifier({classifier.backend}), uncached"]
    print(f"UAClassifier cache speed-up: {uncached / cached:.0f}x")
    print(f"reverse-DNS cache hits during the enrichment runs: {hits}")


if __name__ == "__main__":
    main()

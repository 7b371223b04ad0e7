"""Run the benchmark suite: one table on stdout, the figures in ``benchmarks/results/latest.json``.

    python -m benchmarks                    # every section (about 10 minutes)
    python -m benchmarks --quick            # fewer rounds and requests, a quick look
    python -m benchmarks --only request,trackers
    python -m benchmarks --docs             # also rewrite docs/performance.rst and its plot

Sections: request, tracked, frameworks, trackers, throughput, load, memory, startup.
PostgreSQL and Redis are used on 127.0.0.1 (``CONSENTMW_TEST_POSTGRES``,
``CONSENTMW_TEST_REDIS``); a section whose service or tool is missing is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from . import report
from ._harness import Row, SkipSection

SECTIONS = (
    "request",
    "tracked",
    "frameworks",
    "trackers",
    "throughput",
    "load",
    "memory",
    "startup",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", help="comma-separated sections: " + ", ".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    parser.add_argument("--rounds", type=int, help="rounds per in-process case (default 15)")
    parser.add_argument("--json", type=Path, default=report.RESULTS, help="where to write")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="rewrite docs/performance.rst and the plot from the results",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    chosen = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    quick = args.quick
    rounds = args.rounds or (5 if quick else 15)

    def progress(message: str) -> None:
        if args.verbose:
            print(f"  {message}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    skipped: dict[str, str] = {}
    started = time.time()
    for name in chosen:
        print(f"[{name}] running…", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        module = (
            importlib.import_module(f".{name}", __package__)
            if name != "request"
            else (importlib.import_module(".request_path", __package__))
        )
        try:
            got = module.section(quick=quick, rounds=rounds, progress=progress)
        except SkipSection as exc:
            skipped[name] = str(exc)
            print(f"[{name}] skipped: {exc}", file=sys.stderr, flush=True)
            continue
        except Exception:
            traceback.print_exc()
            skipped[name] = "failed: " + traceback.format_exc(limit=1).strip().splitlines()[-1]
            continue
        rows.extend(got)
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(report.table(rows))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    meta = {
        "sections": list(chosen),
        "quick": quick,
        "rounds": rounds,
        "seconds": round(time.time() - started),
        "skipped": skipped,
    }
    report.write_json(rows, meta, args.json)
    print(f"\nwritten: {args.json}")
    if args.docs:
        from . import docs

        docs.write(args.json)
    return 1 if any("failed" in why for why in skipped.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

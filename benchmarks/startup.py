"""Section 7: start-up — import time and middleware construction.

Import: a fresh interpreter per measurement (``python -c "import consentmw"``) against a
bare interpreter (``python -c pass``) started in the same round; the difference is what
importing consentmw costs a process (wall clock, as a server's start feels it).

Construction: ``ConsentMiddleware(app, config)`` from a mapping (validation, key ring,
signers, sink and spool objects, the UI), then ``close()`` outside the timing, against
``Config.load`` of the same mapping; in-process, CPU clock.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ._harness import CPU, WALL, Row, interleave, row

SECTION = "start-up"
ROOT = Path(__file__).resolve().parent.parent


def _python(code: str) -> float:
    started = WALL()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
    return (WALL() - started) * 1e3


def run(rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    from consentmw import Config, ConsentMiddleware

    from . import bench_request

    mapping = bench_request.config(tracking=True)

    def construct() -> float:
        started = CPU()
        mw = ConsentMiddleware(bench_request.app, mapping)
        took = CPU() - started
        mw.close(1)
        return took * 1e3

    def load() -> float:
        started = CPU()
        Config.load(mapping)
        return (CPU() - started) * 1e3

    cases = {
        "python -c pass": lambda: _python("pass"),
        "import consentmw": lambda: _python("import consentmw"),
        "import consentmw + ConsentMiddleware": lambda: _python(
            "import consentmw, consentmw.wsgi, consentmw.engine, consentmw.ui"
        ),
        "Config.load(mapping)": load,
        "ConsentMiddleware(app, mapping)": construct,
    }
    results = interleave(cases, rounds, progress=progress)
    bare = ("python -c pass", results["python -c pass"])
    return [
        row(SECTION, "python -c pass", results["python -c pass"], unit="ms"),
        row(SECTION, "import consentmw", results["import consentmw"], unit="ms", baseline=bare),
        row(
            SECTION,
            "import consentmw + engine, UI",
            results["import consentmw + ConsentMiddleware"],
            unit="ms",
            baseline=bare,
        ),
        row(SECTION, "Config.load(mapping)", results["Config.load(mapping)"], unit="ms"),
        row(
            SECTION,
            "ConsentMiddleware(app, mapping)",
            results["ConsentMiddleware(app, mapping)"],
            unit="ms",
            baseline=("Config.load(mapping)", results["Config.load(mapping)"]),
        ),
    ]


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(3 if quick else 9, progress)

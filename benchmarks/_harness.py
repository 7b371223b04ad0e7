"""Timing and reporting helpers shared by the benchmark sections.

Every figure is a median over rounds. In each round every case of a group runs once, in a
shuffled order, so machine noise (other processes on a shared machine, frequency changes)
hits the case and its baseline alike. The spread is the lowest and highest round value.
The cost a case adds over its baseline is the median of the per-round differences.

Clocks: single-threaded, in-process cases are timed with :func:`time.thread_time` (the CPU
time of the calling thread): another process taking the core does not count, so the figures
hold on a busy machine. Cases whose cost includes background threads (the dispatcher) or
other processes are timed with the wall clock (:func:`time.perf_counter`).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Goal",
    "Row",
    "SkipSection",
    "interleave",
    "loop_us",
    "row",
]

CPU = time.thread_time
WALL = time.perf_counter


class SkipSection(Exception):
    """A section cannot run here (a service or a tool is missing)."""


@dataclass(frozen=True)
class Goal:
    """A target from issue 8. ``on``: which figure is judged — ``added`` (over the
    baseline), ``value`` or ``ratio`` (case / baseline); ``most``/``least``: the bound."""

    on: str
    limit: float
    least: bool = False
    text: str = ""

    def judge(self, value: float | None, added: float | None, ratio: float | None) -> bool | None:
        figure = {"value": value, "added": added, "ratio": ratio}[self.on]
        if figure is None:
            return None
        return figure >= self.limit if self.least else figure <= self.limit

    def describe(self, unit: str) -> str:
        if self.text:
            return self.text
        sign = "≥" if self.least else "≤"
        what = {"value": "", "added": "added ", "ratio": "ratio "}[self.on]
        u = "" if self.on == "ratio" else f" {unit}"
        return f"{what}{sign} {self.limit:g}{u}"


@dataclass
class Row:
    """One line of the table."""

    section: str
    case: str
    unit: str
    median: float
    low: float
    high: float
    rounds: int
    baseline: str | None = None
    baseline_median: float | None = None
    added: float | None = None
    ratio: float | None = None
    goal: str | None = None
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row(
    section: str,
    case: str,
    values: list[float],
    *,
    unit: str = "µs",
    baseline: tuple[str, list[float]] | None = None,
    goal: Goal | None = None,
    note: str = "",
    extra: Mapping[str, Any] | None = None,
) -> Row:
    """Summarise one case's round values, against a baseline's from the same rounds."""
    med = statistics.median(values)
    out = Row(section, case, unit, med, min(values), max(values), len(values), note=note)
    if baseline is not None:
        name, base = baseline
        out.baseline = name
        out.baseline_median = statistics.median(base)
        if len(base) == len(values):
            out.added = statistics.median(v - b for v, b in zip(values, base, strict=True))
        else:
            out.added = med - out.baseline_median
        out.ratio = med / out.baseline_median if out.baseline_median else None
    if goal is not None:
        out.goal = goal.describe(unit)
        out.met = goal.judge(med, out.added, out.ratio)
    if extra:
        out.extra.update(extra)
    return out


def interleave(
    cases: Mapping[str, Callable[[], float]],
    rounds: int,
    *,
    seed: int = 8,
    warmup: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Run every case once per round, in a shuffled order; each call returns one value."""
    rng = random.Random(seed)
    names = list(cases)
    results: dict[str, list[float]] = {name: [] for name in names}
    if warmup:
        for name in names:
            cases[name]()
    for i in range(rounds):
        rng.shuffle(names)
        for name in names:
            gc.collect()
            results[name].append(cases[name]())
        if progress is not None:
            progress(f"round {i + 1}/{rounds}")
    return results


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def loop_us(
    wsgi: Callable[..., Iterable[bytes]],
    environs: list[dict[str, Any]],
    *,
    clock: Callable[[], float] = CPU,
    before: Callable[[], None] | None = None,
) -> float:
    """Microseconds per request: each environ (copied, as a server builds a new one per
    request) is passed to ``wsgi``, the body consumed and closed."""
    calls = len(environs)
    start_response = _start_response
    if before is not None:
        before()
    started = clock()
    for base in environs:
        # A fresh environ per request, as a server builds it (a copy costs ~0.1 µs, paid by
        # the baseline alike). Copies made beforehand would keep thousands of dicts alive,
        # and the garbage collector would walk them while the case runs.
        body = wsgi(dict(base), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (clock() - started) / calls * 1e6

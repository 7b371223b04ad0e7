"""The table, the JSON file, the documentation page and its plot, from benchmark rows."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._harness import Row

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
DOC = ROOT / "docs" / "performance.rst"
PLOT = ROOT / "docs" / "_static" / "performance.png"


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit in ("events/s", "req/s"):
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cells(r: Row) -> list[str]:
    verdict = "" if r.met is None else ("met" if r.met else "MISSED")
    return [
        r.section,
        r.case,
        f"{_num(r.median, r.unit)} {r.unit}",
        f"{_num(r.low, r.unit)}-{_num(r.high, r.unit)}",
        r.baseline or "",
        _num(r.added, r.unit) if r.added is not None else "",
        f"{r.ratio:.2f}" if r.ratio is not None else "",
        r.goal or "",
        verdict,
    ]


HEADERS = [
    "section",
    "case",
    "median",
    "spread (min-max)",
    "baseline",
    "added",
    "ratio",
    "goal",
    "",
]


def table(rows: Iterable[Row]) -> str:
    body = [cells(r) for r in rows]
    widths = [
        max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(HEADERS)
    ]
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(HEADERS)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for c in body:
        lines.append("  ".join(c[i].ljust(widths[i]) for i in range(len(c))).rstrip())
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in (
        "consentmw",
        "werkzeug",
        "itsdangerous",
        "flask",
        "django",
        "django-cookie-consent",
        "segment-analytics-python",
        "posthog",
        "snowplow-tracker",
        "gunicorn",
        "psycopg",
        "redis",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "versions": versions,
    }


def write_json(rows: list[Row], meta: Mapping[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "run": dict(meta),
        "rows": [r.to_dict() for r in rows],
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_json(path: Path = RESULTS) -> tuple[list[Row], dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [Row(**r) for r in doc["rows"]], doc

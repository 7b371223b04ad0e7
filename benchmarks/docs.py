"""Rewrite ``docs/performance.rst`` and ``docs/_static/performance.png`` from the results.

python -m benchmarks --docs            # after a run
python -m benchmarks.docs [results.json]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._harness import Row
from .report import DOC, PLOT, RESULTS, _num, load_json

INTRO = """\
Performance
===========

A middleware runs on every request of every site it wraps, so consentmw is built to cost
nothing a visitor can notice: the request thread verifies one signature (or finds it in a
cache), decides consent from a few values and appends a small tuple to a queue; parsing,
DNS, serialisation and sink writes happen on the dispatcher (:doc:`dispatch`).

This page shows the measured figures: the request-path cost against a bare WSGI application,
inside Flask and Django, ``ctx.record()`` next to other trackers' calls, the dispatcher's
throughput into each sink, a real server under load with a sink down, memory during a burst
and start-up. Every figure is a median over interleaved repetitions with its spread (the
lowest and highest repetition), compared with a baseline measured in the same run, so ratios
hold on any machine while microseconds are for the machine that ran them.

Running the suite
-----------------

.. code-block:: console

   $ pip install -e '.[bench]'       # Flask, Django, django-cookie-consent, the trackers, gunicorn
   $ apt-get install wrk             # the load generator (Debian)
   $ python -m benchmarks            # one table; the figures in benchmarks/results/latest.json
   $ python -m benchmarks --quick    # fewer repetitions: a quick look
   $ python -m benchmarks --only request,trackers
   $ python -m benchmarks --docs     # also rewrites this page and its plot from the results

PostgreSQL and Redis are used on ``127.0.0.1`` (``CONSENTMW_TEST_POSTGRES``,
``CONSENTMW_TEST_REDIS``); a section whose service or tool is missing is reported as skipped.
The load test only ever targets ``127.0.0.1`` and runs for a fixed time.

How it measures
---------------

- In-process cases call the WSGI application with a fresh copy of a prepared environ,
  consume the body and close it, as a server does; they are timed with the CPU clock of the
  calling thread (``time.thread_time``), so another process taking the core does not count.
  "Added" is the median of the per-repetition differences with the baseline.
- "First verification" sends a cookie the process has never seen, a new one per request, so
  the HMAC, the decoding and the consent decision are paid every time; "warm" sends the same
  cookie again, as a returning visitor's browser does (verified values are cached).
- Tracking rows in the request-path section are the request thread's share (the event is
  built and queued). The *tracked request (full cost)* rows include the background delivery:
  N requests into SQLite or JSON Lines plus the final flush, wall clock, divided by N; each
  repetition checks that the sink holds exactly N events.
- Dispatcher throughput enqueues N page visits (``when_full = "block"``, so none is dropped),
  flushes, and checks the count; the bare client writes the same rows, built beforehand, in
  batches of 500.
- ``ctx.record()`` and the peers' calls are timed up to their queue: delivery is left out for
  everybody and nothing leaves the machine.
- The dispatcher goal is a ratio: at least half the rate of the bare batched insert measured
  in the same run. (Issue 8 put it at 150,000 events/s for a bare insert of about 300,000;
  into the sink's schema, with its indexes and ``ON CONFLICT``, the bare insert itself runs
  at a fraction of that on this machine.)
- Wall-clock sections (tracked requests, throughput, the load test) move with whatever else
  the machine runs; the CPU-time rows next to them do not.
"""


def _table(rows: Iterable[Row]) -> list[str]:
    out = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 34 12 16 10 8 18 7",
        "",
        "   * - case",
        "     - median",
        "     - spread",
        "     - added",
        "     - ratio",
        "     - goal",
        "     - ",
    ]
    for r in rows:
        verdict = "" if r.met is None else ("met" if r.met else "**missed**")
        base = f" (vs {r.baseline})" if r.baseline else ""
        out += [
            f"   * - {_rst(r.case)}{_rst(base)}",
            f"     - {_num(r.median, r.unit)} {r.unit}",
            f"     - {_num(r.low, r.unit)}-{_num(r.high, r.unit)}",
            f"     - {_num(r.added, r.unit)}" if r.added is not None else "     - ",
            f"     - {r.ratio:.2f}" if r.ratio is not None else "     - ",
            f"     - {_rst(r.goal or '')}",
            f"     - {verdict}",
        ]
    return out


def _rst(text: str) -> str:
    return text.replace("*", r"\*").replace("|", r"\|").replace("`", "'")


def page(rows: list[Row], doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = [INTRO, "Latest figures", "--------------", ""]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    lines += [
        f"Measured {doc['generated']} on {env['cpus']} CPUs ({env['machine']}), "
        f"{env['implementation']} {env['python']}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in env['loadavg_at_end'] or [])} (a shared machine). "
        f"Versions: {versions}.",
        "",
        ".. image:: _static/performance.png",
        "   :alt: Request-path cost added by consentmw and by its peers, in microseconds",
        "",
    ]
    goals = [r for r in rows if r.met is not None]
    if goals:
        lines += ["Goals", "~~~~~", ""]
        for r in goals:
            shown = f"{_num(r.median, r.unit)} {r.unit}"
            if r.added is not None and r.unit == "µs":
                shown += f", {_num(r.added, r.unit)} µs added"
            elif r.ratio is not None:
                shown += f", ratio {r.ratio:.2f}"
            mark = "met" if r.met else "**missed**"
            lines.append(
                f"- {_rst(r.section)}, {_rst(r.case)}: {shown} (goal {_rst(r.goal or '')}): {mark}"
            )
        lines.append("")
    sections: dict[str, list[Row]] = {}
    for r in rows:
        sections.setdefault(r.section, []).append(r)
    for name, section_rows in sections.items():
        title = name[:1].upper() + name[1:]
        lines += [title, "~" * len(title), ""]
        notes = [f"{r.case}: {r.note}" for r in section_rows if r.note]
        lines += _table(section_rows)
        lines.append("")
        for note in notes:
            lines.append(f"- {_rst(note)}")
        if notes:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def plot(rows: list[Row], path: Path = PLOT) -> bool:
    """A bar chart of what the middleware and its peers add per request; ``False`` when
    matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels: list[tuple[str, list[tuple[str, float, float | None]]]] = []
    by_case = {(r.section, r.case): r for r in rows}

    def pick(section: str, cases: list[tuple[str, str]], field: str = "added") -> None:
        bars = []
        for case, label in cases:
            r = by_case.get((section, case))
            if r is None:
                continue
            value = r.added if field == "added" else r.median
            if value is None:
                continue
            limit = None
            if r.goal and r.met is not None and field == "added" and r.goal.startswith("added"):
                limit = float(r.goal.split()[2])
            bars.append((label, value, limit))
        if bars:
            panels.append((section, bars))

    pick(
        "request path",
        [
            ("no cookie", "no cookie"),
            ("declined", "declined"),
            ("valid cookie, warm", "valid cookie, warm"),
            ("valid cookie, first verification", "first verification"),
            ("tracking on: page visit queued (request thread)", "+ page visit queued"),
        ],
    )
    pick(
        "tracked request (full cost)",
        [
            ("page visit into SQLite, delivered", "page visit into SQLite"),
            ("page visit into JSON Lines, delivered", "page visit into JSON Lines"),
        ],
    )
    pick(
        "inside Flask",
        [
            ("Flask + consentmw, valid cookie (warm)", "consentmw (valid cookie)"),
            ("Flask hello + reading its session", "Flask session, read"),
            ("Flask hello + changing its session (re-sign)", "Flask session, re-sign"),
        ],
    )
    pick(
        "inside Django",
        [
            ("Django + consentmw, accepted", "consentmw, accepted"),
            ("Django + consentmw, declined", "consentmw, declined"),
            ("Django + django-cookie-consent, accepted", "django-cookie-consent, accepted"),
            ("Django + django-cookie-consent, declined", "django-cookie-consent, declined"),
        ],
    )
    pick(
        "record() vs peers",
        [
            ("consentmw ctx.record()", "consentmw ctx.record()"),
            ("Snowplow Tracker.track()", "Snowplow track()"),
            ("Segment analytics.track()", "Segment track()"),
            ("PostHog capture()", "PostHog capture()"),
        ],
        field="median",
    )
    if not panels:
        return False
    heights = [max(1.2, 0.42 * len(bars) + 0.7) for _, bars in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8.5, sum(heights) + 0.6), gridspec_kw={"height_ratios": heights}
    )
    if len(panels) == 1:
        axes = [axes]
    for ax, (title, bars) in zip(axes, panels, strict=True):
        labels = [b[0] for b in bars][::-1]
        values = [b[1] for b in bars][::-1]
        colors = [
            "#2b6cb0"
            if "consentmw" in lab or title in ("request path", "tracked request (full cost)")
            else "#a0aec0"
            for lab in labels
        ]
        ax.barh(labels, values, color=colors)
        for y, b in enumerate(bars[::-1]):
            ax.text(b[1], y, f" {b[1]:.1f}", va="center", fontsize=8)
            if b[2] is not None:
                ax.plot([b[2], b[2]], [y - 0.4, y + 0.4], color="#c53030", linewidth=2)
        unit = "µs per call" if title == "record() vs peers" else "µs added per request"
        ax.set_title(
            f"{title} ({unit}; red: goal)" if any(b[2] for b in bars) else f"{title} ({unit})",
            fontsize=9,
            loc="left",
        )
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(max(values), max((b[2] or 0) for b in bars)) * 1.18)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: Path = RESULTS) -> None:
    rows, doc = load_json(results)
    if not plot(rows):
        print("matplotlib is not installed: the plot was not redrawn", file=sys.stderr)
    DOC.write_text(page(rows, doc), encoding="utf-8")
    print(f"written: {DOC} and {PLOT}")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS)

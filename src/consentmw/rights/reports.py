"""Aggregate reports: page visits and actions counted by page, day, action or site, fit to
share.

The policy allows sharing aggregate information and no personal information. A report is
computed by the sink itself (``aggregate()``: SQL ``GROUP BY`` in SQLite and PostgreSQL,
never a Python loop over rows here) and then made safe to hand out:

- **no identifier columns**: a report can only group by ``day``, ``path``, ``name``,
  ``site`` and ``type`` (:data:`REPORT_KEYS`);
- **paths pass the event redaction** (:class:`~consentmw.resolve.redact.Redactor`) again, and
  lose their query string and fragment, which is where identifiers travel in URLs
  (``?email=…``, ``?token=…``); a path segment that looks like an e-mail address, as it is
  or percent-decoded (``alice%40example.com``), becomes ``[email]``. Paths that become equal
  are added up;
- **small-cell suppression**: a cell counting fewer than ``min_count`` events (default 5) is
  not shown, because a count of one is a person; the number of hidden cells is reported, their
  counts are not.

Output as a text table, JSON or CSV. CSV cells that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'``
(:func:`neutralize_csv_cell`), so a crafted page path cannot become a formula on the
recipient's machine.

Not for analytics dashboards: a report is a snapshot for sharing, not a query interface.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from ..events import Event
from ..resolve.redact import Redactor
from ..sinks import AggregateRow, AggregatingSink

__all__ = [
    "DEFAULT_MIN_COUNT",
    "FORMATS",
    "REPORT_KEYS",
    "Report",
    "build_report",
    "clean_path",
    "neutralize_csv_cell",
]

#: What a report may group by: no identifier is among them.
REPORT_KEYS = ("day", "path", "name", "site", "type")
#: Cells counting fewer events than this are hidden.
DEFAULT_MIN_COUNT = 5
#: Output formats.
FORMATS = ("table", "json", "csv")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EMAIL_SEGMENT = re.compile(r"[^/@\s]+@[^/@\s]+\.[^/@\s]+")


def neutralize_csv_cell(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading ``'`` when it starts with one of
    ``= + - @``, a tab or a carriage return (OWASP's advice for CSV injection)."""
    if value.startswith(_FORMULA_START):
        return "'" + value
    return value


def clean_path(path: str | None, redactor: Redactor) -> str | None:
    """A path as reports show it: redacted like events, without query string and fragment,
    e-mail-like segments (percent-encoded or not) replaced by ``[email]``."""
    if path is None:
        return None
    probe = Event("-", "page_visit", None, "", "", "", path=path)
    redacted = redactor.redact(probe).path or ""
    bare = redacted.partition("?")[0].partition("#")[0]
    return "/".join("[email]" if _email_like(s) else s for s in bare.split("/"))


def _email_like(segment: str) -> bool:
    """Whether a path segment, as it is or percent-decoded (again and again: the redactor
    and the application may each have encoded it), looks like an e-mail address."""
    text = segment
    while "@" in text or "%" in text:
        if _EMAIL_SEGMENT.search(text):
            return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded  # shorter each time, so this ends
    return False


@dataclass(frozen=True, slots=True)
class Report:
    """An aggregate report: the grouping keys, the cells shown (each the key values and a
    count, largest count first), and how many cells were hidden by ``min_count``."""

    by: tuple[str, ...]
    rows: tuple[tuple[tuple[str | None, ...], int], ...]
    hidden_cells: int
    min_count: int
    type: str | None = None
    since: str | None = None
    until: str | None = None

    @property
    def total_shown(self) -> int:
        """The events counted in the cells shown."""
        return sum(count for _, count in self.rows)

    def to_dict(self) -> dict[str, object]:
        """The JSON form: ``by``, ``rows`` (objects with the keys and ``count``),
        ``hidden_cells``, ``min_count`` and the filters."""
        return {
            "by": list(self.by),
            "type": self.type,
            "since": self.since,
            "until": self.until,
            "min_count": self.min_count,
            "hidden_cells": self.hidden_cells,
            "rows": [
                {**dict(zip(self.by, keys, strict=True)), "count": count}
                for keys, count in self.rows
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_csv(self) -> str:
        """A header line and one line per cell, every text cell neutralised."""
        buffer = io.StringIO()
        # RFC 4180 line ends: a field holding CR or LF is then quoted, not split.
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([*self.by, "count"])
        for keys, count in self.rows:
            writer.writerow([neutralize_csv_cell("" if k is None else k) for k in keys] + [count])
        return buffer.getvalue()

    def to_table(self) -> str:
        """A plain text table, with a note on hidden cells."""
        from ..cli import format_table

        lines = [format_table([*self.by, "count"], [[*keys, count] for keys, count in self.rows])]
        if self.hidden_cells:
            lines.append(
                f"({self.hidden_cells} cell(s) with fewer than {self.min_count} events hidden)"
            )
        return "\n".join(lines)

    def render(self, fmt: str) -> str:
        """The report in one of :data:`FORMATS`."""
        if fmt == "json":
            return self.to_json() + "\n"
        if fmt == "csv":
            return self.to_csv()
        if fmt == "table":
            return self.to_table() + "\n"
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def build_report(
    sink: AggregatingSink,
    *,
    by: Sequence[str],
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
    min_count: int = DEFAULT_MIN_COUNT,
    redactor: Redactor | None = None,
) -> Report:
    """Aggregate with ``sink`` and make the result fit to share (see the module docstring).

    ``ValueError`` for a grouping key outside :data:`REPORT_KEYS`, no key at all, or a
    ``min_count`` below 1.
    """
    keys = tuple(by)
    if not keys:
        raise ValueError(f"group by at least one of {', '.join(REPORT_KEYS)}")
    for key in keys:
        if key not in REPORT_KEYS:
            raise ValueError(f"cannot group by {key!r}; choose from {', '.join(REPORT_KEYS)}")
    if len(set(keys)) != len(keys):
        raise ValueError("each grouping key may be given once")
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    raw: list[AggregateRow] = sink.aggregate(by=keys, type=type, since=since, until=until)
    cells: dict[tuple[str | None, ...], int] = {}
    if "path" in keys:
        redactor = redactor or Redactor()
        at = keys.index("path")
        cache: dict[str | None, str | None] = {}
        for row in raw:
            path = row.keys[at]
            if path not in cache:
                cache[path] = clean_path(path, redactor)
            cell = (*row.keys[:at], cache[path], *row.keys[at + 1 :])
            cells[cell] = cells.get(cell, 0) + row.count
    else:
        for row in raw:
            cells[row.keys] = cells.get(row.keys, 0) + row.count
    shown = [(k, n) for k, n in cells.items() if n >= min_count]
    shown.sort(key=lambda kv: (-kv[1], tuple("" if k is None else k for k in kv[0])))
    return Report(
        by=keys,
        rows=tuple(shown),
        hidden_cells=len(cells) - len(shown),
        min_count=min_count,
        type=type,
        since=since,
        until=until,
    )

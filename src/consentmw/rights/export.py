"""Export: one JSON document with everything about a subject, written as it is read.

The document is ``{"subject": {...}, "events": [...], "consent": [...]}``: the subject's
identifiers (what the policy calls "unique identifier information"), every event about them
from every sink that can query (their transactions and contact information), and their
consent-log records. :func:`write_export` never holds more than one event in memory: it
streams each sink's query straight into the file object, one event at a time, so a subject
with a million events needs no more memory than one with ten.

Duplicates: one event may match several of the subject's identifiers (a visitor id and an
e-mail address) and may be stored by several sinks. Within a sink an event is written under
the first identifier that matches it only; across sinks, the ids already written are kept as
8-byte digests in a sorted array (8 bytes per event, not the event), and only when a second
queryable sink exists.

Not an import format: nothing reads these documents back into sinks.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ..consentlog import ConsentRecord
from ..events import Event
from ..sinks import QueryableSink
from .subjects import Subject

__all__ = ["ExportSummary", "write_export"]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote: how many events and consent records."""

    events: int
    consent: int


def _id_key(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "big")


class _SeenIds:
    """Event ids already written, as sorted 64-bit digests (a collision only ever drops a
    duplicate candidate from a later sink, with odds of one in 2**64 per pair)."""

    def __init__(self) -> None:
        self._sorted = array("q")
        self._fresh = array("q")

    def __contains__(self, event_id: str) -> bool:
        key = _signed(_id_key(event_id))
        i = bisect.bisect_left(self._sorted, key)
        return i < len(self._sorted) and self._sorted[i] == key

    def add(self, event_id: str) -> None:
        self._fresh.append(_signed(_id_key(event_id)))

    def settle(self) -> None:
        """Fold the ids added since the last call into the sorted array (between sinks)."""
        if self._fresh:
            merged = array("q", sorted([*self._sorted, *self._fresh]))
            self._sorted = merged
            self._fresh = array("q")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _subject_events(
    subject: Subject, sinks: Sequence[QueryableSink], track: bool
) -> Iterator[Event]:
    seen = _SeenIds() if track and len(sinks) > 1 else None
    for index, sink in enumerate(sinks):
        earlier_vids: set[str] = set()
        earlier_emails: set[str] = set()
        for identifier in subject.identifiers:
            for event in sink.query(subject=identifier):
                if event.visitor_id in earlier_vids or (
                    event.email is not None and event.email in earlier_emails
                ):
                    continue  # written under an earlier identifier
                if seen is not None:
                    if index and event.id in seen:
                        continue
                    seen.add(event.id)
                yield event
            if "@" in identifier:
                earlier_emails.add(identifier)
            else:
                earlier_vids.add(identifier)
        if seen is not None:
            seen.settle()


def write_export(
    fp: TextIO,
    subject: Subject,
    sinks: Sequence[QueryableSink],
    consent: Iterable[ConsentRecord],
    *,
    extra: Mapping[str, Any] | None = None,
    on_event: Callable[[], None] | None = None,
) -> ExportSummary:
    """Write the export document of ``subject`` to ``fp``, streaming.

    ``sinks`` are the sinks to read events from (in order); ``consent`` the subject's
    consent-log records (an iterable, consumed once); ``extra`` more facts about the subject
    for the ``subject`` object (suppressed channels, restriction). ``on_event`` is called
    after each event written.
    """
    head = subject.to_dict()
    if extra:
        head.update(extra)
    fp.write('{"subject": ')
    fp.write(json.dumps(head, ensure_ascii=False, sort_keys=True))
    fp.write(',\n"events": [')
    events = 0
    for event in _subject_events(subject, sinks, track=True):
        fp.write("\n" if not events else ",\n")
        fp.write(json.dumps(event.to_dict(), ensure_ascii=False))
        events += 1
        if on_event is not None:
            on_event()
    fp.write("\n],\n" if events else "],\n")
    fp.write('"consent": [')
    records = 0
    for record in consent:
        fp.write("\n" if not records else ",\n")
        fp.write(json.dumps(record.to_dict(), ensure_ascii=False))
        records += 1
    fp.write("\n]}\n" if records else "]}\n")
    fp.flush()
    return ExportSummary(events=events, consent=records)

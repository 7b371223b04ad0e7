"""``memory://``: the reference sink, kept in a dict. What tests compare the others with."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from ..consentlog import GENESIS_HASH, ConsentRecord, seal
from ..errors import SinkError
from ..events import Event
from ._base import AggregateRow
from ._filters import aggregate_keys, matches, matches_subject

__all__ = ["MemorySink"]

_RECTIFIABLE = ("email", "visitor_id", "session_id", "claimed_email", "ip", "domain")


class MemorySink:
    """Events and consent records in memory, in arrival order; thread-safe.

    Supports every capability (query, erase, rectify, aggregate, consent log). Nothing
    survives the process: use it in tests and as the model the other sinks are checked against.
    """

    def __init__(self) -> None:
        self._events: dict[str, Event] = {}
        self._consent: dict[str, ConsentRecord] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemorySink events={len(self._events)} consent={len(self._consent)}>"

    @property
    def events(self) -> list[Event]:
        """A snapshot of the stored events, in arrival order."""
        with self._lock:
            return list(self._events.values())

    def write(self, events: Sequence[Event]) -> None:
        with self._lock:
            if self._closed:
                raise SinkError("memory sink is closed", retryable=False)
            for event in events:
                self._events.setdefault(event.id, event)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        for event in self.events:
            if matches(
                event, subject=subject, purpose=purpose, type=type, since=since, until=until
            ):
                yield event

    def erase(self, subject: str) -> int:
        with self._lock:
            doomed = [k for k, e in self._events.items() if matches_subject(e, subject)]
            for key in doomed:
                del self._events[key]
            return len(doomed)

    def rectify(self, subject: str, changes: Mapping[str, str | None]) -> int:
        bad = set(changes) - set(_RECTIFIABLE)
        if bad:
            raise SinkError(f"cannot rectify fields {sorted(bad)}", retryable=False)
        with self._lock:
            count = 0
            for event in self._events.values():
                if matches_subject(event, subject):
                    for key, value in changes.items():
                        setattr(event, key, value)
                    count += 1
            return count

    def aggregate(
        self,
        *,
        by: Sequence[str],
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AggregateRow]:
        counts: Counter[tuple[str | None, ...]] = Counter()
        for event in self.events:
            if matches(event, type=type, since=since, until=until):
                counts[aggregate_keys(event, by)] += 1
        return [AggregateRow(k, n) for k, n in sorted(counts.items(), key=_row_order)]

    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        with self._lock:
            if self._closed:
                raise SinkError("memory sink is closed", retryable=False)
            if record.id in self._consent:
                return self._consent[record.id]
            head = next(reversed(self._consent.values())).hash if self._consent else GENESIS_HASH
            sealed = seal(record, head)
            self._consent[record.id] = sealed
            return sealed

    def consent_records(self, *, subject: str | None = None) -> Iterator[ConsentRecord]:
        with self._lock:
            records = list(self._consent.values())
        for record in records:
            if subject is None or record.subject == subject:
                yield record


def _row_order(item: tuple[tuple[str | None, ...], int]) -> tuple[tuple[str, ...], int]:
    return tuple("" if k is None else k for k in item[0]), item[1]

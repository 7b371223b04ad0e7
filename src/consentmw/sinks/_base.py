"""The sink protocol: ``write`` and ``close``, plus optional capabilities.

A sink stores events. ``write(events)`` must be idempotent by event id (writing the same event
twice stores it once) and raise :class:`~consentmw.SinkError` on failure, with
``retryable=False`` only when the same data will always fail. Capabilities a sink may add
are separate protocols, checked with ``isinstance`` at start-up: :class:`QueryableSink`,
:class:`ErasableSink`, :class:`RectifiableSink`, :class:`AggregatingSink` and
:class:`ConsentLogSink`.

Subjects: a sink matches ``subject`` against an event's ``visitor_id`` and its ``email``
(e-mail addresses are stored lower-cased). Linking a visitor id to an e-mail address is the
job of the rights layer, through ``identify`` events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..consentlog import ConsentRecord
from ..events import Event

__all__ = [
    "AggregateRow",
    "AggregatingSink",
    "ConsentLogSink",
    "ErasableSink",
    "QueryableSink",
    "RectifiableSink",
    "Sink",
]


@runtime_checkable
class Sink(Protocol):
    """Stores events. The only two methods every sink has."""

    def write(self, events: Sequence[Event]) -> None:
        """Store ``events``; idempotent by ``Event.id``; raise ``SinkError`` on failure."""

    def close(self) -> None:
        """Release connections and files. Writing after ``close`` raises ``SinkError``."""


@runtime_checkable
class QueryableSink(Protocol):
    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterable[Event]:
        """Events matching every given filter, oldest first, streamed.

        ``purpose`` keeps events whose collection-time ``purposes`` include it; ``since`` /
        ``until`` are ISO-8601 timestamps (``since`` inclusive, ``until`` exclusive).
        """


@runtime_checkable
class ErasableSink(Protocol):
    def erase(self, subject: str) -> int:
        """Delete every event about ``subject``; return how many were deleted."""


@runtime_checkable
class RectifiableSink(Protocol):
    def rectify(self, subject: str, changes: Mapping[str, str | None]) -> int:
        """Set the given identifier fields (``email``, ``visitor_id``…) on every event about
        ``subject``; return how many events changed."""


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """One cell of an aggregate report: the grouping values and a count."""

    keys: tuple[str | None, ...]
    count: int


@runtime_checkable
class AggregatingSink(Protocol):
    def aggregate(
        self,
        *,
        by: Sequence[str],
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AggregateRow]:
        """Count events grouped by ``by`` (``path``, ``name``, ``site``, ``type``, ``day``),
        computed by the store itself (SQL ``GROUP BY``), never by loading rows."""


@runtime_checkable
class ConsentLogSink(Protocol):
    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        """Append ``record`` after the current head of the chain, atomically (other
        processes may append at the same time), and return it sealed
        (``prev_hash`` / ``hash`` filled in). Idempotent by record id."""

    def consent_records(self, *, subject: str | None = None) -> Iterable[ConsentRecord]:
        """Records in log order, optionally only those of one pseudonymous subject."""

"""A third-party consentmw sink: every event as one JSON file in a directory.

For a backup or export job that picks files up from a directory. It writes, queries and
erases; it has no rectify, aggregate or consent log, so keep ``sinks.consent_log`` elsewhere.
One process writes a directory (the index of stored ids lives in that process).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from consentmw import Event, SinkError


class DirectorySink:
    """Events as ``<root>/<arrival number>.json``, in arrival order."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        self._lock = threading.Lock()
        self._ids: dict[str, Path] | None = None  # event id -> file, read on first use
        self._next = 0
        self._closed = False

    # -- the protocol: write and close -------------------------------------------------

    def write(self, events: Sequence[Event]) -> None:
        """Store ``events``; an id already stored is skipped (idempotent by id)."""
        with self._lock:
            if self._closed:
                raise SinkError("directory sink is closed", retryable=False)
            ids = self._index()
            for event in events:
                if event.id in ids:
                    continue
                try:
                    data = event.to_json().encode("utf-8")
                except (TypeError, ValueError) as exc:
                    # The same event will always fail: the dispatcher dead-letters it.
                    raise SinkError(f"cannot encode {event.id}: {exc}", retryable=False) from exc
                path = self._root / f"{self._next:016d}.json"
                tmp = path.with_suffix(".tmp")
                try:
                    tmp.write_bytes(data)
                    os.replace(tmp, path)  # readers never see half a file
                except OSError as exc:
                    # Disk full, permissions, a missing mount: may pass later; retried.
                    raise SinkError(f"cannot write {path}: {exc}") from exc
                ids[event.id] = path
                self._next += 1

    def close(self) -> None:
        """Idempotent; writing afterwards raises ``SinkError``."""
        with self._lock:
            self._closed = True

    # -- optional capabilities: query and erase ---------------------------------------

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Matching events in arrival order, one file at a time."""
        with self._lock:
            paths = sorted(self._index().values())
        for path in paths:
            try:
                event = Event.from_json(path.read_bytes())
            except FileNotFoundError:  # erased since the listing
                continue
            except ValueError as exc:
                raise SinkError(f"{path} is not an event: {exc}", retryable=False) from exc
            if subject is not None and not _about(event, subject):
                continue
            if purpose is not None and purpose not in event.purposes:
                continue
            if type is not None and event.type != type:
                continue
            if since is not None and event.ts < since:
                continue
            if until is not None and event.ts >= until:
                continue
            yield event

    def erase(self, subject: str) -> int:
        """Delete every event about ``subject``; return how many."""
        doomed = [event.id for event in self.query(subject=subject)]
        with self._lock:
            ids = self._index()
            for event_id in doomed:
                try:
                    ids.pop(event_id).unlink()
                except (KeyError, FileNotFoundError):
                    continue
                except OSError as exc:
                    raise SinkError(f"cannot erase {event_id}: {exc}") from exc
        return len(doomed)

    # -- helpers ------------------------------------------------------------------------

    def _index(self) -> dict[str, Path]:
        """Stored ids and their files (read from the directory once); the lock is held."""
        if self._ids is None:
            try:
                self._root.mkdir(parents=True, exist_ok=True)
                paths = sorted(self._root.glob("*.json"))
                ids = {Event.from_json(p.read_bytes()).id: p for p in paths}
            except (OSError, ValueError) as exc:
                raise SinkError(f"cannot read {self._root}: {exc}") from exc
            self._ids = ids
            self._next = int(paths[-1].stem) + 1 if paths else 0
        return self._ids


def _about(event: Event, subject: str) -> bool:
    """A subject is a visitor id, or an e-mail address compared lower-cased."""
    return event.visitor_id == subject or (
        event.email is not None and event.email == subject.lower()
    )

"""The spool: a local SQLite file holding events a sink could not take yet.

When a sink is down, the dispatcher writes its batches here instead of dropping them, and
replays them, oldest first, once the sink answers again. A row is deleted only after the
sink acknowledged it, so a crash between the two re-delivers the row and the sink's
idempotency by event id removes the duplicate. Events that a sink rejects for good (a
"poison" event) go to the dead-letter table, with the error, for an operator to look at.

Several processes may share one spool file (WAL mode, busy timeout): rows name their sink.
Consent-log records that could not be written synchronously are spooled the same way.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from .consentlog import ConsentRecord
from .events import Event

__all__ = ["Spool"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    spooled_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_sink ON spool (sink, seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    record TEXT NOT NULL,
    spooled_at REAL NOT NULL
);
"""


def _retry_locked(operation: Callable[[], object], attempts: int = 50) -> None:
    """Run ``operation``, retrying while another process holds the file: switching to WAL
    does not wait on the busy timeout, so two processes opening the spool at once collide."""
    for attempt in range(attempts):
        try:
            operation()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


class Spool:
    """Spooled events and dead letters in one SQLite file (``path``), or in memory when
    ``path`` is ``None`` (nothing then survives the process)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._pid = 0
        # fork() while another thread is inside a transaction would leave SQLite's
        # in-process lock bookkeeping claiming a lock in the child forever: hold our lock
        # across the fork, so no operation is in flight.
        ref = weakref.ref(self)

        def before() -> None:
            spool = ref()
            if spool is not None:
                spool._lock.acquire()

        def after_parent() -> None:
            spool = ref()
            if spool is not None:
                spool._lock.release()

        def after_child() -> None:
            spool = ref()
            if spool is not None:
                spool.after_fork()

        os.register_at_fork(before=before, after_in_parent=after_parent, after_in_child=after_child)

    def _db(self) -> sqlite3.Connection:
        # One connection per process: a forked child must not use its parent's.
        if self._conn is None or self._pid != os.getpid():
            target = ":memory:" if self.path is None else self.path
            if self.path is not None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                target, timeout=10.0, check_same_thread=False, isolation_level=None
            )
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            _retry_locked(lambda: conn.executescript(_SCHEMA))
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    def after_fork(self) -> None:
        """Forget the parent's connection and lock (called in a forked child).

        The parent's connection object is kept alive, never closed here: SQLite must not
        close (checkpoint, unlock) a connection in a process other than the one that
        opened it; the child opens its own.
        """
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None
        self._lock = threading.Lock()

    def put(self, sink: str, events: Sequence[Event]) -> None:
        """Store events for ``sink``; durable when this returns (for a file spool)."""
        now = time.time()
        rows = [(sink, e.to_json(), now) for e in events]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO spool (sink, event, spooled_at) VALUES (?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def take(self, sink: str, limit: int) -> list[tuple[int, Event]]:
        """The oldest ``limit`` spooled events of ``sink`` (they stay until :meth:`ack`).
        A row that no longer parses is moved to the dead letters."""
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT seq, event FROM spool WHERE sink = ? ORDER BY seq LIMIT ?",
                    (sink, limit),
                )
                .fetchall()
            )
        out: list[tuple[int, Event]] = []
        broken: list[tuple[int, str]] = []
        for seq, text in rows:
            try:
                out.append((seq, Event.from_json(text)))
            except ValueError:
                broken.append((seq, text))
        for seq, text in broken:
            self.dead_letter(sink, [text], "spooled row does not parse")
            self.ack([seq])
        return out

    def ack(self, seqs: Sequence[int]) -> None:
        """Delete rows the sink acknowledged."""
        if not seqs:
            return
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def count(self, sink: str | None = None) -> int:
        with self._lock:
            if sink is None:
                row = self._db().execute("SELECT count(*) FROM spool").fetchone()
            else:
                row = (
                    self._db()
                    .execute("SELECT count(*) FROM spool WHERE sink = ?", (sink,))
                    .fetchone()
                )
        return int(row[0])

    def sinks_with_rows(self) -> list[str]:
        with self._lock:
            rows = self._db().execute("SELECT DISTINCT sink FROM spool").fetchall()
        return [r[0] for r in rows]

    def dead_letter(self, sink: str, events: Sequence[Event | str], error: str) -> None:
        now = time.time()
        rows = [(sink, e if isinstance(e, str) else e.to_json(), error[:500], now) for e in events]
        with self._lock:
            self._db().executemany(
                "INSERT INTO dead_letter (sink, event, error, failed_at) VALUES (?, ?, ?, ?)", rows
            )

    def dead_letters(self, sink: str | None = None) -> list[tuple[str, str]]:
        """``(event JSON, error)`` of every dead letter (of one sink)."""
        with self._lock:
            if sink is None:
                rows = self._db().execute("SELECT event, error FROM dead_letter ORDER BY seq")
            else:
                rows = self._db().execute(
                    "SELECT event, error FROM dead_letter WHERE sink = ? ORDER BY seq", (sink,)
                )
            return [(r[0], r[1]) for r in rows.fetchall()]

    def put_consent(self, sink: str, record: ConsentRecord) -> None:
        with self._lock:
            self._db().execute(
                "INSERT INTO consent_spool (sink, record, spooled_at) VALUES (?, ?, ?)",
                (sink, json.dumps(record.to_dict()), time.time()),
            )

    def take_consent(self, sink: str, limit: int) -> list[tuple[int, ConsentRecord]]:
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT seq, record FROM consent_spool WHERE sink = ? ORDER BY seq LIMIT ?",
                    (sink, limit),
                )
                .fetchall()
            )
        return [(seq, ConsentRecord.from_dict(json.loads(text))) for seq, text in rows]

    def ack_consent(self, seqs: Sequence[int]) -> None:
        with self._lock:
            self._db().executemany("DELETE FROM consent_spool WHERE seq = ?", [(s,) for s in seqs])

    def consent_count(self, sink: str | None = None) -> int:
        with self._lock:
            if sink is None:
                row = self._db().execute("SELECT count(*) FROM consent_spool").fetchone()
            else:
                row = (
                    self._db()
                    .execute("SELECT count(*) FROM consent_spool WHERE sink = ?", (sink,))
                    .fetchone()
                )
        return int(row[0])

    def erase(self, match: str) -> int:
        """Delete spooled events whose visitor id or e-mail is ``match`` (the rights layer's
        erase must reach data not yet written)."""
        from .sinks._filters import matches_subject

        removed: list[int] = []
        with self._lock:
            rows = self._db().execute("SELECT seq, event FROM spool").fetchall()
        for seq, text in rows:
            try:
                event = Event.from_json(text)
            except ValueError:
                continue
            if matches_subject(event, match):
                removed.append(seq)
        self.ack(removed)
        return len(removed)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

"""The parts of the spool that ``Spool`` itself offers no verb for: dead letters to erase and
spooled events to rectify.

``Spool.erase`` removes a subject's events waiting for a sink, but the spool file also keeps
dead letters (events a sink refused for good) and offers no way to change a spooled event.
An erasure must reach the first and a rectification the second, or the old data comes back
when the spool is replayed (or an operator reads the dead letters). These helpers use the
spool's own connection and lock, the same way its methods do, and do nothing when the spool
is not the SQLite-backed kind they know.

Not for anything else: everything else goes through ``Spool``'s public methods.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from ..events import Event

__all__ = ["erase_dead_letters", "rectify_spooled"]

log = logging.getLogger("consentmw.rights")


def _connection(spool: Any) -> tuple[Any, Callable[[], sqlite3.Connection]] | None:
    lock = getattr(spool, "_lock", None)
    db = getattr(spool, "_db", None)
    if lock is None or db is None:
        log.warning("consentmw rights: unknown spool type; dead letters and rectify skipped")
        return None
    return lock, db


def erase_dead_letters(spool: Any, match: Callable[[Event], bool]) -> int:
    """Delete the dead letters that are events ``match`` accepts; return how many."""
    found = _connection(spool)
    if found is None:
        return 0
    lock, db = found
    with lock:
        conn = db()
        rows = conn.execute("SELECT seq, event FROM dead_letter").fetchall()
        doomed = []
        for seq, text in rows:
            try:
                event = Event.from_json(text)
            except ValueError:
                continue  # not an event (a failed redaction keeps the id only)
            if match(event):
                doomed.append((seq,))
        if doomed:
            conn.executemany("DELETE FROM dead_letter WHERE seq = ?", doomed)
    return len(doomed)


def rectify_spooled(spool: Any, old_email: str, new_email: str) -> int:
    """Replace ``old_email`` by ``new_email`` in spooled events; return how many changed."""
    found = _connection(spool)
    if found is None:
        return 0
    lock, db = found
    changed = []
    with lock:
        conn = db()
        rows = conn.execute("SELECT seq, event FROM spool").fetchall()
        for seq, text in rows:
            try:
                event = Event.from_json(text)
            except ValueError:
                continue
            if event.email == old_email:
                event.email = new_email
                changed.append((event.to_json(), seq))
        if changed:
            conn.executemany("UPDATE spool SET event = ? WHERE seq = ?", changed)
    return len(changed)

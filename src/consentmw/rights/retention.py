"""Retention of the consent log: removing records older than ``rights.consent_retention_days``
from the start of the log without losing the ability to verify the rest.

Consent-log records are proof of consent and name a pseudonymous id only, so an erasure
leaves them in place; but proof is needed only as long as the consent it proves can be
questioned, and ``rights.consent_retention_days`` (three years by default) says how long that
is. :func:`prune_consent_log` removes the *oldest* records past that age — a prefix of the
log, never a record from its middle, and never the newest record, which the next append
links to — after saving, in the rights store, an **anchor**: the hash of the last record
removed and how many were removed in all. :func:`~consentmw.rights.verify_log` then starts
the chain at the anchor instead of the genesis hash. The anchor is saved before the records
are deleted, so an interrupted prune leaves a log that still verifies (from the genesis
hash) and is finished by the next run.

A broken chain is never pruned: the break is evidence, and removing records around it would
hide it. Supported for the consent logs in ``sqlite://``, ``postgresql://`` and ``jsonl://``;
a ``memory://`` log lives as long as its process anyway.

Not for erasure: records are removed by age, for everybody, never by subject.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from typing import Any

from ..consentlog import GENESIS_HASH, ConsentRecord
from ..errors import ConsentMWError
from ..sinks import url_path
from .store import RightsStore, prune_postgres_consent_log

__all__ = ["ANCHOR_KEY", "Anchor", "PruneResult", "load_anchor", "prune_consent_log"]

#: Where the anchor lives in the rights store.
ANCHOR_KEY = "consent_anchor"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where a pruned log starts: the hash of the last record removed, how many records were
    removed in all, and the time of the last one."""

    hash: str
    records: int
    ts: str

    def to_json(self) -> str:
        return json.dumps({"hash": self.hash, "records": self.records, "ts": self.ts})


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune_consent_log` removed (``pruned`` records) and the anchor now in
    force (``None``: nothing was ever pruned)."""

    pruned: int
    anchor: Anchor | None


def load_anchor(store: RightsStore) -> Anchor | None:
    """The anchor saved by earlier prunes, or ``None``."""
    text = store.get_meta(ANCHOR_KEY)
    if text is None:
        return None
    data = json.loads(text)
    return Anchor(str(data["hash"]), int(data["records"]), str(data["ts"]))


class _Plan:
    """The prefix to remove: how many records, and the last one's hash and time."""

    def __init__(self, count: int, last_hash: str, last_ts: str) -> None:
        self.count = count
        self.last_hash = last_hash
        self.last_ts = last_ts


def _plan(records: list[ConsentRecord] | Any, cutoff: str) -> _Plan | None:
    """Walk records in log order: the prefix older than ``cutoff``, keeping the newest."""
    count = 0
    last: ConsentRecord | None = None
    previous: ConsentRecord | None = None
    for record in records:
        if previous is not None:
            # ``previous`` is not the newest record: it may go if it is old enough.
            if previous.ts >= cutoff:
                break
            count += 1
            last = previous
        previous = record
    _close(records)
    if last is None:
        return None
    return _Plan(count, last.hash, last.ts)


def _close(iterable: Any) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def _save_anchor(store: RightsStore, plan: _Plan) -> Anchor:
    earlier = load_anchor(store)
    anchor = Anchor(plan.last_hash, (earlier.records if earlier else 0) + plan.count, plan.last_ts)
    store.set_meta(ANCHOR_KEY, anchor.to_json())
    return anchor


def prune_consent_log(url: str, log: Any, store: RightsStore, *, cutoff: str) -> PruneResult:
    """Remove the records of the consent log at ``url`` (the open sink ``log``) older than
    ``cutoff`` (an event timestamp), from the start, keeping the newest record; save the
    anchor in ``store`` first. The caller has verified the chain."""
    scheme = url.partition("://")[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "jsonl"):
        raise ConsentMWError(f"pruning is not supported for {scheme}:// consent logs")
    plan = _plan(log.consent_records(), cutoff)
    if plan is None:
        return PruneResult(0, load_anchor(store))
    anchor = _save_anchor(store, plan)
    if scheme == "sqlite":
        removed = _prune_sqlite(url_path(url), plan)
    elif scheme == "jsonl":
        removed = _prune_jsonl(url_path(url), plan)
    else:
        removed = prune_postgres_consent_log(url, plan.last_hash)
    return PruneResult(removed, anchor)


def _prune_sqlite(path: str, plan: _Plan) -> int:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the sink appends under the same lock
        row = conn.execute("SELECT seq FROM consent_log WHERE hash = ?", (plan.last_hash,))
        found = row.fetchone()
        if found is None:
            conn.execute("ROLLBACK")
            return 0
        count = conn.execute("DELETE FROM consent_log WHERE seq <= ?", (found[0],)).rowcount
        conn.execute("COMMIT")
        return int(count)
    finally:
        conn.close()


def _prune_jsonl(events_path: str, plan: _Plan) -> int:
    path = events_path + ".consent.jsonl"
    directory = os.path.dirname(os.path.abspath(path))
    fd_lock = os.open(events_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd_lock, fcntl.LOCK_EX)  # the sink's own lock: no append meanwhile
        with open(path, "rb") as fh:
            lines = fh.readlines()
        cut = None
        for index, line in enumerate(lines):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if ConsentRecord.from_dict(json.loads(line)).hash == plan.last_hash:
                    cut = index + 1
                    break
        if cut is None:
            return 0
        fd, tmp = tempfile.mkstemp(prefix=".cmw-consent-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.writelines(lines[cut:])
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)  # other processes see the new inode and re-read
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return cut
    finally:
        os.close(fd_lock)


def chain_start(anchor: Anchor | None) -> str:
    """The hash the first record of the log must follow."""
    return GENESIS_HASH if anchor is None else anchor.hash

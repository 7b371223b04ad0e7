"""Proof of consent: verifying the consent log's hash chain, and one subject's decisions.

:func:`verify_log` walks every record of the consent log once, in log order, holding only the
previous hash, and reports each break (:class:`~consentmw.consentlog.ChainBreak`: a record
whose hash does not match its content was *edited*; one that does not follow the record
before it marks a *gap*: a record deleted, inserted or moved). The chain cannot show that
records were cut off its end, so the result carries the latest hash: an operator who keeps it
elsewhere (``consentmw receipts verify`` prints it) can later check, with ``--expect``, that
the log still reaches it.

:func:`decision_rows` turns a subject's records into what ``consentmw receipts show`` prints:
time, policy version, purposes, mechanism.

Not for repairing a broken chain: a break is evidence, and is reported, never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..consentlog import GENESIS_HASH, ChainBreak, ConsentRecord, chain_hash
from ..events import parse_ts

__all__ = ["ChainReport", "decision_rows", "verify_log"]


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of :func:`verify_log`.

    ``records``: how many were read; ``latest_hash``: the hash of the last one (the genesis
    hash for an empty log); ``breaks``: every break found (empty: the chain holds);
    ``expected_found``: whether the ``expect`` hash was met (``None`` when none was given);
    ``past_retention``: records older than the retention period.
    """

    records: int
    latest_hash: str
    breaks: tuple[ChainBreak, ...] = ()
    expected_found: bool | None = None
    past_retention: int = 0
    first_ts: str | None = None
    last_ts: str | None = None

    @property
    def ok(self) -> bool:
        """The chain holds (and reaches the expected hash, when one was given)."""
        return not self.breaks and self.expected_found is not False


def verify_log(
    records: Iterable[ConsentRecord],
    *,
    expect: str | None = None,
    start: str | None = None,
    retention_cutoff: float | None = None,
    on_record: Callable[[], None] | None = None,
    max_breaks: int = 1000,
) -> ChainReport:
    """Walk ``records`` in log order (streamed) and check the chain.

    ``expect``: a hash noted earlier, which must still be in the chain (a log cut back before
    it fails). ``retention_cutoff``: epoch seconds; records older are counted as past
    retention. ``start``: the anchor of a pruned log (the hash of the last record removed;
    see :mod:`consentmw.rights.retention`): the first record may follow it, or the genesis
    hash when a prune was interrupted before it removed anything. At most ``max_breaks``
    breaks are kept (a log rewritten wholesale breaks at every record).
    """
    breaks: list[ChainBreak] = []
    expected_prev = start or GENESIS_HASH
    count = 0
    wanted = None if expect is None else expect.strip().lower()
    found = None if wanted is None else wanted in (GENESIS_HASH, start)
    past = 0
    first_ts: str | None = None
    last_ts: str | None = None
    for position, record in enumerate(records):
        count += 1
        if on_record is not None:
            on_record()
        if first_ts is None:
            first_ts = record.ts
        last_ts = record.ts
        if position == 0 and record.prev_hash == GENESIS_HASH:
            expected_prev = GENESIS_HASH  # nothing pruned (yet)
        if record.prev_hash != expected_prev and len(breaks) < max_breaks:
            breaks.append(
                ChainBreak(
                    position,
                    record.id,
                    "gap",
                    f"prev_hash {record.prev_hash[:12]}… does not follow the record before "
                    f"({expected_prev[:12]}…)",
                )
            )
        if chain_hash(record, record.prev_hash) != record.hash and len(breaks) < max_breaks:
            breaks.append(
                ChainBreak(position, record.id, "edited", "hash does not match the content")
            )
        if wanted is not None and record.hash == wanted:
            found = True
        if retention_cutoff is not None:
            try:
                if parse_ts(record.ts) < retention_cutoff:
                    past += 1
            except ValueError:
                pass  # an unreadable time is the edit check's business
        expected_prev = record.hash
    return ChainReport(
        records=count,
        latest_hash=expected_prev,
        breaks=tuple(breaks),
        expected_found=found,
        past_retention=past,
        first_ts=first_ts,
        last_ts=last_ts,
    )


def decision_rows(records: Iterable[ConsentRecord]) -> list[dict[str, Any]]:
    """One row per record, oldest first: ``time``, ``policy_version``, ``purposes``,
    ``mechanism``, ``site``, ``receipt`` (the pseudonymous subject) and ``record``."""
    rows = [
        {
            "time": r.ts,
            "policy_version": r.policy_version,
            "purposes": sorted(r.granted),
            "mechanism": r.mechanism,
            "site": r.site,
            "receipt": r.subject,
            "record": r.id,
        }
        for r in records
    ]
    rows.sort(key=lambda row: str(row["time"]))
    return rows

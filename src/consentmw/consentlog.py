"""The consent log: one hash-chained record per decision, the proof GDPR Art. 7(1) asks for.

Each record carries the hash of the record before it (``prev_hash``) and its own ``hash``, a
hex SHA-256 over a canonical JSON form of its fields and ``prev_hash``. Editing a record
changes its hash; deleting or reordering records breaks the chain. :func:`verify_chain` walks
the records and reports every break. The chain cannot prove that records were cut off the
*end* of the log; keep the latest hash elsewhere (``consentmw receipts verify`` prints it) if
that matters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "MECHANISMS",
    "ChainBreak",
    "ConsentRecord",
    "chain_hash",
    "seal",
    "verify_chain",
]

#: ``prev_hash`` of the first record.
GENESIS_HASH = "0" * 64

#: How a decision was made.
MECHANISMS = (
    "accept_all",
    "reject_all",
    "custom",
    "withdraw",
    "notice",
    "gpc",
    "optout",
)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One decision. ``subject`` is pseudonymous: the random consent id kept in the visitor's
    prefs cookie, never an e-mail or IP address."""

    id: str
    ts: str
    site: str
    policy_version: str
    granted: tuple[str, ...]
    mechanism: str
    subject: str
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "site": self.site,
            "policy_version": self.policy_version,
            "granted": list(self.granted),
            "mechanism": self.mechanism,
            "subject": self.subject,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsentRecord:
        granted = data.get("granted") or ()
        if isinstance(granted, str):
            granted = json.loads(granted)
        return cls(
            id=str(data["id"]),
            ts=str(data["ts"]),
            site=str(data["site"]),
            policy_version=str(data["policy_version"]),
            granted=tuple(str(g) for g in granted),
            mechanism=str(data["mechanism"]),
            subject=str(data["subject"]),
            prev_hash=str(data.get("prev_hash") or GENESIS_HASH),
            hash=str(data.get("hash") or ""),
        )


def chain_hash(record: ConsentRecord, prev_hash: str) -> str:
    """The hash a record must carry when it follows a record whose hash is ``prev_hash``."""
    canonical = json.dumps(
        [
            record.id,
            record.ts,
            record.site,
            record.policy_version,
            sorted(record.granted),
            record.mechanism,
            record.subject,
            prev_hash,
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def seal(record: ConsentRecord, prev_hash: str) -> ConsentRecord:
    """``record`` linked after ``prev_hash``, with its own hash filled in."""
    from dataclasses import replace

    return replace(record, prev_hash=prev_hash, hash=chain_hash(record, prev_hash))


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """One place where the chain does not hold. ``kind`` is ``edited`` (the record's hash
    does not match its content) or ``gap`` (it does not follow the record before it: a record
    was deleted, inserted or moved)."""

    position: int
    record_id: str
    kind: str
    detail: str


def verify_chain(records: Iterable[ConsentRecord]) -> list[ChainBreak]:
    """Walk records in log order and return every break (empty list: the chain holds)."""
    breaks: list[ChainBreak] = []
    expected_prev = GENESIS_HASH
    for position, record in enumerate(records):
        if record.prev_hash != expected_prev:
            breaks.append(
                ChainBreak(
                    position,
                    record.id,
                    "gap",
                    f"prev_hash {record.prev_hash[:12]}… does not match the record before "
                    f"({expected_prev[:12]}…)",
                )
            )
        if chain_hash(record, record.prev_hash) != record.hash:
            breaks.append(
                ChainBreak(position, record.id, "edited", "hash does not match the content")
            )
        expected_prev = record.hash
    return breaks

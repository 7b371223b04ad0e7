"""Event filters shared by the sinks that filter in Python (memory, JSONL)."""

from __future__ import annotations

from collections.abc import Sequence

from ..events import Event

__all__ = ["AGGREGATE_KEYS", "aggregate_keys", "matches", "matches_subject"]

#: What reports may group by. No identifier is among them.
AGGREGATE_KEYS = ("day", "path", "name", "site", "type")


def matches_subject(event: Event, subject: str) -> bool:
    """Is ``event`` about ``subject`` (a visitor id or a lower-cased e-mail address)?"""
    return event.visitor_id == subject or (
        event.email is not None and event.email == subject.lower()
    )


def matches(
    event: Event,
    *,
    subject: str | None = None,
    purpose: str | None = None,
    type: str | None = None,  # noqa: A002
    since: str | None = None,
    until: str | None = None,
) -> bool:
    """Does ``event`` pass every filter given (``None`` = no filter)?"""
    if subject is not None and not matches_subject(event, subject):
        return False
    if purpose is not None and purpose not in event.purposes:
        return False
    if type is not None and event.type != type:
        return False
    if since is not None and event.ts < since:
        return False
    return until is None or event.ts < until


def aggregate_keys(event: Event, by: Sequence[str]) -> tuple[str | None, ...]:
    """The grouping values of ``event`` for the keys ``by``."""
    out: list[str | None] = []
    for key in by:
        if key == "day":
            out.append(event.ts[:10])
        elif key in AGGREGATE_KEYS:
            out.append(getattr(event, key))
        else:
            raise ValueError(f"cannot group by {key!r}; choose from {', '.join(AGGREGATE_KEYS)}")
    return tuple(out)

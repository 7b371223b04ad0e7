"""Event filters shared by the sinks that filter in Python (memory, JSONL, Redis), and the
checks every sink applies to ``rectify`` and ``aggregate`` arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import SinkError
from ..events import Event

__all__ = [
    "AGGREGATE_KEYS",
    "RECTIFIABLE_FIELDS",
    "aggregate_keys",
    "check_aggregate_keys",
    "check_rectify",
    "matches",
    "matches_subject",
]

#: What reports may group by. No identifier is among them.
AGGREGATE_KEYS = ("day", "path", "name", "site", "type")

#: The identifier fields ``rectify`` may change. Everything else is a fact about what happened
#: and is not "incorrect personal data" a subject could ask to correct.
RECTIFIABLE_FIELDS = ("email", "visitor_id", "session_id", "claimed_email", "ip", "domain")


def check_rectify(changes: Mapping[str, object]) -> None:
    """Raise a non-retryable ``SinkError`` unless every key of ``changes`` is in
    :data:`RECTIFIABLE_FIELDS` and every value is a string or ``None``."""
    bad = set(changes) - set(RECTIFIABLE_FIELDS)
    if bad:
        raise SinkError(
            f"cannot rectify fields {sorted(bad)}; only {', '.join(RECTIFIABLE_FIELDS)}",
            retryable=False,
        )
    for key, value in changes.items():
        if value is not None and not isinstance(value, str):
            raise SinkError(f"rectify value for {key!r} must be a string or None", retryable=False)


def check_aggregate_keys(by: Sequence[str]) -> None:
    """Raise ``ValueError`` for a grouping key outside :data:`AGGREGATE_KEYS`."""
    for key in by:
        if key not in AGGREGATE_KEYS:
            raise ValueError(f"cannot group by {key!r}; choose from {', '.join(AGGREGATE_KEYS)}")


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
    type: str | None = None,
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

"""Data subjects: who a rights request is about, and every identifier that is theirs.

A request names a person by an e-mail address, a visitor id or the consent id shown on the
preferences page as their receipt. Events name them by ``visitor_id`` and ``email``; consent
records by the pseudonymous consent id. The links between those come from the events
themselves: an ``identify`` event (or any event carrying both) ties a visitor id to an
e-mail address, and a ``consent`` event carries the consent id (``props.consent_id``) of the
visitor who made that decision. :func:`resolve_subject` follows those links until nothing new
turns up (the closure) and returns a :class:`Subject` holding only identifiers, never events,
so a subject with a million events costs a few sets of strings.

The closure is transitive on purpose: a person who used two browsers and identified with one
address in both is one subject. Its price is that two people who identified with each other's
address (a shared computer) become one subject too; look at ``Subject.visitor_ids`` before
erasing when in doubt (``consentmw export`` prints them).

Not for looking people up by anything else (names, IP addresses): those are not identifiers
here, and guessing at them would hand out someone else's data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConsentMWError
from ..events import Event
from ..resolve.email import normalize_email
from ..sinks import QueryableSink

__all__ = ["Subject", "SubjectError", "parse_subject", "resolve_subject"]

# Visitor, session and consent ids are secrets.token_urlsafe(16): 22 url-safe characters.
# Other sites (or older versions) may use other lengths; keep to what cannot be mistaken.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{8,64}")


class SubjectError(ConsentMWError, ValueError):
    """A rights request names no valid subject (not an e-mail address or identifier)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """A data subject: the request as given, and every identifier found to be theirs.

    ``visitor_ids`` and ``emails`` are what sinks match events on; ``consent_ids`` are the
    pseudonymous subjects of their consent-log records; ``events`` is how many events about
    them the sinks returned while resolving (across sinks, duplicates included).
    """

    query: str
    visitor_ids: frozenset[str]
    emails: frozenset[str]
    consent_ids: frozenset[str]
    events: int = 0

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every identifier the sinks match on (visitor ids, then e-mail addresses), sorted
        so that repeated runs query in the same order."""
        return (*sorted(self.visitor_ids), *sorted(self.emails))

    @property
    def found(self) -> bool:
        """Did any sink or the consent log know the subject?"""
        return bool(self.events or self.consent_ids)

    def matches(self, event: Event) -> bool:
        """Is ``event`` about this subject?"""
        return event.visitor_id in self.visitor_ids or (
            event.email is not None and event.email in self.emails
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON form (sorted lists)."""
        return {
            "query": self.query,
            "visitor_ids": sorted(self.visitor_ids),
            "emails": sorted(self.emails),
            "consent_ids": sorted(self.consent_ids),
        }


def parse_subject(text: object) -> str:
    """The canonical form of a subject as given: a normalised e-mail address, or a visitor or
    consent id. :class:`SubjectError` for anything else (never a guess)."""
    if not isinstance(text, str):
        raise SubjectError("a subject is an e-mail address, a visitor id or a consent id")
    text = text.strip()
    if "@" in text:
        email = normalize_email(text)
        if email is None:
            raise SubjectError("not a valid e-mail address")
        return email
    if not _IDENTIFIER.fullmatch(text):
        raise SubjectError(
            "a subject is an e-mail address, a visitor id or a consent id "
            "(8 to 64 letters, digits, '-' or '_')"
        )
    return text


def _consent_id(event: Event) -> str | None:
    if event.type != "consent":
        return None
    value = event.props.get("consent_id") if isinstance(event.props, dict) else None
    return value if isinstance(value, str) and value else None


def resolve_subject(
    text: str,
    sinks: Sequence[QueryableSink],
    *,
    known_consent_ids: Callable[[str], bool] | None = None,
    on_event: Callable[[], None] | None = None,
) -> Subject:
    """The closure of identifiers linked to ``text`` through the events of ``sinks``.

    ``text`` is parsed by :func:`parse_subject`. An identifier that is not an e-mail address
    may be a consent id: the consent events carrying it link it to its visitor id, and
    ``known_consent_ids`` (the consent log) says whether it has records of its own.
    ``on_event`` is called once per event read (a progress bar).
    """
    query = parse_subject(text)
    visitor_ids: set[str] = set()
    emails: set[str] = set()
    consent_ids: set[str] = set()
    count = 0
    pending: list[str] = []

    def add(identifier: str | None, kind: set[str]) -> None:
        if identifier and identifier not in kind:
            kind.add(identifier)
            pending.append(identifier)

    if "@" in query:
        add(query, emails)
    else:
        add(query, visitor_ids)
        # A consent id: its consent events name the visitor (when tracking was granted).
        for sink in sinks:
            for event in sink.query(type="consent"):
                if _consent_id(event) == query:
                    consent_ids.add(query)
                    add(event.visitor_id, visitor_ids)
                    add(event.email, emails)
        if known_consent_ids is not None and known_consent_ids(query):
            consent_ids.add(query)
    seen: set[str] = set()
    query_is_visitor = False
    while pending:
        identifier = pending.pop()
        if identifier in seen:
            continue
        seen.add(identifier)
        for sink in sinks:
            for event in sink.query(subject=identifier):
                count += 1
                if on_event is not None:
                    on_event()
                if event.aggregate:
                    continue
                query_is_visitor = query_is_visitor or event.visitor_id == query
                add(event.visitor_id, visitor_ids)
                add(event.email, emails)
                cid = _consent_id(event)
                if cid is not None:
                    consent_ids.add(cid)
    if query not in emails and not query_is_visitor:
        # No event has this visitor id: it was (at most) a consent id.
        visitor_ids.discard(query)
    return Subject(
        query=query,
        visitor_ids=frozenset(visitor_ids),
        emails=frozenset(emails),
        consent_ids=frozenset(consent_ids),
        events=count,
    )

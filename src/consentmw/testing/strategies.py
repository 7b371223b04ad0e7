"""Hypothesis strategies for consentmw values, for property tests of sinks and processors.

:func:`events` draws valid :class:`~consentmw.Event` values whose strings lean towards what
breaks storage code: quotes and SQL, JSON and shell metacharacters, line and paragraph
separators, right-to-left marks, emoji and long strings, in paths, props and identifiers.
Needs ``hypothesis`` (``pip install 'consentmw[test]'``); import this module only from tests.

The strings never hold a NUL character or a lone surrogate: PostgreSQL ``text`` cannot store
the first and no UTF-8 store can store the second, so both are for tests of the layers that
clean input before it reaches a sink, not of the sinks themselves.

:func:`consent_states` and :func:`consent_choices` draw what a visitor may have chosen, for
property tests of code that behaves differently by consent ("nothing is recorded for a
purpose the visitor has not granted").
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ..consent import ConsentState
from ..events import EVENT_TYPES, Event, format_ts

__all__ = [
    "HOSTILE_STRINGS",
    "consent_choices",
    "consent_states",
    "events",
    "json_values",
    "texts",
    "timestamps",
]

#: Strings that have broken storage code somewhere: SQL and JSON syntax, placeholders of
#: several drivers, line breaks JSON Lines must escape, invisible and direction marks.
HOSTILE_STRINGS = (
    "",
    " ",
    "'",
    '"',
    "\\",
    "'); DROP TABLE events; --",
    '"}\n{"id":"forged"}',
    "%s",
    "%(name)s",
    "?",
    ":1",
    "$1",
    "{}",
    "[]",
    "null",
    "\n",
    "\r\n",
    "\t",
    "\x0b\x0c\x1b[31m",
    "\u2028\u2029",
    "\u200b\u200d\ufeff",
    "\u202eevil\u202c",
    "\u0130\u0131\u00df",
    "É\u0301",
    "日本語のテキスト",
    "\U0001f36a\U0001f44d\U0001f3fd",
    "\U0010fffd",
    "\x7f\x80\x9f",
    "a" * 2000,
)

_ALPHABET = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def texts(*, max_size: int = 40) -> st.SearchStrategy[str]:
    """Unicode strings without NUL or lone surrogates, often one of :data:`HOSTILE_STRINGS`."""
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(_ALPHABET, max_size=max_size),
    )


def timestamps(
    *, min_epoch: float = 946_684_800.0, max_epoch: float = 4_102_444_799.0
) -> st.SearchStrategy[str]:
    """Event timestamps as :func:`~consentmw.events.format_ts` writes them (years 2000 to 2099)."""
    return st.floats(min_value=min_epoch, max_value=max_epoch, allow_nan=False).map(format_ts)


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """JSON values that survive a JSON round trip unchanged: no NaN or infinities, integers in
    the signed 64-bit range, nested lists and objects with hostile keys and strings."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(texts(max_size=12), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def _optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), strategy)


@st.composite
def _events(
    draw: st.DrawFn,
    ids: st.SearchStrategy[str],
    types: tuple[str, ...],
    ts: st.SearchStrategy[str],
    subjects: st.SearchStrategy[str],
    emails: st.SearchStrategy[str],
    purposes: st.SearchStrategy[str],
) -> Event:
    aggregate = draw(st.booleans())
    ua = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "browser": _optional(texts()),
                    "os": _optional(texts()),
                    "device": _optional(texts()),
                    "is_bot": st.booleans(),
                }
            ),
        )
    )
    identified = not aggregate
    return Event(
        id=draw(ids),
        type=draw(st.sampled_from(types)),
        name=draw(_optional(texts())),
        ts=draw(ts),
        site=draw(texts()),
        policy_version=draw(texts(max_size=12)),
        purposes=tuple(draw(st.lists(purposes, unique=True, max_size=4))),
        aggregate=aggregate,
        visitor_id=draw(_optional(subjects)) if identified else None,
        session_id=draw(_optional(texts())) if identified else None,
        method=draw(_optional(st.sampled_from(("GET", "POST", "PUT", "DELETE", "\u00fcber")))),
        path=draw(_optional(texts(max_size=80).map(lambda s: "/" + s))),
        status=draw(st.one_of(st.none(), st.integers(min_value=100, max_value=599))),
        referrer=draw(_optional(texts())),
        ip=draw(_optional(st.ip_addresses().map(str))) if identified else None,
        domain=draw(_optional(texts())) if identified else None,
        email=draw(_optional(emails)) if identified else None,
        claimed_email=draw(_optional(texts())),
        ua=ua,
        props=draw(st.dictionaries(texts(max_size=12), json_values(), max_size=5)),
    )


def events(
    *,
    ids: st.SearchStrategy[str] | None = None,
    types: tuple[str, ...] = EVENT_TYPES,
    ts: st.SearchStrategy[str] | None = None,
    subjects: st.SearchStrategy[str] | None = None,
    emails: st.SearchStrategy[str] | None = None,
    purposes: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Event]:
    """Valid random events.

    ``ids`` default to random UUIDs; ``ts`` to :func:`timestamps`; ``subjects`` (visitor ids)
    and ``emails`` (lower-cased, as the resolver stores them) to hostile text, so pass small
    ``sampled_from`` pools to make events share subjects; ``purposes`` to a few purpose ids.
    Aggregate events carry no identifier, as the dispatcher makes them.
    """
    return _events(
        ids=ids if ids is not None else st.uuids(version=4).map(str),
        types=types,
        ts=ts if ts is not None else timestamps(),
        subjects=subjects if subjects is not None else texts(max_size=24),
        emails=emails if emails is not None else st.emails().map(str.lower),
        purposes=(
            purposes
            if purposes is not None
            else st.sampled_from(("necessary", "analytics", "marketing", "support", "ünïcödé"))
        ),
    )


_MODELS = ("opt-in", "opt-out", "notice")
_SOURCES = ("banner", "default", "notice", "gpc", "dnt")


@st.composite
def _consent_states(
    draw: st.DrawFn,
    purposes: tuple[str, ...],
    required: frozenset[str],
    versions: tuple[str, ...],
) -> ConsentState:
    optional = [p for p in purposes if p not in required]
    granted = (
        frozenset(draw(st.lists(st.sampled_from(optional), unique=True)))
        if optional
        else frozenset()
    )
    version = versions[0]
    decided = draw(st.booleans())
    source = draw(st.sampled_from(_SOURCES)) if decided else "default"
    gpc = source == "gpc"
    stored = draw(st.sampled_from((None, *versions))) if decided else None
    return ConsentState(
        granted=granted | required,
        decided=decided and (stored is None or stored == version),
        policy_version=version,
        source=source,
        model=draw(st.sampled_from(_MODELS)),
        stored_version=stored,
        gpc=gpc,
    )


def consent_states(
    purposes: tuple[str, ...] = ("necessary", "analytics", "marketing"),
    *,
    required: tuple[str, ...] = ("necessary",),
    versions: tuple[str, ...] = ("1",),
) -> st.SearchStrategy[ConsentState]:
    """Consent states a visitor may be in: any subset of the optional ``purposes`` granted
    (the ``required`` ones always), decided or not, under the policy version
    ``versions[0]``; a decision stored under another of ``versions`` (an earlier policy)
    makes an undecided state, as after a policy change."""
    if not versions:
        raise ValueError("give at least one policy version")
    return _consent_states(purposes=purposes, required=frozenset(required), versions=versions)


def consent_choices(
    purposes: tuple[str, ...] = ("analytics", "marketing"),
) -> st.SearchStrategy[tuple[str, tuple[str, ...]]]:
    """What a visitor may post to the consent endpoint: ``("accept_all", ())``,
    ``("reject_all", ())`` or ``("custom", <a subset of purposes>)``."""
    custom = (
        st.lists(st.sampled_from(purposes), unique=True).map(
            lambda chosen: ("custom", tuple(chosen))
        )
        if purposes
        else st.just(("custom", ()))
    )
    return st.one_of(st.just(("accept_all", ())), st.just(("reject_all", ())), custom)

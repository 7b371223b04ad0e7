"""The :class:`Rights` object: every data-subject right and opt-out tool over one site's sinks.

Built by the middleware (``ConsentMiddleware.rights``: the running site's sinks, spool and
dispatcher, and the ``<mount>/optout/<token>`` page) or on its own from a configuration
(:meth:`Rights.open`: what ``consentmw export``, ``erase`` and the other commands use, and what
a marketing tool uses to ask :meth:`Rights.is_suppressed`).

**Erasure across processes.** In the web process :meth:`Rights.erase` first waits for the
dispatcher to flush, then erases every sink that can, the spool (waiting events and dead
letters), the events still waiting in the dispatcher, and the verified-cookie caches. A
command-line process cannot reach the memory of running web processes, where events about
the subject may sit for up to the flush interval plus the writer's retry backoff before they
are written or spooled. So ``consentmw erase`` erases, waits that long
(:attr:`Rights.settle_seconds`), and erases again; events a web process held longer (its sink
down past every retry) are in its spool file, which the second pass also erases when it is
the same file (set ``dispatch.spool`` explicitly when the web server and the command run as
different users). After a longer outage, run ``consentmw erase`` again. A tombstone honoured
by every dispatcher was considered and rejected: it would make every web process read the
rights store for every batch, and keep an identifier of the erased person around to match on.

**What an erasure keeps.** Consent-log records stay: they name the pseudonymous consent id
only (and an opt-out's record the keyed digest of the address), and the hash chain, the
proof of every other visitor's consent, breaks if one is removed; ``rights.
consent_retention_days`` says how long they are kept. A suppression entry stays if the person
opted out, so that they are never contacted again. Restrictions of the subject are lifted
(there is nothing left to restrict).

**Restriction.** ``restrict(subject)`` keeps the subject's data to the purposes it was
collected for: normally an event may serve every purpose the visitor had granted when it was
collected (its ``purposes``); for a restricted subject only the purpose that caused the
collection (``tracking.tracking_purpose`` for page visits and identification, the action
rule's purpose for actions, the required purposes for consent and opt-out records), plus any
purposes the operator allows explicitly. :meth:`Rights.query` applies it; it covers the
identifiers known when it was set (run it again after new ones appear).

Not for the request path: nothing here is called per request except the opt-out page.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ..config import Config
from ..consent import StoredConsent
from ..consentlog import ConsentRecord
from ..errors import ConsentMWError, SinkError
from ..events import Event, format_ts
from ..resolve.email import normalize_email
from ..signing import KeyRing
from ..sinks import (
    AggregatingSink,
    ConsentLogSink,
    ErasableSink,
    QueryableSink,
    RectifiableSink,
    Sink,
    open_sink,
)
from ..spool import Spool
from . import _spool
from .export import ExportSummary, write_export
from .optout import OptoutRoute, OptoutTokens, list_unsubscribe_headers
from .receipts import ChainReport, verify_log
from .reports import DEFAULT_MIN_COUNT, Report, build_report
from .retention import PruneResult, load_anchor, prune_consent_log
from .store import RightsStore, open_store
from .subjects import Subject, SubjectError, resolve_subject
from .suppression import (
    CHANNELS,
    SuppressionList,
    address_digest,
    identifier_digest,
    normalize_address,
)

if TYPE_CHECKING:
    from ..dispatch import Dispatcher
    from ..engine import Engine

__all__ = ["Erasure", "Rectification", "Rights", "RightsError"]

log = logging.getLogger("consentmw.rights")

_DAY = 86400.0


class RightsError(ConsentMWError):
    """A rights request cannot be carried out as asked (no sink can do it, bad arguments)."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """What :meth:`Rights.erase` removed and kept.

    ``sinks``: events removed per sink (name → count); ``spool``: spooled events and dead
    letters removed; ``pending``: events removed from the dispatcher's queues;
    ``consent_records_kept``: the subject's consent-log records left in place;
    ``suppressed``: channels on which a suppression entry stays; ``not_erasable``: sinks that
    hold events but cannot erase (their data must be removed by other means); ``complete``:
    false when a sink could not erase or a batch was still being written when the time ran
    out (it may land after the erasure: erase again).
    """

    subject: Subject
    sinks: Mapping[str, int] = field(default_factory=dict)
    spool: int = 0
    pending: int = 0
    consent_records_kept: int = 0
    suppressed: tuple[str, ...] = ()
    not_erasable: tuple[str, ...] = ()
    complete: bool = True

    @property
    def total(self) -> int:
        """Events removed in all."""
        return sum(self.sinks.values()) + self.spool + self.pending


@dataclass(frozen=True, slots=True)
class Rectification:
    """What :meth:`Rights.rectify` changed: events per sink, spooled and waiting events."""

    subject: Subject
    email: str
    sinks: Mapping[str, int] = field(default_factory=dict)
    spool: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        """Events changed in all."""
        return sum(self.sinks.values()) + self.spool + self.pending


def _close_iter(iterable: Iterable[Any]) -> None:
    close = getattr(iterable, "close", None)
    if close is not None:
        close()


def _first(iterable: Iterable[Any]) -> Any:
    """The first item of an iterable or ``None``, closing a generator left half-read (a
    streamed query holds a connection until it is)."""
    iterator = iter(iterable)
    try:
        return next(iterator, None)
    finally:
        _close_iter(iterator)


class Rights:
    """Data-subject rights, opt-out links, suppression lists, receipts and reports.

    Use ``ConsentMiddleware.rights`` in the web process, or :meth:`open` elsewhere. Built
    directly: ``config`` the site's configuration; ``engine`` the middleware's engine (its
    sinks, spool and dispatcher are used and the opt-out page is registered with its UI);
    without an engine, ``sinks`` maps URLs to open sinks (missing ones are opened) and
    ``spool`` is the spool file to erase from. ``store`` replaces the store opened from
    ``rights.store``; ``clock`` returns epoch seconds.
    """

    def __init__(
        self,
        config: Config,
        *,
        engine: Engine | None = None,
        sinks: Mapping[str, Sink] | None = None,
        spool: Spool | None = None,
        store: RightsStore | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.clock: Callable[[], float] = clock or (engine.clock if engine else time.time)
        self._engine = engine
        self._dispatcher: Dispatcher | None = engine.dispatcher if engine else None
        self._owned: list[Sink] = []
        self._owned_spool: Spool | None = None
        if engine is not None:
            opened: dict[str, Sink] = dict(engine.sinks)
            self.spool: Spool | None = engine.spool
        else:
            opened = dict(sinks or {})
            for url in [*config.sinks.events, config.sinks.consent_log]:
                if url not in opened:
                    opened[url] = open_sink(url)
                    self._owned.append(opened[url])
            self.spool = spool
        self._sinks = opened
        self._store = store
        self._store_lock = threading.Lock()
        self.tokens = OptoutTokens(
            KeyRing(config.site.secret_keys),
            max_age_days=config.optout.max_age_days,
            purposes=config.purpose_ids,
            clock=self.clock,
        )
        if engine is not None:
            engine.ui.routes["optout"] = OptoutRoute(
                engine,
                self.tokens,
                opt_out=lambda a, c, p, m: self.opt_out(a, c, p, mechanism=m),
                is_suppressed=self.is_suppressed,
            )

    @classmethod
    def open(cls, config: Config | Mapping[str, Any] | str | os.PathLike[str]) -> Rights:
        """A :class:`Rights` for a configuration (a ``Config``, a mapping or a TOML path),
        opening its sinks, store and (if the file exists) spool. :meth:`close` it."""
        from ..engine import default_spool_path

        cfg = Config.load(config)
        path = default_spool_path(cfg)
        spool = Spool(path) if path is not None and os.path.exists(path) else None
        rights = cls(cfg, spool=spool)
        rights._owned_spool = spool
        return rights

    def __enter__(self) -> Rights:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store, and the sinks and spool this object opened itself."""
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()
        for sink in self._owned:
            try:
                sink.close()
            except Exception:  # closing the others matters more than this one's error
                log.warning("consentmw rights: closing a sink failed", exc_info=True)
        self._owned = []
        if self._owned_spool is not None:
            self._owned_spool.close()
            self._owned_spool = None

    # ------------------------------------------------------------------ plumbing

    @property
    def store(self) -> RightsStore:
        """The rights store (opened on first use from ``rights.store``)."""
        with self._store_lock:
            if self._store is None:
                self._store = open_store(self.config.rights.store)
            return self._store

    @property
    def suppression(self) -> SuppressionList:
        """The suppression lists."""
        return SuppressionList(self.store, clock=self.clock)

    def _event_sinks(self) -> list[tuple[str, Sink]]:
        from ..dispatch import safe_url

        out: list[tuple[str, Sink]] = []
        seen: set[int] = set()
        for url in self.config.sinks.events:
            sink = self._sinks[url]
            if id(sink) not in seen:
                seen.add(id(sink))
                out.append((safe_url(url), sink))
        return out

    def _queryable(self) -> list[QueryableSink]:
        return [s for _, s in self._event_sinks() if isinstance(s, QueryableSink)]

    @property
    def consent_log(self) -> ConsentLogSink:
        """The consent log sink."""
        sink = self._sinks[self.config.sinks.consent_log]
        if not isinstance(sink, ConsentLogSink):
            raise RightsError("the consent log sink cannot keep a chain (sinks.consent_log)")
        return sink

    @property
    def settle_seconds(self) -> float:
        """How long an event can stay in a web process's memory before it is written or
        spooled: the flush interval plus the writer's whole retry backoff, plus a second.
        ``consentmw erase`` waits this long between its two passes."""
        dc = self.config.dispatch
        backoff = sum(
            min(dc.retry_max_ms, dc.retry_base_ms * 2 ** min(attempt, 30))
            for attempt in range(dc.max_retries)
        )
        return float(dc.flush_interval_ms + backoff) / 1000.0 + 1.0

    def _settle(self, timeout: float) -> bool:
        """Wait for what the dispatcher holds to be written; ``False`` if it did not settle."""
        if self._dispatcher is not None and not self._dispatcher.flush(timeout):
            log.warning("consentmw rights: the dispatcher did not settle in %.1fs", timeout)
            return False
        return True

    def _digests(self, subject: Subject) -> list[str]:
        pepper = self.store.pepper()
        return [identifier_digest(pepper, i) for i in subject.identifiers]

    # ------------------------------------------------------------------ subjects

    def resolve(self, subject: str, *, on_event: Callable[[], None] | None = None) -> Subject:
        """Every identifier linked to ``subject`` (an e-mail address, a visitor id or a
        consent id); :class:`~consentmw.rights.SubjectError` if it is none of those."""
        log_sink = self.consent_log

        def known(consent_id: str) -> bool:
            return _first(log_sink.consent_records(subject=consent_id)) is not None

        return resolve_subject(
            subject, self._queryable(), known_consent_ids=known, on_event=on_event
        )

    def _consent_records(self, subject: Subject) -> Iterator[ConsentRecord]:
        log_sink = self.consent_log
        pepper = self.store.pepper()
        receipts = sorted(subject.consent_ids) + sorted(
            address_digest(pepper, "email", e) for e in subject.emails
        )
        for receipt in receipts:
            yield from log_sink.consent_records(subject=receipt)

    def receipts(self, subject: str) -> list[ConsentRecord]:
        """The consent-log records of ``subject`` (its consent ids, and the opt-outs of its
        e-mail addresses), oldest first."""
        resolved = self.resolve(subject)
        return sorted(self._consent_records(resolved), key=lambda r: r.ts)

    # ------------------------------------------------------------------ export

    def export(
        self,
        subject: str | Subject,
        fp: TextIO,
        *,
        on_event: Callable[[], None] | None = None,
    ) -> ExportSummary:
        """Write everything about ``subject`` to ``fp`` as one JSON document
        ``{"subject": {...}, "events": [...], "consent": [...]}``, streamed (see
        :mod:`consentmw.rights.export`)."""
        resolved = self.resolve(subject) if isinstance(subject, str) else subject
        extra = {
            "suppressed": {e: self.suppression.channels(e) for e in sorted(resolved.emails)},
            "restricted": self._restricted(resolved),
        }
        return write_export(
            fp,
            resolved,
            self._queryable(),
            self._consent_records(resolved),
            extra=extra,
            on_event=on_event,
        )

    def _restricted(self, subject: Subject) -> bool:
        restrictions = self.store.restrictions()
        return any(d in restrictions for d in self._digests(subject))

    # ------------------------------------------------------------------ erase

    def erase(
        self,
        subject: str | Subject,
        *,
        settle_timeout: float = 10.0,
        on_identifier: Callable[[], None] | None = None,
    ) -> Erasure:
        """Remove everything about ``subject`` from every sink that can erase, the spool
        (waiting events and dead letters), the dispatcher's queues and the caches (see the
        module docstring for what stays). ``on_identifier`` is called after each identifier
        is done (a progress bar)."""
        resolved = self.resolve(subject) if isinstance(subject, str) else subject
        if self._dispatcher is not None:
            # Nothing collected up to now about the subject is written any more by this
            # process, whether it is still queued, in a writer's hands or spooled.
            self._dispatcher.forget(resolved.identifiers)
        settled = self._settle(settle_timeout)
        counts: dict[str, int] = {}
        spooled = 0
        not_erasable: list[str] = []
        sinks = self._event_sinks()
        for identifier in resolved.identifiers:
            # The spool first: a writer replaying it now re-delivers into sinks erased next.
            if self.spool is not None:
                spooled += self.spool.erase(identifier)
            for name, sink in sinks:
                if isinstance(sink, ErasableSink):
                    counts[name] = counts.get(name, 0) + sink.erase(identifier)
            if on_identifier is not None:
                on_identifier()
        for name, sink in sinks:
            if not isinstance(sink, ErasableSink):
                not_erasable.append(name)
        if self.spool is not None and resolved.identifiers:
            spooled += _spool.erase_dead_letters(self.spool, resolved.matches)
        pending = 0
        if self._dispatcher is not None and resolved.identifiers:
            pending = self._dispatcher.erase_pending(resolved.matches)
        self._forget_cached(resolved)
        if resolved.identifiers:
            self.store.remove_restrictions(self._digests(resolved))
        kept = sum(1 for _ in self._consent_records(resolved))
        suppressed = sorted({c for e in resolved.emails for c in self.suppression.channels(e)})
        return Erasure(
            subject=resolved,
            sinks=counts,
            spool=spooled,
            pending=pending,
            consent_records_kept=kept,
            suppressed=tuple(suppressed),
            not_erasable=tuple(not_erasable),
            complete=settled and not not_erasable,
        )

    def _forget_cached(self, subject: Subject) -> None:
        """Drop verified prefs cookies of the subject from the engine's caches (the browser
        still holds the cookie; the server keeps no copy of its identifiers)."""
        engine = self._engine
        if engine is None:
            return
        ids = subject.visitor_ids | subject.consent_ids
        caches: list[tuple[dict[Any, Any], int]] = [
            (engine._prefs_cache, 0),
            (engine._state_cache, 1),
        ]
        # The signers remember verified cookies too (payloads with the visitor id).
        for signer in (engine.prefs_signer, engine.session_signer, engine.cart_signer):
            signer.clear_cache()
        for cache, at in caches:
            for key, value in cache.copy().items():
                stored: StoredConsent | None = value[at]
                if stored is not None and (stored.visitor_id in ids or stored.consent_id in ids):
                    cache.pop(key, None)

    # ------------------------------------------------------------------ rectify

    def rectify(
        self, subject: str | Subject, *, email: str, settle_timeout: float = 10.0
    ) -> Rectification:
        """Correct the subject's e-mail address to ``email`` everywhere: every sink that can
        rectify, spooled events and events waiting in the dispatcher. An opt-out or a
        restriction of an old address carries over to the new one. ``SubjectError`` if
        ``email`` is not a valid address."""
        new = normalize_email(email)
        if new is None:
            raise SubjectError("the corrected e-mail address is not valid")
        resolved = self.resolve(subject) if isinstance(subject, str) else subject
        self._settle(settle_timeout)
        counts: dict[str, int] = {}
        spooled = pending = 0
        old_emails = sorted(resolved.emails - {new})
        for old in old_emails:
            if self.spool is not None:
                spooled += _spool.rectify_spooled(self.spool, old, new)
            for name, sink in self._event_sinks():
                if isinstance(sink, RectifiableSink):
                    counts[name] = counts.get(name, 0) + sink.rectify(old, {"email": new})
            if self._dispatcher is not None:
                rewrite, changed = _rewriter(old, new)
                self._dispatcher.erase_pending(rewrite)
                pending += changed[0]
            self._carry_over(old, new)
        return Rectification(
            subject=resolved, email=new, sinks=counts, spool=spooled, pending=pending
        )

    def _carry_over(self, old: str, new: str) -> None:
        store = self.store
        pepper = store.pepper()
        for purpose in store.suppression("email", address_digest(pepper, "email", old)):
            self.suppression.add(new, "email", purpose)
        restrictions = store.restrictions()
        old_digest = identifier_digest(pepper, old)
        if old_digest in restrictions:
            store.set_restriction(
                identifier_digest(pepper, new), restrictions[old_digest], format_ts(self.clock())
            )

    # ------------------------------------------------------------------ restrict

    def restrict(self, subject: str | Subject, *, allow: Iterable[str] = ()) -> Subject:
        """Keep the subject's data to the purposes it was collected for (plus ``allow``,
        purposes the operator permits explicitly). Returns the subject restricted."""
        allowed = tuple(sorted(set(allow)))
        unknown = set(allowed) - self.config.purpose_ids
        if unknown:
            raise RightsError(f"unknown purpose(s): {', '.join(sorted(unknown))}")
        resolved = self.resolve(subject) if isinstance(subject, str) else subject
        now = format_ts(self.clock())
        for digest in self._digests(resolved):
            self.store.set_restriction(digest, allowed or None, now)
        return resolved

    def lift_restriction(self, subject: str | Subject) -> int:
        """Lift the subject's restriction; return how many identifiers were restricted."""
        resolved = self.resolve(subject) if isinstance(subject, str) else subject
        return self.store.remove_restrictions(self._digests(resolved))

    def collection_purposes(self, event: Event) -> frozenset[str]:
        """The purpose(s) that caused ``event`` to be collected (see the module docstring)."""
        tracking = self.config.tracking
        if event.type == "action":
            for rule in tracking.actions:
                if rule.name == event.name and rule.purpose:
                    return frozenset((rule.purpose,))
        if event.type in ("page_visit", "identify", "action"):
            return (
                frozenset((tracking.tracking_purpose,))
                if tracking.tracking_purpose
                else (frozenset())
            )
        if event.type in ("consent", "optout"):
            return self.config.required
        return frozenset()

    def query(
        self,
        *,
        purpose: str,
        subject: str | None = None,
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Events that may be used for ``purpose``, streamed from the first sink that can
        query: collected with ``purpose`` granted (so never from before the policy version
        that added it), under a policy version that had it, and not restricted away from it.
        """
        if purpose not in self.config.purpose_ids:
            raise RightsError(f"unknown purpose {purpose!r}")
        sinks = self._queryable()
        if not sinks:
            raise RightsError("no events sink can query (sinks.events)")
        restrictions = self.store.restrictions()
        pepper = self.store.pepper() if restrictions else b""
        for event in sinks[0].query(
            subject=subject, purpose=purpose, type=type, since=since, until=until
        ):
            had = self.config.version_purposes(event.policy_version)
            if had is not None and purpose not in had:
                continue
            if restrictions and not self._allowed(event, purpose, restrictions, pepper):
                continue
            yield event

    def _allowed(
        self,
        event: Event,
        purpose: str,
        restrictions: Mapping[str, tuple[str, ...] | None],
        pepper: bytes,
    ) -> bool:
        for identifier in (event.visitor_id, event.email):
            if not identifier:
                continue
            digest = identifier_digest(pepper, identifier)
            if digest in restrictions:
                extra = restrictions[digest] or ()
                if purpose not in self.collection_purposes(event) and purpose not in extra:
                    return False
        return True

    # ------------------------------------------------------------------ opt-out

    def optout_url(
        self,
        address: str,
        channel: str = "email",
        purpose: str | None = None,
        *,
        base_url: str | None = None,
    ) -> str:
        """The absolute opt-out URL for ``address`` on ``channel`` (for ``purpose``, or every
        purpose): ``base_url`` (default ``optout.base_url``, else ``https://<site.name>``) +
        the mount + ``/optout/<token>``. ``ValueError`` for a bad address, channel or
        purpose."""
        token = self.tokens.dumps(address, channel, purpose)
        base = base_url or self.config.optout.base_url or f"https://{self.config.site.name}"
        return f"{base.rstrip('/')}{self.config.site.mount}/optout/{token}"

    def list_unsubscribe_headers(
        self, address: str, purpose: str | None = None, *, base_url: str | None = None
    ) -> list[tuple[str, str]]:
        """The ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers (RFC 8058) for a
        mail to ``address``."""
        url = self.optout_url(address, "email", purpose, base_url=base_url)
        return list_unsubscribe_headers(url, self.config.optout.contact)

    def is_suppressed(
        self, address: str, channel: str = "email", purpose: str | None = None
    ) -> bool:
        """Must ``address`` not be contacted on ``channel`` (for ``purpose``)? See
        :meth:`SuppressionList.is_suppressed`."""
        return self.suppression.is_suppressed(address, channel, purpose)

    def opt_out(
        self,
        address: str,
        channel: str = "email",
        purpose: str | None = None,
        *,
        mechanism: str = "operator",
    ) -> bool:
        """Suppress ``address`` on ``channel`` and, if that is new, record an ``optout``
        event and a consent-log record (mechanism ``optout``, subject the address's keyed
        digest). ``True`` if new; opting out again changes nothing. ``ValueError`` for a bad
        address, channel or purpose."""
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
        if purpose is not None and purpose not in self.config.purpose_ids:
            raise ValueError(f"unknown purpose {purpose!r}")
        normalized = normalize_address(address, channel)
        if normalized is None:
            raise ValueError(f"not a valid {channel} address")
        suppression = self.suppression
        if not suppression.add(normalized, channel, purpose):
            return False
        now = self.clock()
        config = self.config
        event = Event(
            id=str(uuid.uuid4()),
            type="optout",
            name=channel,
            ts=format_ts(now),
            site=config.site.name,
            policy_version=config.policy.version,
            purposes=tuple(sorted(config.required)),
            # A telephone number is no subject identifier here: that event stays anonymous.
            aggregate=channel != "email",
            email=normalized if channel == "email" else None,
            props={"channel": channel, "purpose": purpose, "mechanism": mechanism},
        )
        remaining = config.purpose_ids - {purpose} if purpose else config.required
        digest = suppression.digest(normalized, channel)
        assert digest is not None
        record = ConsentRecord(
            id=str(uuid.uuid4()),
            ts=event.ts,
            site=config.site.name,
            policy_version=config.policy.version,
            granted=tuple(sorted(remaining)),
            mechanism="optout",
            subject=digest,
        )
        self._deliver(event, record)
        return True

    def _deliver(self, event: Event, record: ConsentRecord) -> None:
        dispatcher = self._dispatcher
        try:
            self.consent_log.append_consent(record)
        except SinkError as exc:
            if dispatcher is None:
                raise
            log.error("consentmw: the consent log could not be written: %s", exc)
            dispatcher.spool_consent(record)
        if dispatcher is not None:
            dispatcher.enqueue_event(event)
            return
        from ..resolve.redact import Redactor

        fields = self.config.resolve.pii_fields
        redacted = (Redactor(field_purposes=fields) if fields else Redactor()).redact(event)
        for _, sink in self._event_sinks():
            sink.write([redacted])

    # ------------------------------------------------------------------ receipts, reports

    def verify_receipts(
        self, *, expect: str | None = None, on_record: Callable[[], None] | None = None
    ) -> ChainReport:
        """Walk the consent log's hash chain (see :func:`~consentmw.rights.verify_log`);
        records older than ``rights.consent_retention_days`` are counted."""
        days = self.config.rights.consent_retention_days
        cutoff = self.clock() - days * _DAY if days else None
        anchor = load_anchor(self.store)
        return verify_log(
            self.consent_log.consent_records(),
            expect=expect,
            start=None if anchor is None else anchor.hash,
            retention_cutoff=cutoff,
            on_record=on_record,
        )

    def prune_receipts(self) -> PruneResult:
        """Remove consent-log records older than ``rights.consent_retention_days`` from the
        start of the log, keeping it verifiable (see :mod:`consentmw.rights.retention`).
        :class:`RightsError` when the retention is 0 (for ever) or the chain is broken."""
        days = self.config.rights.consent_retention_days
        if not days:
            raise RightsError("rights.consent_retention_days is 0: records are kept for ever")
        report = self.verify_receipts()
        if not report.ok:
            raise RightsError("the consent log's chain is broken; not pruning the evidence")
        cutoff = format_ts(self.clock() - days * _DAY)
        try:
            return prune_consent_log(
                self.config.sinks.consent_log, self.consent_log, self.store, cutoff=cutoff
            )
        except ConsentMWError as exc:
            raise RightsError(str(exc)) from exc

    def report(
        self,
        *,
        by: Sequence[str] = ("path",),
        type: str | None = "page_visit",
        since: str | None = None,
        until: str | None = None,
        min_count: int = DEFAULT_MIN_COUNT,
    ) -> Report:
        """An aggregate report from the first events sink that can aggregate (see
        :mod:`consentmw.rights.reports`)."""
        from ..resolve.redact import Redactor

        for _, sink in self._event_sinks():
            if isinstance(sink, AggregatingSink):
                fields = self.config.resolve.pii_fields
                redactor = Redactor(field_purposes=fields) if fields else Redactor()
                return build_report(
                    sink,
                    by=by,
                    type=type,
                    since=since,
                    until=until,
                    min_count=min_count,
                    redactor=redactor,
                )
        raise RightsError(
            "no events sink can aggregate; add a sqlite:// or postgresql:// sink to sinks.events"
        )


def _rewriter(old: str, new: str) -> tuple[Callable[[Event], bool], list[int]]:
    """A predicate for ``Dispatcher.erase_pending`` that removes nothing and rewrites the
    e-mail address of the events it sees (the dispatcher has no verb for editing), and the
    one-item list it counts them in."""
    changed = [0]

    def rewrite(event: Event) -> bool:
        if event.email == old:
            event.email = new
            changed[0] += 1
        return False

    return rewrite, changed

"""The engine: everything consentmw does per request, shared by the WSGI middleware and the
framework integrations.

It is built once from a :class:`~consentmw.Config` (keys, signers, cookie names and
attributes, sinks, the dispatcher, the UI) and then, per request, reads our cookies,
decides the consent state, filters the application's ``Set-Cookie`` headers, writes our
cookies, records events and answers the consent endpoints. It reads request values from an
environ-shaped mapping (a WSGI environ or Django's ``request.META``) and returns plain
values: an :class:`Outcome` (the application's headers, filtered, and our cookies as
:class:`~consentmw.cookies.CookieSpec` values) and :class:`~consentmw.endpoints.Response`
objects. The WSGI middleware renders them as header lists; the Django middleware as
``HttpResponse`` headers and ``response.set_cookie`` calls.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.http import parse_options_header

from . import endpoints as ep
from .config import Config
from .consent import ConsentState, StoredConsent, apply_choice, decide, new_id, stored_from_payload
from .consentlog import ConsentRecord
from .context import RequestContext, Visitor
from .cookies import (
    CookieNames,
    CookieSpec,
    CookieWriter,
    find_cookies,
    is_deletion,
    parent_domains,
    path_ancestors,
    set_cookie_name,
    split_cookie_header,
)
from .dispatch import Dispatcher, RequestInfo, _Counter, safe_url
from .events import format_ts
from .jars import Jar, SessionJar
from .signing import KeyRing, ValueSigner
from .sinks import ConsentLogSink, Sink, open_sink, url_path
from .spool import Spool

__all__ = ["PLACED_KEY", "Engine", "Outcome"]

log = logging.getLogger("consentmw")

_CACHE_SIZE = 2048
_CSRF_MAX_AGE = 12 * 3600
_PREFETCH_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_MOZ", "HTTP_X_PURPOSE")

#: Where the template helpers (:meth:`Engine.banner_markup`, :meth:`Engine.settings_link_markup`)
#: note what a page placed itself, so that it is not inserted a second time.
PLACED_KEY = "consentmw.ui.placed"


@dataclass(slots=True)
class Outcome:
    """What to send with an application's response: its headers, without the ``Set-Cookie``
    values consent does not allow and with ``Vary``/``Cache-Control`` adjusted when the
    response depends on consent; and consentmw's own cookies to add."""

    headers: list[tuple[str, str]]
    cookies: list[CookieSpec]

    def wsgi_headers(self) -> list[tuple[str, str]]:
        """The headers with our cookies rendered as ``Set-Cookie`` values."""
        if not self.cookies:  # most responses: nothing of ours to add
            return self.headers
        return [*self.headers, *(("Set-Cookie", c.header()) for c in self.cookies)]


_NO_COOKIES: dict[str, list[str]] = {}


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_SIZE:
        _evict_oldest(cache)
    cache[key] = value


def _evict_oldest(cache: dict[Any, Any]) -> None:
    """Drop the oldest eighth of a full cache in one pass. One entry at a time, each
    eviction would walk the deleted slots left at the front of the dict before it finds the
    oldest live one: linear in the cache size, on every request that misses."""
    try:
        for key in list(itertools.islice(cache, max(1, len(cache) // 8))):
            del cache[key]
    except (KeyError, RuntimeError):  # changed by another thread meanwhile
        cache.clear()


def default_spool_path(config: Config) -> str | None:
    """Where ``dispatch.spool = "auto"`` puts the spool.

    Next to the first SQLite or JSONL sink file (``<file>.spool``); ``None`` (in memory)
    when every sink is ``memory://``; else under ``$XDG_STATE_HOME/consentmw/``.
    """
    setting = config.dispatch.spool
    if setting is None:
        return None
    if setting != "auto":
        return setting
    urls = [*config.sinks.events, config.sinks.consent_log]
    for url in urls:
        if url.startswith(("sqlite://", "jsonl://")):
            return url_path(url) + ".spool"
    if all(u.startswith("memory://") for u in urls):
        return None
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "consentmw", f"{config.site.name}.spool")


class Engine:
    """Per-application state and per-request operations. See the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        sinks: Mapping[str, Sink] | None = None,
        extra_necessary_cookies: Sequence[str] = (),
        email_hook: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        ring = KeyRing(config.site.secret_keys)
        self.prefs_signer = ring.signer("consentmw.prefs", clock=clock)
        self.session_signer = ring.signer("consentmw.session", clock=clock)
        self.cart_signer = ring.signer("consentmw.cart", clock=clock)
        self.csrf_signer = ring.signer("consentmw.csrf", clock=clock)
        self.ring = ring
        cs = config.cookie_settings
        self.names = CookieNames.for_settings(secure=cs.secure, domain=cs.domain)
        self._our_names = self.names.all
        self._reserved = frozenset(self.names.all) | {"cmw_prefs", "cmw_session", "cmw_cart"}
        self.writer = CookieWriter(
            secure=cs.secure, samesite=cs.samesite, path=cs.path, domain=cs.domain
        )
        self.prefs_max_age = config.policy.consent_max_age_days * 86400.0
        self.session_max_age = cs.session_lifetime_hours * 3600.0
        self.cart_max_age = cs.cart_max_age_days * 86400.0
        # The Set-Cookie line of each jar without its value (name, attributes): what a
        # jar's contents may add to it is what is left of the limit.
        self._overhead = {
            self.names.prefs: len(
                self.writer.set(self.names.prefs, "", max_age=self.prefs_max_age, shared=True)
            ),
            self.names.session: len(self.writer.set(self.names.session, "", max_age=None)),
            self.names.cart: len(self.writer.set(self.names.cart, "", max_age=self.cart_max_age)),
        }
        self.tracking = config.tracking
        self.tracking_purpose = config.tracking.tracking_purpose
        self.action_purposes: dict[str, str | None] = {
            rule.name: rule.purpose for rule in config.tracking.actions if rule.purpose
        }
        self._request_rules = [r for r in config.tracking.actions if r.path is not None]
        self._attachment_rules = [r for r in config.tracking.actions if r.on_response]
        self._capture_rules = [r for r in self._request_rules if r.capture]
        self._optional = config.purpose_ids - config.required
        self._declared_finder = _declared_finder(
            [r for r in config.cookies if r.purpose not in config.required]
        )
        self._declared_hint = _declared_hint(
            [r for r in config.cookies if r.purpose not in config.required]
        )
        self._necessary = frozenset(extra_necessary_cookies)
        self.mount = config.site.mount
        self._gpc_key = "HTTP_SEC_GPC"
        self._country_key = config.jurisdictions.environ_key
        self._honor_dnt = config.policy.honor_dnt
        # resolve.email_hook wins over the integration's (Flask-Login, request.user).
        self.email_hook = config.resolve.load_email_hook() or email_hook
        # Caches (bounded): verified prefs cookies and the states decided from them; cookie
        # rules by name.
        self._prefs_cache: dict[str, Any] = {}
        self._state_cache: dict[Any, tuple[ConsentState, StoredConsent | None, Any, float]] = {}
        self._rule_cache: dict[str, Any] = {}
        self._cookie_cache: dict[str, dict[str, list[str]]] = {}
        self.counters: dict[str, _Counter] = {
            name: _Counter()
            for name in (
                "requests",
                "bad_cookie",
                "cookies_blocked",
                "cookies_reported",
                "reserved_cookie_blocked",
                "jar_overflow",
                "consent_decisions",
                "consent_log_failed",
                "csrf_refused",
                "cross_site_refused",
                "notice_acceptances",
            )
        }
        # Sinks: one object per URL, shared by the dispatcher and the consent log.
        self.sinks: dict[str, Sink] = dict(sinks or {})
        for url in [*config.sinks.events, config.sinks.consent_log]:
            if url not in self.sinks:
                self.sinks[url] = open_sink(url)
        log_sink = self.sinks[config.sinks.consent_log]
        if not isinstance(log_sink, ConsentLogSink):
            raise TypeError(
                f"the consent log sink {safe_url(config.sinks.consent_log)} cannot keep a chain"
            )
        self.consent_log: ConsentLogSink = log_sink
        self.consent_log_name = safe_url(config.sinks.consent_log)
        self.spool = Spool(default_spool_path(config))
        self.ip_salt: Any = None
        self.resolver: Any = None
        self.enricher = self._build_enricher()
        dc = config.dispatch
        self.dispatcher = Dispatcher(
            {url: self.sinks[url] for url in config.sinks.events},
            site=config.site.name,
            spool=self.spool,
            batch_size=dc.batch_size,
            flush_interval=dc.flush_interval_ms / 1000.0,
            queue_size=dc.queue_size,
            when_full=dc.when_full,
            max_retries=dc.max_retries,
            retry_base=dc.retry_base_ms / 1000.0,
            retry_max=dc.retry_max_ms / 1000.0,
            close_timeout=dc.close_timeout_s,
            enrich=self.enricher.enrich,
            redact=self._build_redactor(),
            consent_log=(self.consent_log_name, self.consent_log),
        )
        self.is_bot = self._build_bot_filter()
        from .ui import UI

        self.ui = UI(self)
        # The rights layer: export, erasure, opt-out links (it registers the opt-out page
        # with the UI); it opens nothing until first used.
        from .rights import Rights

        self.rights = Rights(config, engine=self)
        self._closed = False

    # ------------------------------------------------------------------ building

    def _build_enricher(self) -> Any:
        """The enrichment step of the dispatcher, from ``[resolve]``."""
        from .resolve.anonymize import DailySalt
        from .resolve.enrich import Enricher
        from .resolve.useragent import UAClassifier

        rc = self.config.resolve
        resolver = None
        if rc.reverse_dns:
            from .resolve.rdns import ReverseResolver

            resolver = ReverseResolver(
                nameservers=list(rc.rdns_nameservers) or None,
                port=rc.rdns_port,
                timeout=rc.rdns_timeout_ms / 1000.0,
                verify=rc.rdns_verify,
            )
        self.resolver = resolver
        self.ip_salt = DailySalt(self.ring.newest) if rc.anonymize_ip == "hash" else None
        return Enricher(
            trusted_proxies=rc.trusted_proxies,
            anonymize=rc.anonymize_ip,
            v4_prefix=rc.ipv4_prefix,
            v6_prefix=rc.ipv6_prefix,
            salt=self.ip_salt,
            ua=UAClassifier(),
            resolver=resolver,
            domain_purpose=rc.domain_purpose,
            rdns_deadline_s=min(0.5, rc.rdns_timeout_ms / 1000.0),
            claimed_email=rc.claimed_email,
        )

    def _build_redactor(self) -> Callable[[Any], Any]:
        """Redaction, always the last step before a sink."""
        from .resolve.redact import Redactor

        fields = self.config.resolve.pii_fields
        redactor = Redactor(field_purposes=fields) if fields else Redactor()
        return redactor.redact

    def stored_ip(self, ctx: RequestContext) -> str | None:
        """The client address as events store it (after anonymisation)."""
        from .resolve.anonymize import anonymize_ip
        from .resolve.clientip import client_ip

        rc = self.config.resolve
        environ = ctx.environ
        ip = client_ip(
            environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), rc.trusted_proxies
        )
        salt = self.ip_salt.current() if self.ip_salt is not None else b""
        return anonymize_ip(
            ip, rc.anonymize_ip, salt=salt, v4_prefix=rc.ipv4_prefix, v6_prefix=rc.ipv6_prefix
        )

    def _build_bot_filter(self) -> Callable[[str | None], bool]:
        from .resolve.useragent import BotFilter

        return BotFilter(empty_is_bot=False)

    # ------------------------------------------------------------------ context

    def context(self, environ: MutableMapping[str, Any]) -> RequestContext:
        """A new request context (the caller stores it in the environ)."""
        self.counters["requests"].incr()
        return RequestContext(self, environ, self.clock())

    def read_cookies(self, header: str | None) -> dict[str, list[str]]:
        """Our cookies in a ``Cookie`` header (the result is shared: read it, do not change
        it). A browser sends the same header again and again, so the answer is remembered
        per header (bounded; only headers of ordinary size)."""
        if not header or "cmw_" not in header:
            return _NO_COOKIES
        found = self._cookie_cache.get(header)
        if found is None:
            found = find_cookies(header, self._our_names)
            if len(header) <= 4096:
                _bounded_put(self._cookie_cache, header, found)
        return found

    # ------------------------------------------------------------------ consent

    def _verify_prefs(self, raw: str, now: float) -> tuple[StoredConsent | None, Any] | None:
        """(stored consent, meta) for one prefs cookie value, or ``None`` if it does not
        verify. ``meta`` is ``(app prefs, old_key, signed_at)``."""
        hit = self._prefs_cache.get(raw)
        if hit is not None:
            stored, meta, valid_until = hit
            if now <= valid_until and now >= meta[2] - 30:
                return stored, meta
        verified = self.prefs_signer.loads(raw, self.prefs_max_age)
        if verified is None:
            self.counters["bad_cookie"].incr()
            log.debug("consentmw: a prefs cookie did not verify; treated as no consent")
            return None
        stored = stored_from_payload(verified.payload)
        if stored is None:
            self.counters["bad_cookie"].incr()
            log.debug("consentmw: a prefs cookie had a malformed payload; treated as no consent")
            return None
        prefs = verified.payload.get("p")
        meta = (prefs if isinstance(prefs, dict) else {}, verified.old_key, verified.signed_at)
        _bounded_put(
            self._prefs_cache, raw, (stored, meta, verified.signed_at + self.prefs_max_age)
        )
        return stored, meta

    def load_prefs(self, ctx: RequestContext) -> None:
        values = ctx.cookie_values(self.names.prefs)
        stored: StoredConsent | None = None
        meta: Any = None
        if values:
            now = ctx.now
            candidates = []
            for raw in values[:8]:
                result = self._verify_prefs(raw, now)
                if result is not None:
                    candidates.append(result)
            if len(candidates) == 1:
                stored, meta = candidates[0]
            elif candidates:
                stored, meta = _most_restrictive(candidates)
        ctx._stored = stored
        ctx._prefs_meta = meta

    def decide(self, ctx: RequestContext) -> ConsentState:
        environ = ctx.environ
        gpc = environ.get(self._gpc_key) == "1"
        dnt = self._honor_dnt and environ.get("HTTP_DNT") == "1"
        country = environ.get(self._country_key) if self._country_key else None
        if ctx._stored_changed:
            return self._decide_uncached(ctx, gpc, dnt, country)
        values = ctx.cookie_values(self.names.prefs)
        raw = values[0] if len(values) == 1 else "\x00".join(values)
        key = (raw, gpc, dnt, country)
        hit = self._state_cache.get(key)
        now = ctx.now
        if hit is not None and now <= hit[3]:
            ctx._stored = hit[1]
            ctx._prefs_meta = hit[2]
            return hit[0]
        state = self._decide_uncached(ctx, gpc, dnt, country)
        stored = ctx._stored
        pending_notice = stored is not None and stored.notice_version and not stored.decided
        # Only what verified (or no cookie at all) is remembered: a key made of unverified,
        # client-chosen values would let anyone fill the cache with garbage.
        cacheable = (
            (stored is not None or not raw)
            and len(key[0]) <= 4096
            and (country is None or len(country) <= 8)
        )
        if (
            cacheable
            and not state.accepted_by_notice
            and not state.notice_shown
            and not pending_notice
        ):
            valid_until = float("inf")
            if stored is not None and ctx._prefs_meta is not None:
                valid_until = ctx._prefs_meta[2] + self.prefs_max_age
                if stored.decided:
                    valid_until = min(valid_until, stored.decided_at + self.prefs_max_age)
            _bounded_put(self._state_cache, key, (state, stored, ctx._prefs_meta, valid_until))
        return state

    def _decide_uncached(
        self, ctx: RequestContext, gpc: bool, dnt: bool, country: str | None
    ) -> ConsentState:
        stored = ctx.stored()
        environ = ctx.environ
        continued_use = (
            environ.get("REQUEST_METHOD") == "GET"
            and environ.get("HTTP_SEC_FETCH_DEST", "document") == "document"
            and not self.is_endpoint(environ.get("PATH_INFO", ""))
        )
        state = decide(
            self.config,
            stored,
            now=ctx.now,
            gpc=gpc,
            dnt=dnt,
            country=country,
            continued_use=continued_use,
        )
        if state.accepted_by_notice:
            state = self._accept_by_notice(ctx, stored, state, gpc, dnt, country)
        return state

    def _accept_by_notice(
        self,
        ctx: RequestContext,
        stored: StoredConsent | None,
        state: ConsentState,
        gpc: bool,
        dnt: bool,
        country: str | None,
    ) -> ConsentState:
        """Continued use after the notice: record the acceptance (the consent log first)."""
        new, mechanism = apply_choice(self.config, "notice", (), previous=stored, now=ctx.now)
        if not self._log_decision(ctx, new, mechanism, strict=True):
            # No proof, no acceptance: this request stays at the model's default.
            return decide(self.config, None, now=ctx.now, gpc=gpc, dnt=dnt, country=country)
        self.counters["notice_acceptances"].incr()
        ctx._stored = new
        ctx._stored_changed = True
        return decide(self.config, new, now=ctx.now, gpc=gpc, dnt=dnt, country=country)

    # ------------------------------------------------------------------ jars

    def prefs_jar(self, ctx: RequestContext) -> Jar:
        def load() -> Mapping[str, Any] | None:
            ctx.stored()
            meta = ctx._prefs_meta
            if meta is None or not meta[0]:
                return None
            return _detached(meta[0])

        name = self.names.prefs

        def measure(data: Mapping[str, Any]) -> int:
            stored = ctx.stored()
            payload = stored.to_payload() if stored is not None else {}
            if data:
                payload["p"] = dict(data)
            return self._overhead[name] + self.prefs_signer.signed_size(payload)

        return Jar("prefs", name, load, measure=measure)

    def _load_jar(
        self, ctx: RequestContext, name: str, signer: ValueSigner, max_age: float
    ) -> tuple[Mapping[str, Any], int, bool] | None:
        for raw in ctx.cookie_values(name)[:4]:
            verified = signer.loads(raw, max_age)
            if verified is None:
                self.counters["bad_cookie"].incr()
                continue
            data = verified.payload.get("d", {})
            if not isinstance(data, dict):
                self.counters["bad_cookie"].incr()
                continue
            return verified.payload, verified.signed_at, verified.old_key
        return None

    def session_jar(self, ctx: RequestContext) -> SessionJar:
        loaded: list[Any] = []

        def load() -> Mapping[str, Any] | None:
            found = self._load_jar(
                ctx, self.names.session, self.session_signer, self.session_max_age
            )
            loaded.append(found)
            if found is None:
                return None
            return _detached(found[0].get("d", {}))

        def load_id() -> str | None:
            found = loaded[0] if loaded else None
            if found is None:
                return None
            sid = found[0].get("sid")
            if not isinstance(sid, str) or not 8 <= len(sid) <= 64:
                return None
            _, signed_at, old_key = found
            if old_key or ctx.now - signed_at > self.session_max_age / 2:
                jar.modified = True  # re-sign: newest key, fresh timestamp
            return sid

        name = self.names.session

        def measure(data: Mapping[str, Any]) -> int:
            sid = jar._id or "x" * 22  # an id of the length new_id() gives
            payload = {"sid": sid, "d": dict(data)}
            return self._overhead[name] + self.session_signer.signed_size(payload)

        jar = SessionJar(name, load, load_id, new_id, measure=measure)
        return jar

    def cart_jar(self, ctx: RequestContext) -> Jar:
        def load() -> Mapping[str, Any] | None:
            found = self._load_jar(ctx, self.names.cart, self.cart_signer, self.cart_max_age)
            if found is None:
                return None
            if found[2]:
                jar.modified = True  # signed with an older key: re-sign
            return _detached(found[0].get("d", {}))

        name = self.names.cart

        def measure(data: Mapping[str, Any]) -> int:
            return self._overhead[name] + self.cart_signer.signed_size({"d": dict(data)})

        jar = Jar("cart", name, load, measure=measure)
        return jar

    # ------------------------------------------------------------------ visitor

    def _ensure_visitor_id(self, ctx: RequestContext) -> str:
        stored = ctx.stored()
        if stored is not None and stored.visitor_id:
            return stored.visitor_id
        base = stored if stored is not None else StoredConsent()
        from dataclasses import replace

        vid = new_id()
        ctx.set_stored(replace(base, visitor_id=vid), same_decision=True)
        return vid

    def tracking_granted(self, ctx: RequestContext) -> bool:
        tp = self.tracking_purpose
        return tp is not None and tp in ctx.state().granted

    def visitor(self, ctx: RequestContext) -> Visitor:
        if not self.tracking_granted(ctx):
            return Visitor(None, None, None, None)
        info = ctx._info or self.request_info(ctx)
        return Visitor(info.visitor_id, info.session_id, self.stored_ip(ctx), info.email)

    def _hook_email(self, ctx: RequestContext) -> str | None:
        if ctx._email is not None or self.email_hook is None:
            return ctx._email
        try:
            raw = self.email_hook(ctx.environ)
        except Exception:
            log.warning(
                "consentmw: the e-mail hook %s raised; ignored",
                self.config.resolve.email_hook,
                exc_info=True,
            )
            return None
        if raw:
            from .resolve.email import normalize_email

            ctx._email = normalize_email(raw)
        return ctx._email

    def _session_id(self, ctx: RequestContext) -> str:
        """The session id for events: read from the verified cookie when the application
        has not opened the session (no jar to build for that), else from the jar, which
        starts a session if there is none."""
        if ctx._session is None:
            values = ctx.cookie_values(self.names.session)
            if len(values) == 1:
                verified = self.session_signer.loads(values[0], self.session_max_age)
                if verified is not None and not verified.old_key:
                    sid = verified.payload.get("sid")
                    fresh = ctx.now - verified.signed_at <= self.session_max_age / 2
                    if isinstance(sid, str) and 8 <= len(sid) <= 64 and fresh:
                        return sid
        return ctx.session.ensure_id()

    def request_info(self, ctx: RequestContext) -> RequestInfo:
        """The shared part of this request's user-level events (tracking purpose granted)."""
        environ = ctx.environ
        state = ctx.state()
        vid = self._ensure_visitor_id(ctx)
        sid = self._session_id(ctx)
        info = RequestInfo(
            policy_version=state.policy_version,
            purposes=state.ordered,
            aggregate=False,
            visitor_id=vid,
            session_id=sid,
            method=environ.get("REQUEST_METHOD"),
            path=_request_path(environ),
            referrer=environ.get("HTTP_REFERER"),
            email=self._hook_email(ctx),
            facts=ctx.facts(),
        )
        ctx._info = info
        return info

    def aggregate_info(self, ctx: RequestContext) -> RequestInfo:
        """Anonymous events: no visitor or session id, no IP, no e-mail; the referrer is cut
        to its origin and only a coarse user-agent class is kept."""
        environ = ctx.environ
        state = ctx.state()
        referrer = environ.get("HTTP_REFERER")
        if referrer:
            referrer = "/".join(referrer.split("/", 3)[:3])[:200]
        ua = environ.get("HTTP_USER_AGENT")
        return RequestInfo(
            policy_version=state.policy_version,
            purposes=state.ordered,
            aggregate=True,
            visitor_id=None,
            session_id=None,
            method=environ.get("REQUEST_METHOD"),
            path=_request_path(environ),
            referrer=referrer,
            email=None,
            facts=None if ua is None else _ua_only(ua),
        )

    def identify(self, ctx: RequestContext, email: object) -> bool:
        if not isinstance(email, str) or not self.tracking_granted(ctx):
            return False
        from .resolve.email import normalize_email

        normalized = normalize_email(email)
        if normalized is None:
            return False
        ctx._email = normalized
        info = self.request_info(ctx)
        return self.dispatcher.enqueue(("identify", None, time.time(), {}, info, None))

    # ------------------------------------------------------------------ responses

    def _rule_for(self, name: str) -> Any:
        hit = self._rule_cache.get(name, False)
        if hit is False:
            hit = self.config.cookie_rule(name)
            _bounded_put(self._rule_cache, name, hit)
        return hit

    def allow_set_cookie(self, ctx: RequestContext, value: str) -> tuple[bool, bool]:
        """May this application ``Set-Cookie`` go out? Returns ``(allowed, consent_based)``."""
        name = set_cookie_name(value)
        if name in self._reserved:
            self.counters["reserved_cookie_blocked"].incr()
            log.warning(
                "consentmw: the application set %s, which is consentmw's own; removed", name
            )
            return False, False
        if name in self._necessary:
            return True, False
        rule = self._rule_for(name)
        if rule is None:
            policy = self.config.cookie_settings.undeclared
            if policy == "allow":
                return True, False
            if policy == "report":
                self.counters["cookies_reported"].incr()
                log.info("consentmw: undeclared cookie %s set by the application", name[:64])
                return True, False
            if is_deletion(value, ctx.now):
                return True, False
            self.counters["cookies_blocked"].incr()
            log.info(
                "consentmw: undeclared cookie %s removed (cookie_settings.undeclared)", name[:64]
            )
            return False, False
        if rule.purpose in self.config.required:
            return True, False
        if rule.purpose in ctx.state().granted or is_deletion(value, ctx.now):
            return True, True
        self.counters["cookies_blocked"].incr()
        return False, True

    def filter_headers(
        self, ctx: RequestContext, headers: Iterable[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], bool]:
        """The application's headers without the cookies it may not set, and whether the
        response depends on consent."""
        out: list[tuple[str, str]] = []
        dependent = ctx._consent_read
        for item in headers:
            key = item[0]
            if len(key) == 10 and key.lower() == "set-cookie":
                allowed, based = self.allow_set_cookie(ctx, item[1])
                dependent = dependent or based
                if not allowed:
                    continue
            out.append(item)
        return out, dependent

    def our_cookies(self, ctx: RequestContext) -> list[CookieSpec]:
        """Our jars' cookies that changed (and re-signing, deletions)."""
        out: list[CookieSpec] = []
        writer = self.writer
        state = ctx._consent
        # The notice counts as shown only where a banner was really put on the page: a
        # redirect, an API answer or an image that merely computed the state shows nothing.
        if state is not None and state.notice_shown and ctx.notice_rendered:
            stored = ctx.stored()
            if stored is None or stored.notice_version != self.config.policy.version:
                from dataclasses import replace

                ctx.set_stored(
                    replace(stored or StoredConsent(), notice_version=self.config.policy.version),
                    same_decision=True,
                )
        prefs_jar = ctx._prefs
        meta = ctx._prefs_meta
        if (
            ctx._stored_changed
            or (prefs_jar is not None and prefs_jar.modified)
            or (meta is not None and meta[1])
        ):
            stored = ctx.stored()
            payload = stored.to_payload() if stored is not None else {}
            prefs_data = (
                prefs_jar.snapshot() if prefs_jar is not None else (meta[0] if meta else {})
            )
            if prefs_data:
                payload["p"] = prefs_data
            out.append(
                writer.cookie(
                    self.names.prefs,
                    self.prefs_signer.dumps(payload),
                    max_age=self.prefs_max_age,
                    shared=True,
                )
            )
        session = ctx._session
        if session is not None and session.modified:
            data = session.snapshot()
            sid = session.id
            if sid is None and not data:
                if ctx.cookie_values(self.names.session):
                    out.append(writer.deletion(self.names.session))
            else:
                if sid is None:
                    sid = session.ensure_id()
                out.append(
                    writer.cookie(
                        self.names.session,
                        self.session_signer.dumps({"sid": sid, "d": data}),
                        max_age=None,
                    )
                )
        cart = ctx._cart
        if cart is not None and cart.modified:
            data = cart.snapshot()
            if not data:
                if ctx.cookie_values(self.names.cart):
                    out.append(writer.deletion(self.names.cart))
            else:
                out.append(
                    writer.cookie(
                        self.names.cart,
                        self.cart_signer.dumps({"d": data}),
                        max_age=self.cart_max_age,
                    )
                )
        out.extend(ctx.extra_set_cookies)
        return out

    def finish(
        self,
        ctx: RequestContext,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        form: Mapping[str, Sequence[str]] | None = None,
    ) -> list[tuple[str, str]]:
        """The response headers to send: the application's, filtered, plus ours as
        ``Set-Cookie`` values (:meth:`finish_response`, rendered for WSGI)."""
        return self.finish_response(ctx, status, headers, form=form).wsgi_headers()

    def finish_response(
        self,
        ctx: RequestContext,
        status: int,
        headers: Iterable[tuple[str, str]],
        *,
        form: Mapping[str, Sequence[str]] | None = None,
    ) -> Outcome:
        """Decide what goes out with an application's response (its ``Set-Cookie`` values
        among ``headers``): the headers to keep and our cookies; the request's page visit
        and rule-based actions are queued, the UI's insertion prepared."""
        out, dependent = self.filter_headers(ctx, headers)
        if self.tracking.page_visits or self.config.tracking.actions:
            self._track_response(ctx, status, out, form)
        self._sweep_ungranted(ctx)
        # Before our cookies are written: what the UI injects may start the session (the
        # banner's CSRF token) and may depend on consent (read here, so marked private below).
        self.ui.prepare(ctx, status, out)
        placed = ctx.environ.get(PLACED_KEY)
        if placed:
            self._skip_placed(ctx, placed, out)
        try:
            ours = self.our_cookies(ctx)
        except Exception as exc:  # JarOverflowError / TypeError from a nested mutation
            self.counters["jar_overflow"].incr()
            log.error("consentmw: a cookie jar could not be written: %s", exc)
            ours = []
        # A response carrying one of our cookies is this visitor's alone, whatever the
        # application said about caching it.
        if dependent or ctx._consent_read or ours:
            mark_private(out)
        return Outcome(out, ours)

    # ------------------------------------------------------------------ tracking

    def _track_response(
        self,
        ctx: RequestContext,
        status: int,
        headers: Sequence[tuple[str, str]],
        form: Mapping[str, Sequence[str]] | None,
    ) -> None:
        environ = ctx.environ
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        tracking = self.tracking
        if method in ("HEAD", "OPTIONS") or tracking.ignores(path):
            return
        for key in _PREFETCH_HEADERS:
            value = environ.get(key)
            if value and "prefetch" in value.lower():
                return
        if tracking.ignore_bots and self.is_bot(environ.get("HTTP_USER_AGENT")):
            return
        state = ctx.state()
        granted = state.granted
        tp = self.tracking_purpose
        now = time.time()
        user_level = tp is not None and tp in granted
        if tracking.page_visits:
            if user_level:
                info = ctx._info or self.request_info(ctx)
                self.dispatcher.enqueue(("page_visit", None, now, {}, info, status))
            elif tracking.aggregate_without_consent:
                self.dispatcher.enqueue(
                    ("page_visit", None, now, {}, self.aggregate_info(ctx), status)
                )
        if self._request_rules and status < 400:
            for rule in self._request_rules:
                if rule.matches_request(method, path):
                    purpose = rule.purpose or tp
                    if purpose is None or purpose not in granted:
                        continue
                    props: dict[str, Any] = {}
                    if rule.capture and form:
                        from .resolve.email import capture_fields

                        props = dict(capture_fields(form, rule.capture))
                    email = None
                    if "email" in props:
                        from .resolve.email import normalize_email

                        email = normalize_email(props.pop("email"))
                    if user_level:
                        info = ctx._info or self.request_info(ctx)
                        if email and email != info.email:
                            info = _with_email(info, email)
                    else:
                        info = self.aggregate_info(ctx)
                    self.dispatcher.enqueue(("action", rule.name, now, props, info, status))
        if self._attachment_rules and status < 400:
            disposition = _header(headers, "content-disposition")
            if disposition:
                kind, options = parse_options_header(disposition)
                if kind.lower() == "attachment":
                    for rule in self._attachment_rules:
                        purpose = rule.purpose or tp
                        if purpose is None or purpose not in granted:
                            continue
                        info = (
                            (ctx._info or self.request_info(ctx))
                            if user_level
                            else self.aggregate_info(ctx)
                        )
                        props = {"filename": options.get("filename", "")[:200]}
                        self.dispatcher.enqueue(("action", rule.name, now, props, info, status))

    def capture_wanted(self, method: str, path: str) -> bool:
        """Does a rule want form fields of this request (so the body must be teed)?"""
        rules = self._capture_rules
        return bool(rules) and any(r.matches_request(method, path) for r in rules)

    # ------------------------------------------------------------------ consent log

    def _log_decision(
        self, ctx: RequestContext, new: StoredConsent, mechanism: str, *, strict: bool
    ) -> bool:
        """Write the decision to the consent log (synchronously: it is the proof) and queue
        the ``consent`` event. ``False`` if the log could not be written and ``strict``."""
        now = time.time()
        assert new.consent_id is not None
        record = ConsentRecord(
            id=str(uuid.uuid4()),
            ts=format_ts(now),
            site=self.config.site.name,
            policy_version=self.config.policy.version,
            granted=tuple(sorted(new.granted)),
            mechanism=mechanism,
            subject=new.consent_id,
        )
        try:
            self.consent_log.append_consent(record)
        except Exception as exc:
            self.counters["consent_log_failed"].incr()
            log.error(
                "consentmw: the consent log %s could not be written: %s", self.consent_log_name, exc
            )
            if strict:
                return False
            self.dispatcher.spool_consent(record)
        self.counters["consent_decisions"].incr()
        environ = ctx.environ
        # The event may be used for what the visitor allows on this request: the decision,
        # less what a GPC (or honoured DNT) signal turns off right now.
        effective = new.granted
        if environ.get(self._gpc_key) == "1" or (
            self._honor_dnt and environ.get("HTTP_DNT") == "1"
        ):
            effective = effective - self.config.gpc_purposes
        tp = self.tracking_purpose
        user_level = tp is not None and tp in effective
        props: dict[str, Any] = {"mechanism": mechanism, "granted": sorted(new.granted)}
        purposes = tuple(sorted(effective))
        if user_level:
            props["consent_id"] = new.consent_id
            props["record_id"] = record.id
            sid = ctx.session.ensure_id()
            info = RequestInfo(
                policy_version=self.config.policy.version,
                purposes=purposes,
                aggregate=False,
                visitor_id=new.visitor_id,
                session_id=sid,
                method=environ.get("REQUEST_METHOD"),
                path=_request_path(environ),
                referrer=None,
                email=self._hook_email(ctx),
                facts=ctx.facts(),
            )
        else:
            info = RequestInfo(
                policy_version=self.config.policy.version,
                purposes=purposes,
                aggregate=True,
                visitor_id=None,
                session_id=None,
                method=environ.get("REQUEST_METHOD"),
                path=_request_path(environ),
                referrer=None,
                email=None,
                facts=None,
            )
        self.dispatcher.enqueue(("consent", mechanism, now, props, info, None))
        return True

    # ------------------------------------------------------------------ endpoints

    def is_endpoint(self, path: str) -> bool:
        mount = self.mount
        if path.startswith(mount):
            return len(path) == len(mount) or path[len(mount)] == "/"
        return path == "/.well-known/gpc.json"

    def csrf_token(self, ctx: RequestContext) -> str:
        """A token for the consent forms, bound to the visitor's session (started if need be)."""
        sid = ctx.session.ensure_id()
        return self.csrf_signer.dumps({"b": sid})

    def check_csrf(self, ctx: RequestContext, token: str | None) -> bool:
        if not token:
            return False
        verified = self.csrf_signer.loads(token, _CSRF_MAX_AGE)
        if verified is None:
            return False
        sid = ctx.session.id
        bound = verified.payload.get("b")
        import hmac

        return sid is not None and isinstance(bound, str) and hmac.compare_digest(bound, sid)

    def state_document(self, ctx: RequestContext, lang: str | None = None) -> dict[str, Any]:
        state = ctx.consent
        doc = state.to_dict()
        doc["purposes"] = [
            {
                "id": p.id,
                "title": p.text(lang)[0],
                "description": p.text(lang)[1],
                "required": p.required,
                "gpc_opt_out": p.gpc_opt_out,
            }
            for p in self.config.purposes.values()
        ]
        doc["csrf"] = self.csrf_token(ctx)
        doc["mount"] = self.mount
        return doc

    def request_scheme(self, environ: Mapping[str, Any]) -> str:
        """``http`` or ``https`` as the visitor sent it: ``X-Forwarded-Proto`` is believed
        only from ``resolve.trusted_proxies`` hops."""
        scheme = str(environ.get("wsgi.url_scheme", "http"))
        hops = self.config.resolve.trusted_proxies
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO")
        if hops and forwarded:
            values = [v.strip().lower() for v in str(forwarded).split(",")]
            if len(values) >= hops and values[-hops] in ("http", "https"):
                return values[-hops]
        return scheme

    def endpoint(
        self,
        ctx: RequestContext,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> ep.Response:
        """Answer a request to one of our endpoints (see :meth:`is_endpoint`); our cookies
        are rendered into its headers (:meth:`endpoint_response`, for WSGI)."""
        response, cookies = self.endpoint_response(ctx, read_body, scheme)
        response.headers.extend(("Set-Cookie", c.header()) for c in cookies)
        return response

    def endpoint_response(
        self,
        ctx: RequestContext,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> tuple[ep.Response, list[CookieSpec]]:
        """Answer a request to one of our endpoints: the response, and our cookies to send
        with it."""
        response = self._answer(ctx, read_body, scheme)
        try:
            ours = self.our_cookies(ctx)
        except Exception as exc:
            self.counters["jar_overflow"].incr()
            log.error("consentmw: a cookie jar could not be written: %s", exc)
            ours = []
        # Only what depends on the visitor is kept out of shared caches: the banner's assets
        # and gpc.json stay publicly cacheable.
        if ours or ctx._consent_read:
            mark_private(response.headers)
        return response, ours

    def _answer(
        self, ctx: RequestContext, read_body: Callable[[int], bytes], scheme: str
    ) -> ep.Response:
        environ = ctx.environ
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if path == "/.well-known/gpc.json":
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD")
            return self.ui.gpc_document()
        sub = path[len(self.mount) :]
        if sub in ("", "/"):
            if method in ("GET", "HEAD"):
                return ep.Response.json(self.state_document(ctx, self.ui.language(environ)))
            if method != "POST":
                return _not_allowed("GET, HEAD, POST")
            return self._post_choice(ctx, read_body, scheme)
        return self.ui.page(ctx, sub, method, read_body, scheme)

    def refuse(self, ctx: RequestContext, problem: ep.Problem, wants_json: bool) -> ep.Response:
        if problem.status == 403:
            self.counters["csrf_refused"].incr()
        if wants_json:
            return ep.Response.json({"error": problem.reason}, problem.status)
        return self.ui.problem_page(ctx, problem)

    def read_form_body(
        self, ctx: RequestContext, read_body: Callable[[int], bytes]
    ) -> tuple[str, bytes | list[tuple[str, str]]] | ep.Problem:
        """Content type (415), size (413) and multipart parsing, in that order."""
        environ = ctx.environ
        kind = ep.content_kind(environ.get("CONTENT_TYPE"))
        if kind is None:
            return ep.Problem(415, "send application/x-www-form-urlencoded or application/json")
        length_raw = environ.get("CONTENT_LENGTH") or ""
        length: int | None = None
        if length_raw:
            try:
                length = int(length_raw)
            except ValueError:
                return ep.Problem(400, "bad Content-Length")
            if length < 0:
                return ep.Problem(400, "bad Content-Length")
            if length > ep.MAX_BODY:
                return ep.Problem(413, "the request body is too large")
        body = read_body(ep.MAX_BODY + 1 if length is None else length)
        if len(body) > ep.MAX_BODY:
            return ep.Problem(413, "the request body is too large")
        if kind != "multipart":
            return kind, body
        return _parse_multipart(environ.get("CONTENT_TYPE", ""), body)

    def _post_choice(
        self, ctx: RequestContext, read_body: Callable[[int], bytes], scheme: str
    ) -> ep.Response:
        environ = ctx.environ
        accept = environ.get("HTTP_ACCEPT", "")
        wants_json = "application/json" in accept and "text/html" not in accept
        problem = ep.check_cross_site(
            environ.get("HTTP_SEC_FETCH_SITE"),
            environ.get("HTTP_ORIGIN"),
            environ.get("HTTP_HOST"),
            scheme,
        )
        if problem is not None:
            self.counters["cross_site_refused"].incr()
            return self.refuse(ctx, problem, wants_json)
        body = self.read_form_body(ctx, read_body)
        if isinstance(body, ep.Problem):
            return self.refuse(
                ctx, body, wants_json or "json" in (environ.get("CONTENT_TYPE") or "")
            )
        kind, payload = body
        parsed = ep.parse_consent_body(
            kind, payload, self.config.purpose_ids, wants_json=wants_json
        )
        if isinstance(parsed, ep.Problem):
            return self.refuse(ctx, parsed, wants_json or kind == "json")
        token = parsed.csrf or environ.get("HTTP_X_CSRF_TOKEN")
        if not self.check_csrf(ctx, token):
            return self.refuse(
                ctx,
                ep.Problem(403, "the form expired; reload the page and choose again"),
                parsed.wants_json,
            )
        result = self.apply_decision(
            ctx, parsed.choice, parsed.purposes, back_to=ep.safe_next(parsed.next)
        )
        if result is not None:
            return self.refuse(ctx, result, parsed.wants_json)
        if parsed.wants_json:
            doc = self.state_document(ctx, self.ui.language(environ))
            return ep.Response.json(doc)
        return ep.Response.redirect(ep.safe_next(parsed.next))

    def apply_decision(
        self,
        ctx: RequestContext,
        choice: str,
        purposes: Iterable[str],
        *,
        back_to: str | None = None,
    ) -> ep.Problem | None:
        """Store a decision: consent log first, then the cookie, the expiry of withdrawn
        purposes' cookies and the ``consent`` event. A :class:`Problem` (503) when an
        acceptance could not be logged. ``back_to``: the page the decision was made on
        (its path gives more places withdrawn cookies may have been set for)."""
        previous = ctx.stored()
        new, mechanism = apply_choice(self.config, choice, purposes, previous=previous, now=ctx.now)
        accepts = bool(new.granted - self.config.required)
        if not self._log_decision(ctx, new, mechanism, strict=accepts):
            return ep.Problem(503, "your choice could not be recorded; please try again shortly")
        ctx.set_stored(new)
        # Whatever the browser still holds for purposes not granted now (withdrawn ones, or
        # cookies scripts set before the first choice) is expired in this response.
        ungranted = self.config.purpose_ids - new.granted
        if ungranted:
            self._expire_withdrawn(ctx, frozenset(ungranted), back_to)
        return None

    def _sweep_ungranted(self, ctx: RequestContext) -> None:
        """Expire cookies of ungranted purposes the browser still sends (set by a script
        before a withdrawal, or for a path the withdrawal response could not reach). A
        regular expression over the ``Cookie`` header finds out first, cheaply, whether any
        declared cookie is there at all."""
        finder = self._declared_finder
        header = ctx.environ.get("HTTP_COOKIE")
        if finder is None or not header:
            return
        hint = self._declared_hint
        if hint is not None and hint.search(header) is None:
            return  # none of the names is even in the header
        ungranted = self._optional - ctx.state().granted
        if ungranted and finder.search(header) is not None:
            self._expire_withdrawn(ctx, ungranted)

    def _expire_withdrawn(
        self, ctx: RequestContext, withdrawn: frozenset[str], back_to: str | None = None
    ) -> None:
        environ = ctx.environ
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
        domains = parent_domains(host, self.config.cookie_settings.domain)
        paths = path_ancestors(str(environ.get("PATH_INFO", "/")), back_to or "/")
        seen: set[str] = set()
        for name, _ in split_cookie_header(environ.get("HTTP_COOKIE")):
            if name in seen or name in self._reserved:
                continue
            rule = self._rule_for(name)
            if rule is not None and rule.purpose in withdrawn:
                seen.add(name)
                ctx.extra_set_cookies.extend(self.writer.foreign_deletions(name, domains, paths))

    # ------------------------------------------------------------------ template helpers

    def banner_markup(self, ctx: RequestContext) -> str:
        """The banner, for a template that places it itself (the Jinja global
        ``consent_banner()``, the Django tag ``{% consent_banner %}``): empty once the
        visitor has decided. The response then gets no second, inserted banner."""
        _placed(ctx).add("banner")
        if ctx.consent.decided:  # reading it makes the page vary by cookie
            return ""
        ctx.notice_rendered = True
        return self._markup(ctx, banner=True)

    def settings_link_markup(self, ctx: RequestContext) -> str:
        """The "Cookie settings" link to the preferences page, for a template that places
        it itself; the response then gets no inserted link."""
        _placed(ctx).add("settings_link")
        return self._markup(ctx, link=True)

    def _markup(self, ctx: RequestContext, *, link: bool = False, banner: bool = False) -> str:
        from .ui import render

        ui = self.ui
        environ = ctx.environ
        nonce = ui._nonce(environ)
        texts = ui.texts(environ)
        parts = [render.stylesheet(ui._css_url, nonce)]
        if link:
            parts.append(render.settings_link(f"{self.mount}/preferences", texts))
        if banner:
            parts.append(render.banner(ui._banner_view(ctx, texts, nonce)))
        return "".join(parts)

    def _skip_placed(
        self, ctx: RequestContext, placed: set[str], headers: list[tuple[str, str]]
    ) -> None:
        """Leave out of the UI's insertion what the page's template placed itself."""
        from .ui import PLAN_KEY, InjectionPlan, _vary

        if len(self.ui.languages) > 1:
            _vary(headers, "Accept-Language")
        plan = ctx.environ.get(PLAN_KEY)
        if not isinstance(plan, InjectionPlan) or not plan.body:
            return
        ui = self.config.ui
        link = ui.settings_link and "settings_link" not in placed
        banner = ui.banner and "banner" not in placed and not ctx.state().decided
        body = b""
        if link or banner:
            body = self._markup(ctx, link=link, banner=banner).encode("ascii", "xmlcharrefreplace")
        if body or plan.head or plan.gating:
            from dataclasses import replace

            ctx.environ[PLAN_KEY] = replace(plan, body=body)
        else:
            del ctx.environ[PLAN_KEY]

    # ------------------------------------------------------------------ lifecycle

    def stats(self) -> dict[str, Any]:
        out = self.dispatcher.stats()
        out["middleware"] = {k: c.value for k, c in self.counters.items()}
        if self.resolver is not None:
            out["reverse_dns"] = self.resolver.stats()
        return out

    def close(self, timeout: float | None = None) -> bool:
        if self._closed:
            return True
        self._closed = True
        ok = self.dispatcher.close(timeout)
        self.rights.close()
        if self.resolver is not None:
            self.resolver.close()
        for sink in self.sinks.values():
            try:
                sink.close()
            except Exception:
                log.warning("consentmw: closing a sink failed", exc_info=True)
        self.spool.close()
        return ok


# ---------------------------------------------------------------------- helpers


def _placed(ctx: RequestContext) -> set[str]:
    placed = ctx.environ.get(PLACED_KEY)
    if not isinstance(placed, set):
        placed = ctx.environ[PLACED_KEY] = set()
    return placed


def _most_restrictive(
    candidates: Sequence[tuple[StoredConsent | None, Any]],
) -> tuple[StoredConsent | None, Any]:
    """Duplicate prefs cookies (say, a host cookie and one tossed in from a sibling
    subdomain): the grants all of them agree on, nothing more."""
    decided = [c for c in candidates if c[0] is not None and c[0].decided]
    if len(decided) < len(candidates):
        undecided = [c for c in candidates if c[0] is None or not c[0].decided]
        return undecided[0]
    from dataclasses import replace

    granted = frozenset.intersection(*(c[0].granted for c in decided if c[0] is not None))
    base = min(
        decided, key=lambda c: (len(c[0].granted) if c[0] else 0, c[0].decided_at if c[0] else 0)
    )
    assert base[0] is not None
    return replace(base[0], granted=granted), base[1]


def _declared_finder(rules: Sequence[Any]) -> re.Pattern[str] | None:
    """One expression that finds any of these cookie rules' names in a ``Cookie`` header."""
    if not rules:
        return None
    alternatives = []
    for rule in rules:
        if rule.match == "exact":
            alternatives.append(re.escape(rule.name) + r"[ \t]*=")
        elif rule.match == "prefix":
            alternatives.append(re.escape(rule.name) + r"[^=;]*=")
        else:
            alternatives.append(f"(?:{rule.name})" + r"[ \t]*=")
    return re.compile(r"(?:^|;)[ \t]*(?:" + "|".join(alternatives) + ")")


def _declared_hint(rules: Sequence[Any]) -> re.Pattern[str] | None:
    """The rules' names as plain alternatives, when all are exact or prefix names: a header
    with none of them anywhere cannot match :func:`_declared_finder`, and this finds that
    out several times faster (the regular expression engine scans for the literals instead
    of trying the anchored pattern at every position)."""
    if not rules or any(rule.match not in ("exact", "prefix") for rule in rules):
        return None
    return re.compile("|".join(re.escape(rule.name) for rule in rules))


def _detached(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy the application may mutate: verified payloads are cached and shared."""
    if any(isinstance(v, (dict, list)) for v in data.values()):
        copied: dict[str, Any] = copy.deepcopy(dict(data))
        return copied
    return dict(data)


def _request_path(environ: Mapping[str, Any]) -> str:
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    # PEP 3333 environ strings are latin-1 decoded bytes; show them as UTF-8 where they are.
    if not path.isascii():
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            path = path.encode("latin-1").decode("utf-8")
    return path[:1024]


def _ua_only(ua: str) -> Any:
    from .events import RequestFacts

    return RequestFacts(user_agent=ua)


def _with_email(info: RequestInfo, email: str) -> RequestInfo:
    return RequestInfo(
        policy_version=info.policy_version,
        purposes=info.purposes,
        aggregate=info.aggregate,
        visitor_id=info.visitor_id,
        session_id=info.session_id,
        method=info.method,
        path=info.path,
        referrer=info.referrer,
        email=email,
        facts=info.facts,
    )


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def mark_private(headers: list[tuple[str, str]]) -> None:
    """Make a consent-dependent response vary by cookie and keep it out of shared caches."""
    vary_at = cc_at = -1
    for i, (key, _) in enumerate(headers):
        lower = key.lower()
        if lower == "vary":
            vary_at = i
        elif lower == "cache-control":
            cc_at = i
    if vary_at < 0:
        headers.append(("Vary", "Cookie"))
    else:
        key, value = headers[vary_at]
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if "*" not in parts and not any(p.lower() == "cookie" for p in parts):
            headers[vary_at] = (key, ", ".join([*parts, "Cookie"]))
    if cc_at < 0:
        headers.append(("Cache-Control", "private"))
    else:
        key, value = headers[cc_at]
        kept = [
            d.strip()
            for d in value.split(",")
            if d.strip() and d.strip().lower().split("=")[0] not in ("public", "s-maxage")
        ]
        if not any(d.lower() in ("private", "no-store") for d in kept):
            kept.insert(0, "private")
        headers[cc_at] = (key, ", ".join(kept))


def _not_allowed(allow: str) -> ep.Response:
    response = ep.Response.json({"error": "method not allowed"}, 405)
    response.headers.append(("Allow", allow))
    return response


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[str, list[tuple[str, str]]] | ep.Problem:
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import parse_form_data

    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    try:
        _, form, files = parse_form_data(
            environ, max_content_length=ep.MAX_BODY, max_form_parts=64, silent=False
        )
    except RequestEntityTooLarge:
        return ep.Problem(413, "the request body is too large")
    except ValueError:
        return ep.Problem(400, "malformed multipart body")
    try:
        if files:
            return ep.Problem(400, "file uploads are not accepted here")
        return "multipart", list(form.items(multi=True))
    finally:
        for f in files.values():
            f.close()


def json_dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))

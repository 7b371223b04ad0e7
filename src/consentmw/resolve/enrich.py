"""Turning the raw request facts of a batch of events into stored visitor fields.

The request thread captures ``REMOTE_ADDR``, ``X-Forwarded-For``, ``User-Agent``, ``From``
and ``Referer`` as they came (a :class:`~consentmw.events.RequestFacts`) and queues them with
the event. The dispatcher calls :meth:`Enricher.enrich` on a batch: it picks the client
address, resolves domains (one wait for the whole batch), classifies the user agent, takes
the claimed address from ``From``, and only then anonymises the address, so reverse DNS sees
the full address and the sink never does.

Consent is respected here as well as upstream: an aggregate event gets no address, domain or
e-mail and only a coarse user agent; a domain is looked up only for events whose purposes
include ``domain_purpose``. Redaction is a separate, later step
(:class:`~consentmw.resolve.redact.Redactor`). Do not call :meth:`Enricher.enrich` on the
request thread: it may wait up to ``rdns_deadline_s`` for DNS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..events import Event, RequestFacts
from .anonymize import ANONYMIZE_MODES, DailySalt, anonymize_ip
from .clientip import client_ip
from .email import claimed_email_from_header
from .rdns import ReverseResolver
from .useragent import BotFilter, UAClassifier

__all__ = ["Enricher"]


class Enricher:
    """Fill ``ip``, ``domain``, ``ua`` and ``claimed_email`` of queued events.

    ``trusted_proxies`` is the number of the operator's proxies in front of the application
    (see :func:`~consentmw.resolve.clientip.client_ip`). ``anonymize`` is the stored form of
    the address (``none``, ``truncate``, ``hash``, ``drop``; see
    :func:`~consentmw.resolve.anonymize.anonymize_ip`) with ``v4_prefix`` / ``v6_prefix`` for
    ``truncate`` and ``salt`` for ``hash``. ``ua`` classifies user agents (``None``: events
    get no ``ua``); ``resolver`` looks domains up (``None``: no reverse DNS) for events whose
    purposes include ``domain_purpose`` (``None``: for none), waiting at most
    ``rdns_deadline_s`` per batch.
    ``claimed_email`` takes the ``From`` header into ``claimed_email``. ``bot_filter`` backs
    :meth:`is_bot`.

    :raises ValueError: for an unknown ``anonymize`` mode, bad prefix lengths, the ``hash``
        mode without a ``salt``, or a negative ``trusted_proxies`` or deadline.
    """

    def __init__(
        self,
        *,
        trusted_proxies: int = 0,
        anonymize: str = "truncate",
        v4_prefix: int = 24,
        v6_prefix: int = 48,
        salt: DailySalt | None = None,
        ua: UAClassifier | None = None,
        resolver: ReverseResolver | None = None,
        domain_purpose: str | None = "analytics",
        rdns_deadline_s: float = 0.2,
        claimed_email: bool = True,
        bot_filter: BotFilter | None = None,
    ) -> None:
        if anonymize not in ANONYMIZE_MODES:
            raise ValueError(f"anonymize must be one of {ANONYMIZE_MODES}, not {anonymize!r}")
        if anonymize == "hash" and salt is None:
            raise ValueError("anonymize='hash' needs a salt (a DailySalt from a secret)")
        if trusted_proxies < 0 or rdns_deadline_s < 0:
            raise ValueError("trusted_proxies and rdns_deadline_s must not be negative")
        # Let anonymize_ip check the prefix lengths now rather than on the first event.
        anonymize_ip(
            "192.0.2.1", anonymize, salt=b"check", v4_prefix=v4_prefix, v6_prefix=v6_prefix
        )
        self.trusted_proxies = trusted_proxies
        self.anonymize = anonymize
        self.v4_prefix = v4_prefix
        self.v6_prefix = v6_prefix
        self.domain_purpose = domain_purpose
        self.rdns_deadline_s = rdns_deadline_s
        self.claimed_email = claimed_email
        self._salt = salt
        self._ua = ua
        self._resolver = resolver
        self._bots = bot_filter if bot_filter is not None else BotFilter()

    def is_bot(self, raw_ua: str | None) -> bool:
        """The request thread's cheap crawler check (see
        :class:`~consentmw.resolve.useragent.BotFilter`); no parsing, no I/O.
        """
        return self._bots(raw_ua)

    def __call__(self, batch: Sequence[tuple[Event, RequestFacts | None]]) -> None:
        """Same as :meth:`enrich`, so an enricher is a processor in a chain."""
        self.enrich(batch)

    def enrich(self, batch: Sequence[tuple[Event, RequestFacts | None]]) -> None:
        """Enrich each event of ``batch`` in place from its facts.

        Events without facts are left as they are, except that aggregate events always lose
        any address, domain and e-mail. Waits at most ``rdns_deadline_s`` in all for reverse
        DNS; names that arrive later are cached for the next batch. Never raises on hostile
        request values.
        """
        located: list[tuple[Event, str | None, bool]] = []
        # A batch repeats a few visitors many times: parse each address pair once per batch.
        # (Per batch only, so nothing about a visitor outlives it here.)
        picked: dict[tuple[str | None, str | None], str | None] = {}
        for event, facts in batch:
            if event.aggregate:
                self._enrich_aggregate(event, facts)
                continue
            if facts is None:
                continue
            pair = (facts.remote_addr, facts.forwarded_for)
            if pair in picked:
                ip = picked[pair]
            else:
                ip = picked[pair] = client_ip(pair[0], pair[1], self.trusted_proxies)
            wants_domain = (
                self._resolver is not None
                and ip is not None
                and self.domain_purpose is not None
                and self.domain_purpose in event.purposes
            )
            located.append((event, ip, wants_domain))
            if self._ua is not None:
                event.ua = self._ua.classify(facts.user_agent)
            event.claimed_email = (
                claimed_email_from_header(facts.from_header) if self.claimed_email else None
            )

        domains = {}
        if self._resolver is not None:
            # One wait for the whole batch: every address is submitted before waiting.
            wanted = {ip for _, ip, wants in located if wants and ip is not None}
            if wanted:
                domains = self._resolver.resolve_batch(wanted, self.rdns_deadline_s)

        salt = self._salt.current() if self._salt is not None and self.anonymize == "hash" else b""
        stored: dict[str | None, str | None] = {}
        for event, ip, wants_domain in located:
            found = domains.get(ip) if wants_domain and ip is not None else None
            event.domain = found.domain if found is not None else None
            # Only now, after reverse DNS had the full address.
            if ip not in stored:
                stored[ip] = anonymize_ip(
                    ip,
                    self.anonymize,
                    salt=salt,
                    v4_prefix=self.v4_prefix,
                    v6_prefix=self.v6_prefix,
                )
            event.ip = stored[ip]

    def _enrich_aggregate(self, event: Event, facts: RequestFacts | None) -> None:
        event.ip = None
        event.domain = None
        event.email = None
        event.claimed_email = None
        coarse: dict[str, Any] | None = None
        if facts is not None and self._ua is not None:
            coarse = self._ua.classify(facts.user_agent)
        elif event.ua is not None:
            coarse = event.ua
        if coarse is not None:
            # Device class and bot flag only: browser and OS families would split the
            # aggregate counts into cells small enough to point at someone.
            event.ua = {
                "browser": None,
                "os": None,
                "device": coarse.get("device", "other"),
                "is_bot": bool(coarse.get("is_bot", False)),
            }

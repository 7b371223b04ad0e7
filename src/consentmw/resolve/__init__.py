"""Visitor resolution and enrichment, and redaction before storage.

Each module solves one problem with pure functions and small classes configured by their
constructor's keyword arguments:

- :mod:`~consentmw.resolve.clientip` — the client address behind trusted proxies
  (request thread);
- :mod:`~consentmw.resolve.email` — strict e-mail normalisation, the ``From`` claim and form
  field capture (request thread);
- :mod:`~consentmw.resolve.useragent` — user-agent classification (dispatcher) and the cheap
  bot check (request thread);
- :mod:`~consentmw.resolve.anonymize` — what is stored of an address;
- :mod:`~consentmw.resolve.rdns` — forward-confirmed reverse DNS with caches and deadlines;
- :mod:`~consentmw.resolve.enrich` — all of the above applied to a dispatcher batch;
- :mod:`~consentmw.resolve.redact` — card numbers, secrets and personal fields, last before
  a sink.

Importing this package does not import dnspython (:class:`ReverseResolver` does, when
constructed).
"""

from __future__ import annotations

from .anonymize import ANONYMIZE_MODES, DailySalt, anonymize_ip
from .clientip import client_ip
from .email import capture_fields, claimed_email_from_header, normalize_email
from .enrich import Enricher
from .rdns import DomainResult, ReverseResolver, normalize_hostname
from .redact import Redactor, card_brand, luhn_valid, normalize_phone, redact_text
from .useragent import BotFilter, UAClassifier

__all__ = [
    "ANONYMIZE_MODES",
    "BotFilter",
    "DailySalt",
    "DomainResult",
    "Enricher",
    "Redactor",
    "ReverseResolver",
    "UAClassifier",
    "anonymize_ip",
    "capture_fields",
    "card_brand",
    "claimed_email_from_header",
    "client_ip",
    "luhn_valid",
    "normalize_email",
    "normalize_hostname",
    "normalize_phone",
    "redact_text",
]

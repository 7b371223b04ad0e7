"""Data-subject rights and the policy's promises about contact and sharing.

What the policy and the law promise a person, as tools for the operator:

- **access and portability** — :meth:`Rights.export` writes every event and consent record
  about a subject as one JSON document, streamed;
- **correction** — :meth:`Rights.rectify` corrects an e-mail address everywhere;
- **erasure** — :meth:`Rights.erase` removes the subject from every sink, the spool and the
  queues, keeping only pseudonymous proof of consent and, if they opted out, a keyed hash;
- **restriction and purpose-bound use** — :meth:`Rights.restrict` and :meth:`Rights.query`;
- **opt-out** — signed links (:meth:`Rights.optout_url`, RFC 8058 headers), the page that
  honours them, and suppression lists per channel (:meth:`Rights.is_suppressed`);
- **proof of consent** — :meth:`Rights.verify_receipts` and :meth:`Rights.receipts`;
- **aggregate reports** fit to share — :meth:`Rights.report`.

Each has a ``consentmw`` command (:mod:`consentmw.rights.cli`). In the web process use
``ConsentMiddleware.rights``; elsewhere ``Rights.open("consentmw.toml")``.
"""

from __future__ import annotations

from .export import ExportSummary
from .optout import OptoutRequest, OptoutTokenError, OptoutTokens
from .receipts import ChainReport, verify_log
from .reports import Report, neutralize_csv_cell
from .service import Erasure, Rectification, Rights, RightsError
from .subjects import Subject, SubjectError
from .suppression import CHANNELS, SuppressionList, normalize_address

__all__ = [
    "CHANNELS",
    "ChainReport",
    "Erasure",
    "ExportSummary",
    "OptoutRequest",
    "OptoutTokenError",
    "OptoutTokens",
    "Rectification",
    "Report",
    "Rights",
    "RightsError",
    "Subject",
    "SubjectError",
    "SuppressionList",
    "neutralize_csv_cell",
    "normalize_address",
    "verify_log",
]

"""The consent engine: what the visitor has granted, decided from plain values.

No environ, no I/O: :func:`decide` takes the stored choice (from the verified prefs cookie),
the configuration, the clock and three request signals (``Sec-GPC``, ``DNT``, the country),
and returns a :class:`ConsentState`. :func:`apply_choice` turns a banner or API decision into
the new stored choice.

Rules (DESIGN.md "Purposes and versions"):

- ``required`` purposes are always granted;
- without a stored decision, the model decides: ``opt-in`` grants nothing else, ``opt-out``
  everything, ``notice`` nothing on the request that shows the notice and everything once
  the visitor carries on (continued use after the notice counts as acceptance);
- a decision expires after ``policy.consent_max_age_days``;
- under a newer policy version a purpose stays granted only if its id was stored and still
  exists (and existed in the stored version, when ``policy.history`` says what that had);
  the banner asks again;
- ``Sec-GPC: 1`` (exactly) turns off every ``gpc_opt_out`` purpose for the request, and so
  does ``DNT: 1`` when ``policy.honor_dnt`` is set.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .config import Config

__all__ = [
    "CHOICES",
    "ConsentState",
    "StoredConsent",
    "apply_choice",
    "decide",
    "new_id",
    "stored_from_payload",
]

#: What a visitor can send to the consent endpoint.
CHOICES = ("accept_all", "reject_all", "custom")

_DAY = 86400.0


def new_id() -> str:
    """A random identifier for visitors, sessions and consent records (128 bits, url-safe)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class StoredConsent:
    """The choice kept in the prefs cookie.

    ``decided_at`` is 0 and ``granted`` empty while the visitor has not decided;
    ``notice_version`` records that the notice of that version was shown (``notice`` model);
    ``consent_id`` is the pseudonymous subject of the consent log; ``visitor_id`` exists only
    while the tracking purpose is granted.
    """

    granted: frozenset[str] = frozenset()
    version: str = ""
    decided_at: int = 0
    mechanism: str = ""
    consent_id: str | None = None
    visitor_id: str | None = None
    notice_version: str | None = None

    @property
    def decided(self) -> bool:
        return self.decided_at > 0

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.decided:
            out["g"] = sorted(self.granted)
            out["pv"] = self.version
            out["t"] = self.decided_at
            out["m"] = self.mechanism
        if self.consent_id:
            out["cid"] = self.consent_id
        if self.visitor_id:
            out["vid"] = self.visitor_id
        if self.notice_version:
            out["n"] = self.notice_version
        return out


def _str_or_none(value: object, limit: int = 64) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def stored_from_payload(payload: Mapping[str, Any]) -> StoredConsent | None:
    """The stored choice from a verified prefs payload, or ``None`` if it is not
    schema-valid (a valid signature around a malformed payload is no consent)."""
    granted_raw = payload.get("g", [])
    if not isinstance(granted_raw, list) or len(granted_raw) > 64:
        return None
    if not all(isinstance(g, str) and len(g) <= 32 for g in granted_raw):
        return None
    decided_at = payload.get("t", 0)
    if type(decided_at) is not int or decided_at < 0:
        return None
    version = payload.get("pv", "")
    mechanism = payload.get("m", "")
    if not isinstance(version, str) or not isinstance(mechanism, str):
        return None
    if decided_at and not version:
        return None
    return StoredConsent(
        granted=frozenset(granted_raw),
        version=version[:32],
        decided_at=decided_at,
        mechanism=mechanism[:16],
        consent_id=_str_or_none(payload.get("cid")),
        visitor_id=_str_or_none(payload.get("vid")),
        notice_version=_str_or_none(payload.get("n"), 32),
    )


@dataclass(frozen=True, slots=True)
class ConsentState:
    """What the visitor has granted for this request.

    ``decided``: the visitor made a choice under the current policy version (the banner is
    shown while this is false). ``source``: where the state came from — ``banner`` (their
    choice), ``default`` (the model's default, no choice yet), ``notice`` (continued use
    after the notice), ``gpc`` / ``dnt`` (a browser signal turned purposes off).
    ``accepted_by_notice`` asks the middleware to store the implicit acceptance.
    """

    granted: frozenset[str]
    decided: bool
    policy_version: str
    source: str
    model: str
    stored_version: str | None = None
    gpc: bool = False
    accepted_by_notice: bool = False
    notice_shown: bool = False
    #: ``granted`` sorted, as events carry it (computed once per state: states are cached).
    ordered: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.ordered and self.granted:
            object.__setattr__(self, "ordered", tuple(sorted(self.granted)))

    def allows(self, purpose: str) -> bool:
        """Is ``purpose`` granted for this request?"""
        return purpose in self.granted

    def to_dict(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_consent``."""
        return {
            "granted": sorted(self.granted),
            "decided": self.decided,
            "policy_version": self.policy_version,
            "source": self.source,
            "model": self.model,
            "gpc": self.gpc,
        }


def decide(
    config: Config,
    stored: StoredConsent | None,
    *,
    now: float,
    gpc: bool = False,
    dnt: bool = False,
    country: str | None = None,
    continued_use: bool = True,
) -> ConsentState:
    """The consent state for one request.

    ``continued_use``: this request is the visitor carrying on through the site (a page
    navigation), which under the ``notice`` model accepts a notice already shown. Requests
    the page makes by itself (scripts, images, the banner's own calls) are not.
    """
    policy = config.policy
    model = policy.model
    if config.jurisdictions.header is not None:
        model = config.jurisdictions.model_for(country, policy.model)
    required = config.required
    version = policy.version
    if (
        stored is not None
        and stored.decided
        and now - stored.decided_at > policy.consent_max_age_days * _DAY
    ):
        stored = replace(stored, granted=frozenset(), decided_at=0, version="", mechanism="")

    accepted_by_notice = False
    notice_shown = False
    if stored is not None and stored.decided:
        kept = stored.granted & config.purpose_ids
        if stored.version == version:
            granted = kept | required
            decided = True
            source = "notice" if stored.mechanism == "notice" else "banner"
        else:
            had = config.version_purposes(stored.version)
            if had is not None:
                kept &= had
            granted = kept | required
            decided = False
            source = "banner"
    elif model == "opt-out":
        granted, decided, source = config.purpose_ids, False, "default"
    elif model == "notice":
        if stored is not None and stored.notice_version == version and continued_use:
            # The notice was shown and the visitor carried on: that is the acceptance.
            granted, decided, source = config.purpose_ids, True, "notice"
            accepted_by_notice = True
        else:
            granted, decided, source = required, False, "default"
            notice_shown = stored is None or stored.notice_version != version
    else:
        granted, decided, source = required, False, "default"

    if (gpc or (dnt and policy.honor_dnt)) and config.gpc_purposes:
        if granted & config.gpc_purposes:
            granted = granted - config.gpc_purposes
        source = "gpc" if gpc else "dnt"
    return ConsentState(
        granted=frozenset(granted),
        decided=decided,
        policy_version=version,
        source=source,
        model=model,
        stored_version=stored.version if stored is not None and stored.decided else None,
        gpc=gpc and bool(config.gpc_purposes),
        accepted_by_notice=accepted_by_notice,
        notice_shown=notice_shown,
    )


def apply_choice(
    config: Config,
    choice: str,
    purposes: Iterable[str],
    *,
    previous: StoredConsent | None,
    now: float,
) -> tuple[StoredConsent, str]:
    """The stored choice after a decision, and the consent-log mechanism.

    ``choice`` is one of :data:`CHOICES` (or ``notice``); ``purposes`` are the purposes
    ticked for ``custom`` (validated by the caller against the configuration). The mechanism
    is ``withdraw`` when the decision takes back a purpose granted before.
    """
    if choice == "accept_all" or choice == "notice":
        granted = config.purpose_ids
    elif choice == "reject_all":
        granted = config.required
    elif choice == "custom":
        granted = (frozenset(purposes) & config.purpose_ids) | config.required
    else:
        raise ValueError(f"unknown choice {choice!r}")
    mechanism = choice
    if (
        previous is not None
        and previous.decided
        and (previous.granted & config.purpose_ids) - granted
    ):
        mechanism = "withdraw"
    consent_id = previous.consent_id if previous is not None and previous.consent_id else new_id()
    visitor_id = None
    tracking = config.tracking.tracking_purpose
    if tracking is not None and tracking in granted:
        visitor_id = (
            previous.visitor_id if previous is not None and previous.visitor_id else new_id()
        )
    stored = StoredConsent(
        granted=frozenset(granted),
        version=config.policy.version,
        decided_at=max(1, int(now)),
        mechanism=mechanism,
        consent_id=consent_id,
        visitor_id=visitor_id,
    )
    return stored, mechanism

"""Redaction: the last step before an event reaches a sink.

The policy lets the operator record payment information and telephone numbers, but a card
number is never stored beyond its brand and last four digits, secrets that travel in forms
and URLs (passwords, tokens, session ids) are never stored at all, e-mail addresses in paths
and referrers (``/unsubscribe/alice@example.com``, ``?email=alice%40example.com``) become
``[email]``, and personal fields (``phone``, ``billing_address`` …) are kept only on events
collected for a purpose that needs them. :func:`redact_text` does the first for one string,
:func:`redact_emails` the e-mail part for one URL; :class:`Redactor` applies all of it to an
:class:`~consentmw.events.Event`.

What counts as a card number: a run of 13 to 19 ASCII digits, possibly split into groups by
single spaces or dashes, whose digits pass the Luhn check. Within a longer run of groups
(a card number followed by its security code, say) every span of whole groups of 13-19
digits is checked as well; a run of 20 or more digits *without* separators is an id, not a
card, and is left alone. Digit runs that fail the Luhn check are left alone.

What counts as an e-mail address in a URL: a part of it (path segment, query name or value,
fragment: the text between ``/ ? # & = ;``) that, as it is or percent-decoded once or more,
contains a character, ``@`` and a domain with a dot followed by two letters. The whole part is
replaced. ``@alice`` handles and ``pkg@1.2.3`` version pins are not addresses and are left
alone. The address an event is about has its own field, ``email``, which consent governs; a
URL is no place for it. Properties are not searched for addresses: the operator chooses what
goes in them (a captured ``email`` field moves to ``email``).

The redactor never raises: hostile values (deep nesting, cycles, huge strings, objects that
fail to convert) are cut at fixed limits and marked, and an unexpected failure empties the
event's ``props`` rather than letting anything through unredacted. Do not use it as an input
validator: it decides what may be *stored*, after the application has done its work.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

from ..events import Event

__all__ = [
    "DEFAULT_DROP_EXACT_KEYS",
    "DEFAULT_DROP_KEYS",
    "DEFAULT_FIELD_PURPOSES",
    "DEFAULT_PHONE_FIELDS",
    "EMAIL_REMOVED",
    "TRUNCATED",
    "Redactor",
    "card_brand",
    "has_card_number",
    "luhn_valid",
    "normalize_phone",
    "redact_emails",
    "redact_text",
]

log = logging.getLogger(__name__)

#: Key fragments that mark a secret: a key is dropped when its normalised form (lower case,
#: letters and digits only, so ``API-Key``, ``api_key`` and ``apiKey`` are all ``apikey``)
#: *contains* one of these.
DEFAULT_DROP_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "csrf",
    "xsrf",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "cookie",
    "session",
    "signature",
    "cvc",
    "cvv",
    "cvn",
    "securitycode",
)

#: Keys dropped only when their normalised form *equals* one of these: as fragments they
#: would hit harmless keys (``shipping`` contains ``pin``, ``author`` contains ``auth``).
#: ``code`` is here because OAuth redirects carry the authorisation code under that name.
DEFAULT_DROP_EXACT_KEYS: tuple[str, ...] = (
    "pwd",
    "pass",
    "pin",
    "otp",
    "auth",
    "sid",
    "key",
    "code",
)

#: Personal fields and the purposes that may keep them. The configuration supplies the
#: operator's own mapping; these defaults follow the MODX policy (telephone contact is
#: marketing; a billing address is needed for the purchase itself).
DEFAULT_FIELD_PURPOSES: Mapping[str, Sequence[str]] = {
    "phone": ("marketing",),
    "billing_address": ("necessary",),
}

#: Fields holding telephone numbers, normalised by :func:`normalize_phone` when kept.
DEFAULT_PHONE_FIELDS: tuple[str, ...] = ("phone", "telephone", "tel", "mobile", "phone_number")

#: What replaces a value cut at a limit.
TRUNCATED = "[truncated]"

#: What replaces a part of a URL that holds an e-mail address.
EMAIL_REMOVED = "[email]"

_REMOVED_NUMBER = "[number removed]"
_RUN_RE = re.compile(r"[0-9](?:[ -]?[0-9])*")
_SEP_RE = re.compile(r"[ -]")
_NON_KEY_RE = re.compile(r"[^a-z0-9]")
_NON_DIGIT_RE = re.compile(r"[^0-9]")
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ().\-/]*")
_MAX_PASSES = 8
# Wide on purpose: any "x@" followed, before the next "/", "@" or space, by a dot and two
# letters (which a version pin's last label never is).
_EMAIL_RE = re.compile(r"[^\s@/]@[^\s@/]*\.[^\W\d_]{2}")
_URL_PART_RE = re.compile(r"[^/?#&=;]+")


def luhn_valid(digits: str) -> bool:
    """True if the ASCII digit string ``digits`` passes the Luhn (mod 10) check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    """The card network a number's leading digits (its IIN) belong to, or ``"card"``.

    One of ``visa``, ``mastercard``, ``amex``, ``discover``, ``diners``, ``jcb``,
    ``unionpay``, ``card``.
    """
    if len(digits) < 6 or not digits.isdigit():
        return "card"
    p2, p3, p4 = int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        return "visa"
    if p2 in (34, 37):
        return "amex"
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return "mastercard"
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65:
        return "discover"
    if 3528 <= p4 <= 3589:
        return "jcb"
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):
        return "diners"
    # Discover also accepts 622126-622925, inside UnionPay's 62: both networks take those
    # cards and the brand is only a label here, so they are called unionpay.
    if p2 in (62, 81):
        return "unionpay"
    return "card"


def _mask(digits: str) -> str:
    return f"{card_brand(digits)} ****{digits[-4:]}"


def redact_text(text: str) -> str:
    """Replace every card number in ``text`` with its brand and last four digits.

    ``"paid with 4111 1111 1111 1111"`` becomes ``"paid with visa ****1111"``. See the module
    documentation for what counts as a card number. The result contains no Luhn-valid run
    of 13-19 digits (the replacement is repeated until none is left; if a crafted input keeps
    producing new ones, the remaining long digit runs are removed).
    """
    if len(text) < 13 or sum(map(text.count, "0123456789")) < 13:
        return text  # fewer than 13 digits in all: nothing can be a card number
    for _ in range(_MAX_PASSES):
        redacted = _RUN_RE.sub(_redact_run, text)
        if redacted == text:
            return text
        text = redacted
    return _RUN_RE.sub(_remove_long_run, text)


def _groups(run: str) -> tuple[list[str], list[tuple[int, int]]]:
    groups: list[str] = []
    spans: list[tuple[int, int]] = []
    start = 0
    for sep in _SEP_RE.finditer(run):
        groups.append(run[start : sep.start()])
        spans.append((start, sep.start()))
        start = sep.end()
    groups.append(run[start:])
    spans.append((start, len(run)))
    return groups, spans


def _card_spans(run: str) -> list[tuple[int, int, str]]:
    """The (start, end, digits) of each card number in one maximal digit run."""
    groups, spans = _groups(run)
    found = []
    i = 0
    while i < len(groups):
        count = 0
        candidates = []
        for j in range(i, len(groups)):
            count += len(groups[j])
            if count > 19:
                break
            if count >= 13:
                candidates.append(j)
        match = None
        for j in reversed(candidates):  # prefer the longest span starting here
            digits = "".join(groups[i : j + 1])
            if luhn_valid(digits):
                match = j, digits
                break
        if match is None:
            i += 1
            continue
        j, digits = match
        found.append((spans[i][0], spans[j][1], digits))
        i = j + 1
    return found


def _redact_run(m: re.Match[str]) -> str:
    run = m.group()
    if len(run) < 13:
        return run
    cards = _card_spans(run)
    if not cards:
        return run
    pieces = []
    cursor = 0
    for start, end, digits in cards:
        pieces.append(run[cursor:start])
        pieces.append(_mask(digits))
        cursor = end
    pieces.append(run[cursor:])
    return "".join(pieces)


def _remove_long_run(m: re.Match[str]) -> str:
    run = m.group()
    return _REMOVED_NUMBER if _card_spans(run) else run


def has_card_number(text: str) -> bool:
    """True if ``text`` contains a Luhn-valid 13-19 digit run (as :func:`redact_text` sees
    them)."""
    return any(_card_spans(m.group()) for m in _RUN_RE.finditer(text) if len(m.group()) >= 13)


def _holds_email(part: str) -> bool:
    text = part
    # Each decoding that changes the text shortens it, so this ends; "@" needs a "%" to hide.
    while "@" in text or "%" in text:
        if _EMAIL_RE.search(text):
            return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded
    return False


def _email_part(m: re.Match[str]) -> str:
    part = m.group()
    return EMAIL_REMOVED if _holds_email(part) else part


def redact_emails(url: str) -> str:
    """Replace every part of ``url`` holding an e-mail address with :data:`EMAIL_REMOVED`.

    ``"/reset/alice%40example.com?next=/"`` becomes ``"/reset/[email]?next=/"``. A part is
    the text between ``/ ? # & = ;``; it holds an address when it, or what percent-decoding
    it (again and again) gives, does. See the module documentation.
    """
    if "@" not in url and "%" not in url:
        return url
    return _URL_PART_RE.sub(_email_part, url)


def normalize_phone(value: object) -> str | None:
    """A telephone number as a leading ``+`` (if it had one) and its digits, or ``None``.

    Spaces, dots, dashes, slashes and parentheses are dropped (``+1 (555) 010-9999`` becomes
    ``+15550109999``); anything else (letters, extensions, a second ``+``) makes it
    unusable, and so does a length no telephone number has: fewer than 5 digits, or more than
    15 after a ``+`` (E.164) or 18 without (room for an ``00`` / ``011`` prefix).
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip() if isinstance(value, int) else value.strip()
    if len(text) > 64 or not _PHONE_RE.fullmatch(text):
        return None
    digits = _NON_DIGIT_RE.sub("", text)
    plus = text.startswith("+")
    if len(digits) < 5 or len(digits) > (15 if plus else 18):
        return None
    return ("+" if plus else "") + digits


#: Distinct (URL, purposes) results a :class:`Redactor` remembers.
_URL_CACHE_SIZE = 1024


def _norm_key(key: str) -> str:
    return _NON_KEY_RE.sub("", key[:256].lower())


class Redactor:
    """Redact events in place before they are written (see the module documentation).

    ``field_purposes`` maps personal fields to the purposes that may keep them: a field is
    kept only on events whose ``purposes`` include one of them, and removed otherwise.
    ``drop_keys`` (fragments) and ``drop_exact_keys`` (whole keys) name secrets, removed
    wherever they occur. Keys are compared in normalised form: lower case, letters and
    digits only. ``phone_fields`` are normalised by :func:`normalize_phone` when kept.

    Limits: containers nested deeper than ``max_depth`` are replaced by :data:`TRUNCATED`,
    containers keep at most ``max_items`` entries, strings at most ``max_string``
    characters, URLs at most ``max_url``; at most ``max_nodes`` values are visited per event.
    """

    def __init__(
        self,
        *,
        field_purposes: Mapping[str, Sequence[str]] = DEFAULT_FIELD_PURPOSES,
        drop_keys: Collection[str] = DEFAULT_DROP_KEYS,
        drop_exact_keys: Collection[str] = DEFAULT_DROP_EXACT_KEYS,
        phone_fields: Collection[str] = DEFAULT_PHONE_FIELDS,
        max_depth: int = 8,
        max_items: int = 1000,
        max_string: int = 4096,
        max_url: int = 2048,
        max_nodes: int = 10_000,
    ) -> None:
        self._field_purposes = {
            _norm_key(name): frozenset(purposes) for name, purposes in field_purposes.items()
        }
        self._drop_keys = tuple(_norm_key(k) for k in drop_keys if _norm_key(k))
        self._drop_exact = frozenset(_norm_key(k) for k in drop_exact_keys)
        self._phone_fields = frozenset(_norm_key(k) for k in phone_fields)
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_string = max_string
        self.max_url = max_url
        self.max_nodes = max_nodes
        # The same few keys come back in every event: classify each once (per instance, so
        # two configurations never share answers; bounded, as keys are client-chosen).
        self._key_rules: Callable[[str], tuple[bool, frozenset[str] | None, bool]] = (
            functools.lru_cache(maxsize=4096)(self._classify_key)
        )
        # Paths and referrers repeat from event to event (the same pages, the same search
        # engines): each distinct (URL, purposes) is parsed and redacted once. Bounded and
        # emptied when full; it lives only in the dispatcher's memory, like the queue.
        self._urls: dict[tuple[str, frozenset[str], bool], str] = {}

    def __call__(self, event: Event) -> Event:
        """Same as :meth:`redact`, so a redactor is a processor in a chain."""
        return self.redact(event)

    def redact(self, event: Event) -> Event:
        """Redact ``event`` in place and return it. Never raises."""
        try:
            purposes = frozenset(p for p in event.purposes if isinstance(p, str))
        except TypeError:
            purposes = frozenset()  # no purposes: every purpose-bound field is removed
        try:
            budget = [self.max_nodes]
            props = self._mapping(event.props, 1, budget, purposes)
        except Exception as exc:  # fail closed, never let raw props through
            log.warning(
                "event props could not be redacted and were removed (%s)", type(exc).__name__
            )
            props = {TRUNCATED: True}
        event.props = props
        event.path = self._url_field(event.path, purposes, is_path=True)
        event.referrer = self._url_field(event.referrer, purposes, is_path=False)
        return event

    # -- keys -----------------------------------------------------------------------------

    def _verdict(self, key: str, purposes: frozenset[str]) -> str:
        """``"drop"``, ``"phone"`` or ``"keep"`` for a key on an event with ``purposes``."""
        secret, allowed, phone = self._key_rules(key[:256])
        if secret or (allowed is not None and allowed.isdisjoint(purposes)):
            return "drop"
        return "phone" if phone else "keep"

    def _classify_key(self, key: str) -> tuple[bool, frozenset[str] | None, bool]:
        """``(is a secret, purposes that may keep it or None, is a phone field)``."""
        norm = _norm_key(key)
        secret = norm in self._drop_exact or any(frag in norm for frag in self._drop_keys)
        return secret, self._field_purposes.get(norm), norm in self._phone_fields

    # -- values ---------------------------------------------------------------------------

    def _mapping(
        self, value: Mapping[Any, Any], depth: int, budget: list[int], purposes: frozenset[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for count, (raw_key, item) in enumerate(value.items()):
            if count >= self.max_items:
                out[TRUNCATED] = True
                break
            key = raw_key if isinstance(raw_key, str) else self._to_text(raw_key)
            verdict = self._verdict(key, purposes)
            if verdict == "drop":
                continue
            clean_key = self._text(key[:256])
            if verdict == "phone":
                phone = normalize_phone(item)
                if phone is not None and not has_card_number(phone):
                    out[clean_key] = phone
                continue
            out[clean_key] = self._value(item, depth, budget, purposes)
        return out

    def _value(self, value: Any, depth: int, budget: list[int], purposes: frozenset[str]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            return TRUNCATED
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, int):
            return self._int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return None  # the JSON form has no NaN or infinity
            if value.is_integer() and abs(value) < 1e20:
                number = self._int(int(value))
                return value if isinstance(number, int) else number
            return value
        if isinstance(value, Mapping):
            if depth >= self.max_depth:
                return TRUNCATED
            return self._mapping(value, depth + 1, budget, purposes)
        if isinstance(value, (list, tuple, set, frozenset)):
            if depth >= self.max_depth:
                return TRUNCATED
            out = []
            for count, item in enumerate(value):
                if count >= self.max_items:
                    out.append(TRUNCATED)
                    break
                out.append(self._value(item, depth + 1, budget, purposes))
            return out
        return self._text(self._to_text(value))

    def _to_text(self, value: object) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value[: self.max_string]).decode("utf-8", "replace")
        try:
            text = str(value)
        except Exception:  # an object whose __str__ fails is just unusable
            return "[unrepresentable]"
        return text if isinstance(text, str) else "[unrepresentable]"

    def _int(self, value: int) -> int | str:
        if value.bit_length() > 256:
            # Far beyond any card number, and beyond what some JSON readers accept.
            return TRUNCATED
        digits = str(abs(value))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return _mask(digits)
        return value

    def _text(self, text: str) -> str:
        if len(text) > self.max_string:
            # Redact a window twice the limit first, so a card number that straddles the
            # cut is redacted whole rather than cut into a shorter, unrecognised run ...
            text = redact_text(text[: 2 * self.max_string])[: self.max_string] + TRUNCATED
        # ... and redact (again) after the cut, which may have shortened a long digit run
        # into a Luhn-valid one.
        return redact_text(text)

    # -- URLs -----------------------------------------------------------------------------

    def _url_field(self, value: object, purposes: frozenset[str], *, is_path: bool) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            value = self._to_text(value)
        value = value[: self.max_url]
        key = (value, purposes, is_path)
        known = self._urls.get(key)
        if known is not None:
            return known
        try:
            cleaned = self._path(value, purposes) if is_path else self._url(value, purposes)
        except Exception as exc:  # keep only what cannot carry a secret
            log.warning("a URL could not be parsed for redaction (%s)", type(exc).__name__)
            cleaned = value.partition("?")[0].partition("#")[0]
        # A final pass over the result as it will be stored: percent-encoding and the
        # reassembly can put digits next to digits, and re-encoding turns "@" into "%40".
        result = redact_emails(redact_text(cleaned))
        if len(self._urls) >= _URL_CACHE_SIZE:
            self._urls.clear()
        self._urls[key] = result
        return result

    def _path(self, value: str, purposes: frozenset[str]) -> str:
        path, question, rest = value.partition("?")
        query, hash_, fragment = rest.partition("#")
        if not question:
            path, hash_, fragment = value.partition("#")
        out = _redact_encoded(path, safe="/")
        if question:
            out += "?" + self._query(query, purposes)
        if hash_:
            out += "#" + self._fragment(fragment, purposes)
        return out

    def _url(self, value: str, purposes: frozenset[str]) -> str:
        parts = urlsplit(value)
        # Credentials in a referrer ("https://user:pass@host/") are never kept.
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(
            (
                parts.scheme,
                netloc,
                _redact_encoded(parts.path, safe="/"),
                self._query(parts.query, purposes),
                self._fragment(parts.fragment, purposes),
            )
        )

    def _fragment(self, fragment: str, purposes: frozenset[str]) -> str:
        # OAuth's implicit flow puts tokens in the fragment as a query string.
        if "=" in fragment:
            return self._query(fragment, purposes)
        return _redact_encoded(fragment, safe="/")

    def _query(self, query: str, purposes: frozenset[str]) -> str:
        if not query:
            return query
        kept = []
        for count, pair in enumerate(query.split("&")):
            if count >= self.max_items:
                break
            raw_name, eq, raw_value = pair.partition("=")
            if raw_name and self._verdict(unquote_plus(raw_name), purposes) == "drop":
                continue
            kept.append(
                _redact_encoded(raw_name, plus=True) + eq + _redact_encoded(raw_value, plus=True)
            )
        return "&".join(kept)


def _redact_encoded(raw: str, *, safe: str = "", plus: bool = False) -> str:
    """Redact a percent-encoded URL component: card numbers may be hidden behind ``%20`` or
    ``+`` separators, so the decoded text is checked, and re-encoded only if it changed."""
    decoded = unquote_plus(raw) if plus else unquote(raw)
    redacted = redact_text(decoded)
    if redacted == decoded:
        return raw
    return quote_plus(redacted, safe="*" + safe) if plus else quote(redacted, safe="*" + safe)

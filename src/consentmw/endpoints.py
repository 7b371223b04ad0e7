"""The consent endpoint's rules, over plain values, and the neutral :class:`Response`.

``POST /_consent`` checks, in this order (DESIGN.md): method (405), cross-site (403),
content type (415), size (413), syntax (400), token (403). Each check is a function here
that takes strings and bytes and returns either a value or a :class:`Problem`; the WSGI
layer and the Django integration only gather the inputs and render the result.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote

__all__ = [
    "MAX_BODY",
    "ConsentRequest",
    "Problem",
    "Response",
    "check_cross_site",
    "parse_consent_body",
    "safe_next",
]

#: Largest accepted consent POST body.
MAX_BODY = 16 * 1024

_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"
_JSON = "application/json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
# C1 controls and the Unicode line separators have no place in a path either.
_NON_LATIN_CONTROL = re.compile("[\x80-\x9f\u2028\u2029]")
# Everything a path and query may already hold; only what is not ASCII gets encoded.
_URL_SAFE = "/?&=#%:@!$'()*+,;~-._[]"


@dataclass(slots=True)
class Response:
    """What to send: a status, headers and a body. Rendered by each integration."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def status_line(self) -> str:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        return f"{self.status} {phrase}"

    @classmethod
    def json(cls, data: object, status: int = 200) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        return cls(
            status,
            [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
            body,
        )

    @classmethod
    def html(cls, text: str, status: int = 200, *, cache: str = "no-store") -> Response:
        return cls(
            status,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", cache),
                ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "same-origin"),
            ],
            text.encode("utf-8"),
        )

    @classmethod
    def redirect(cls, location: str) -> Response:
        return cls(303, [("Location", location), ("Cache-Control", "no-store")], b"")

    def finalize(self) -> list[tuple[str, str]]:
        """The headers with ``Content-Length`` set (none on 204 and 304, RFC 9110 §8.6)."""
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        if self.status not in (204, 304):
            headers.append(("Content-Length", str(len(self.body))))
        return headers


@dataclass(frozen=True, slots=True)
class Problem:
    """A refused request: the status and a short reason (shown to the visitor)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A parsed consent decision."""

    choice: str
    purposes: frozenset[str]
    csrf: str | None
    next: str | None
    wants_json: bool


def check_cross_site(
    sec_fetch_site: str | None, origin: str | None, host: str | None, scheme: str
) -> Problem | None:
    """Refuse a request another site made the browser send.

    ``Sec-Fetch-Site`` is trusted when present (``same-origin`` or ``none`` — typed in the
    address bar — pass); otherwise an ``Origin`` header must name this host. A request with
    neither (old browsers, non-browser clients) passes here and relies on the token.
    """
    if sec_fetch_site is not None:
        value = sec_fetch_site.strip().lower()
        if value in ("same-origin", "none"):
            return None
        return Problem(403, "cross-site request refused")
    if origin is not None:
        if origin == "null" or host is None:
            return Problem(403, "cross-site request refused")
        expected = f"{scheme}://{host}".lower()
        if origin.strip().lower().rstrip("/") != expected:
            return Problem(403, "cross-site request refused")
    return None


def content_kind(content_type: str | None) -> str | None:
    """``form``, ``multipart`` or ``json`` for the accepted media types, else ``None``."""
    if not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if media == _FORM:
        return "form"
    if media == _MULTIPART:
        return "multipart"
    if media == _JSON:
        return "json"
    return None


def safe_next(value: object) -> str:
    """A same-origin path to go back to; anything else becomes ``/``.

    Refused: absolute and scheme-relative URLs (``//evil``), backslashes (browsers read
    ``/\\evil`` as ``//evil``), control characters, and anything not starting with ``/``.
    Characters a URL may not hold (spaces, quotes, anything outside ASCII) are
    percent-encoded (UTF-8): a ``Location`` header carries ASCII only, and a WSGI server
    refuses anything else with a 500.
    """
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2048:
        return "/"
    if value.startswith("//") or _CONTROL.search(value) or _NON_LATIN_CONTROL.search(value):
        return "/"
    return quote(value, safe=_URL_SAFE)


def _bad(reason: str) -> Problem:
    return Problem(400, reason)


def _choice_request(
    choice: object,
    purposes: Iterable[str],
    csrf: object,
    next_: object,
    valid: frozenset[str],
    wants_json: bool,
) -> ConsentRequest | Problem:
    if choice not in ("accept_all", "reject_all", "custom"):
        return _bad("choice must be accept_all, reject_all or custom")
    chosen = frozenset(purposes)
    unknown = chosen - valid
    if unknown:
        return _bad("unknown purpose")
    if choice != "custom" and chosen:
        return _bad("purposes go with choice=custom only")
    if csrf is not None and not isinstance(csrf, str):
        return _bad("csrf must be a string")
    if next_ is not None and not isinstance(next_, str):
        return _bad("next must be a string")
    assert isinstance(choice, str)
    return ConsentRequest(choice, chosen, csrf, next_, wants_json)


def parse_form(body: bytes) -> list[tuple[str, str]] | Problem:
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return _bad("malformed form body")


def parse_consent_body(
    kind: str,
    body: bytes | list[tuple[str, str]],
    valid: frozenset[str],
    *,
    wants_json: bool = False,
) -> ConsentRequest | Problem:
    """Parse a consent decision from a form (``form``; ``multipart`` fields already parsed
    into pairs by the caller) or a JSON body (``json``), strictly."""
    if kind in ("form", "multipart"):
        if isinstance(body, bytes):
            pairs = parse_form(body)
            if isinstance(pairs, Problem):
                return pairs
        else:
            pairs = body
        fields: dict[str, list[str]] = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        for key in ("choice", "csrf", "next"):
            if len(fields.get(key, ())) > 1:
                return _bad(f"{key} given more than once")
        return _choice_request(
            fields.get("choice", [None])[0],
            fields.get("purpose", []),
            fields.get("csrf", [None])[0],
            fields.get("next", [None])[0],
            valid,
            wants_json,
        )
    assert isinstance(body, bytes)
    return _parse_json(body, valid)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _parse_json(body: bytes, valid: frozenset[str]) -> ConsentRequest | Problem:
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _bad("malformed JSON")
    if not isinstance(data, dict):
        return _bad("the body must be a JSON object")
    unknown_keys = set(data) - {"choice", "purposes", "csrf", "next"}
    if unknown_keys:
        return _bad("unknown field")
    purposes_raw = data.get("purposes", {})
    if purposes_raw is None:
        purposes_raw = {}
    if not isinstance(purposes_raw, dict):
        return _bad('purposes must be an object {"<purpose>": true|false}')
    granted: list[str] = []
    for key, value in purposes_raw.items():
        if not isinstance(value, bool):
            return _bad("purpose values must be true or false")
        if key not in valid:
            return _bad("unknown purpose")
        if value:
            granted.append(key)
    choice = data.get("choice", "custom" if purposes_raw else None)
    if isinstance(choice, float) and math.isnan(choice):  # pragma: no cover - rejected above
        return _bad("malformed JSON")
    if choice != "custom" and granted:
        # {"choice": "reject_all", "purposes": {"x": true}} contradicts itself.
        return _bad("purposes go with choice=custom only")
    return _choice_request(choice, granted, data.get("csrf"), data.get("next"), valid, True)

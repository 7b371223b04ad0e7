"""Opt-out links: signed tokens, the URLs and ``List-Unsubscribe`` headers that carry them,
and the page at ``<mount>/optout/<token>`` that honours them.

A token is an itsdangerous-style signed value (:class:`~consentmw.signing.ValueSigner`) over
``{"a": address, "c": channel, "p": purpose, "v": 1}``, with a salt of its own per channel
(``consentmw.optout.email``, ``consentmw.optout.phone``), so a link made for a telephone
number can never pass as an e-mail opt-out or the other way round. It is signed with the
newest site key and verified against every key of the ring, newest first, so links in mail
sent before a key rotation keep working as long as the old key stays in the ring; it is valid
for ``optout.max_age_days`` (60 by default, at least 30). Verification accepts exactly the
bytes that were signed: a token changed in case, padded, cut, extended or re-encoded does not
verify. The token is signed, not encrypted: the URL shows the address it is for to whoever
sees the URL, like the e-mail that carries it (keep ``<mount>/optout/`` out of access logs if
that matters).

The page (RFC 8058): ``GET`` only shows a confirmation form, because mail scanners and link
previews fetch every link; ``POST`` with ``List-Unsubscribe=One-Click`` (what mail clients
send for one-click unsubscribe, and what the form sends) opts out. The ``POST`` needs no CSRF
token and may come from anywhere (the mail provider's servers post it): the signature is the
protection. Opting out again is harmless and answers the same. A token that does not verify
gets a friendly ``400`` page naming another way to opt out (``optout.contact``).

Not for consent on the site: an opt-out stops contact on one channel; the cookie choices are
the consent endpoint's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from ..errors import TokenError
from ..signing import KeyRing
from .suppression import CHANNELS, normalize_address

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..endpoints import Response
    from ..engine import Engine

__all__ = [
    "ONE_CLICK",
    "OptoutRequest",
    "OptoutRoute",
    "OptoutTokenError",
    "OptoutTokens",
    "list_unsubscribe_headers",
]

#: The body of an RFC 8058 one-click unsubscribe POST (and of our confirmation form).
ONE_CLICK = ("List-Unsubscribe", "One-Click")

_SALTS = {channel: f"consentmw.optout.{channel}" for channel in CHANNELS}
_DAY = 86400.0
_MAX_TOKEN = 2048
# No Referer from the page to anywhere: the URL holds the token.
_REFERRER = ("Referrer-Policy", "no-referrer")


@dataclass(frozen=True, slots=True)
class OptoutRequest:
    """A verified opt-out token: whom, on which channel, for which purpose (``None``: every
    purpose), and when it was signed (epoch seconds)."""

    address: str
    channel: str
    purpose: str | None
    signed_at: int


class OptoutTokens:
    """Signs and verifies opt-out tokens (see the module docstring).

    ``purposes``: the purpose ids a token may name. ``clock`` returns epoch seconds.
    """

    def __init__(
        self,
        ring: KeyRing,
        *,
        max_age_days: float,
        purposes: frozenset[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age = max_age_days * _DAY
        self._purposes = purposes
        self._signers = {c: ring.signer(salt, clock=clock) for c, salt in _SALTS.items()}

    def dumps(self, address: str, channel: str = "email", purpose: str | None = None) -> str:
        """A token for ``address`` on ``channel``; ``ValueError`` for an address that is not
        one, an unknown channel or an unknown purpose."""
        if channel not in _SALTS:
            raise ValueError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
        normalized = normalize_address(address, channel)
        if normalized is None:
            raise ValueError(f"not a valid {channel} address")
        if purpose is not None and purpose not in self._purposes:
            raise ValueError(
                f"unknown purpose {purpose!r}; use one of {', '.join(sorted(self._purposes))}"
            )
        payload = {"a": normalized, "c": channel, "p": purpose}
        return self._signers[channel].dumps(payload)

    def loads(self, token: object, channel: str | None = None) -> OptoutRequest:
        """Verify a token (for ``channel``, or for any channel when ``None``).

        Raises :class:`OptoutTokenError` (a :class:`~consentmw.TokenError`) with ``reason``
        ``"expired"`` (it verified but is older than ``max_age_days``) or ``"invalid"``
        (anything else: garbled, tampered with, for another channel, signed with a key no
        longer in the ring).
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
            raise _invalid()
        channels = CHANNELS if channel is None else (channel,)
        expired = False
        for name in channels:
            signer = self._signers.get(name)
            if signer is None:
                raise ValueError(f"unknown channel {name!r}")
            verified = signer.loads(token, self.max_age)
            if verified is None:
                # Signed and well-formed but too old? Worth telling the visitor apart.
                expired = expired or signer.loads(token, float("inf")) is not None
                continue
            payload = verified.payload
            address, purpose = payload.get("a"), payload.get("p")
            if payload.get("c") != name or not isinstance(address, str):
                raise _invalid()
            if normalize_address(address, name) != address:
                raise _invalid()
            if purpose is not None and (not isinstance(purpose, str) or purpose not in
                                        self._purposes):  # fmt: skip
                raise _invalid()
            return OptoutRequest(address, name, purpose, verified.signed_at)
        if expired:
            raise OptoutTokenError("expired")
        raise _invalid()


class OptoutTokenError(TokenError):
    """An opt-out token that does not verify. ``reason`` is ``"expired"`` (it verified but is
    older than ``optout.max_age_days``) or ``"invalid"`` (anything else)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            "the opt-out link has expired"
            if reason == "expired"
            else "the opt-out link is not valid"
        )


def _invalid() -> OptoutTokenError:
    return OptoutTokenError("invalid")


def list_unsubscribe_headers(url: str, contact: str | None = None) -> list[tuple[str, str]]:
    """The two RFC 8058 headers for an opt-out URL: ``List-Unsubscribe: <url>`` (after a
    ``mailto:`` contact, when one is configured) and ``List-Unsubscribe-Post:
    List-Unsubscribe=One-Click``."""
    targets = [f"<{url}>"]
    if contact and contact.lower().startswith("mailto:"):
        targets.insert(0, f"<{contact}>")
    return [
        ("List-Unsubscribe", ", ".join(targets)),
        ("List-Unsubscribe-Post", "=".join(ONE_CLICK)),
    ]


# --------------------------------------------------------------------------- the page

_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "confirm_title": "Unsubscribe",
        "confirm_email": "Stop e-mails to {address}?",
        "confirm_phone": "Stop telephone calls to {address}?",
        "purpose": "This concerns: {purpose}.",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done_email": "We will not send e-mail to {address} any more.",
        "done_phone": "We will not call {address} any more.",
        "already": "This address had already been unsubscribed; nothing more to do.",
        "bad_title": "This link does not work",
        "bad_invalid": "The unsubscribe link is incomplete or damaged.",
        "bad_expired": "The unsubscribe link has expired.",
        "bad_post": "Please use the button on the unsubscribe page.",
        "other_way": "You can still opt out: {contact}.",
        "other_way_default": (
            "You can still opt out: use the link in a more recent message, or contact us "
            "through this site."
        ),
        "back": "Back to the site",
    },
    "de": {
        "confirm_title": "Abmelden",
        "confirm_email": "Keine E-Mails mehr an {address}?",
        "confirm_phone": "Keine Anrufe mehr unter {address}?",
        "purpose": "Betrifft: {purpose}.",
        "button": "Abmelden",
        "done_title": "Sie sind abgemeldet",
        "done_email": "Wir schreiben {address} keine E-Mails mehr.",
        "done_phone": "Wir rufen {address} nicht mehr an.",
        "already": "Diese Adresse war bereits abgemeldet.",
        "bad_title": "Dieser Link funktioniert nicht",
        "bad_invalid": "Der Abmeldelink ist unvollständig oder beschädigt.",
        "bad_expired": "Der Abmeldelink ist abgelaufen.",
        "bad_post": "Bitte verwenden Sie die Schaltfläche auf der Abmeldeseite.",
        "other_way": "Sie können sich trotzdem abmelden: {contact}.",
        "other_way_default": (
            "Sie können sich trotzdem abmelden: mit dem Link einer neueren Nachricht oder "
            "über unsere Website."
        ),
        "back": "Zurück zur Website",
    },
}


def _text(lang: str | None, key: str, **values: str) -> str:
    table = _TEXTS.get((lang or "en").split("-")[0].lower(), _TEXTS["en"])
    text = table.get(key, _TEXTS["en"][key])
    for name, value in values.items():
        # Plain replacement, never str.format: addresses and contacts may hold braces.
        text = text.replace("{" + name + "}", value)
    return text


def _contact_html(contact: str) -> str:
    if contact.lower().startswith("mailto:"):
        shown = contact[7:].split("?", 1)[0]
        return f'<a href="{escape(contact, quote=True)}">{escape(shown)}</a>'
    if "@" in contact and " " not in contact.strip():
        return f'<a href="mailto:{escape(contact.strip(), quote=True)}">{escape(contact)}</a>'
    if contact.startswith(("https://", "http://")):
        return f'<a href="{escape(contact, quote=True)}">{escape(contact)}</a>'
    return escape(contact)


OptOutFn = Callable[[str, str, "str | None", str], bool]
SuppressedFn = Callable[[str, str, "str | None"], bool]


class OptoutRoute:
    """The ``optout`` route of the consent UI (``ui.routes["optout"]``).

    ``opt_out(address, channel, purpose, mechanism) -> bool`` records an opt-out (``True``
    if it is new); ``is_suppressed(address, channel, purpose)`` answers the GET page.
    """

    def __init__(
        self,
        engine: Engine,
        tokens: OptoutTokens,
        *,
        opt_out: OptOutFn,
        is_suppressed: SuppressedFn,
    ) -> None:
        self._engine = engine
        self._tokens = tokens
        self._opt_out = opt_out
        self._is_suppressed = is_suppressed
        self._contact = engine.config.optout.contact

    def __call__(
        self,
        ctx: RequestContext,
        rest: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        lang = self._engine.ui.language(ctx.environ)
        token = rest[1:] if rest.startswith("/") else ""
        if method not in ("GET", "HEAD", "POST"):
            response = self._problem(ctx, lang, 405, _text(lang, "bad_post"))
            response.headers.append(("Allow", "GET, HEAD, POST"))
            return response
        try:
            request = self._tokens.loads(token)
        except OptoutTokenError as exc:
            key = "bad_expired" if exc.reason == "expired" else "bad_invalid"
            return self._problem(ctx, lang, 400, _text(lang, key))
        if method == "POST":
            return self._post(ctx, lang, request, read_body)
        return self._confirm(ctx, lang, request, token)

    # -- pages

    def _page(self, ctx: RequestContext, title: str, main: str, status: int = 200) -> Response:
        from ..ui import render

        ui = self._engine.ui
        response = ui._html(render._document(ui._view(ctx), title, main), status)
        response.headers = [(k, v) for k, v in response.headers if k != _REFERRER[0]]
        response.headers.append(_REFERRER)
        return response

    def _back(self, lang: str | None) -> str:
        return f'<p class="cmw-links"><a href="/">{escape(_text(lang, "back"))}</a></p>'

    def _purpose_line(self, lang: str | None, purpose: str | None) -> str:
        if purpose is None:
            return ""
        found = self._engine.config.purposes.get(purpose)
        title = found.text(lang)[0] if found is not None else purpose
        return f"<p>{escape(_text(lang, 'purpose', purpose=title))}</p>"

    def _confirm(
        self, ctx: RequestContext, lang: str | None, request: OptoutRequest, token: str
    ) -> Response:
        title = _text(lang, "confirm_title")
        address = request.address
        parts = [f"<h1>{escape(title)}</h1>"]
        if self._is_suppressed(address, request.channel, request.purpose):
            parts.append(f'<p class="cmw-lead">{escape(_text(lang, "already"))}</p>')
        else:
            question = _text(lang, f"confirm_{request.channel}", address=address)
            action = f"{self._engine.mount}/optout/{token}"
            parts += [
                f'<p class="cmw-lead">{escape(question)}</p>',
                self._purpose_line(lang, request.purpose),
                f'<form method="post" action="{escape(action, quote=True)}">'
                f'<input type="hidden" name="{ONE_CLICK[0]}" value="{ONE_CLICK[1]}">'
                '<div class="cmw-actions"><button type="submit" class="cmw-btn">'
                f"{escape(_text(lang, 'button'))}</button></div></form>",
            ]
        parts.append(self._back(lang))
        return self._page(ctx, title, "".join(parts))

    def _problem(self, ctx: RequestContext, lang: str | None, status: int, reason: str) -> Response:
        title = _text(lang, "bad_title")
        contact = self._contact
        if contact:
            other = escape(_text(lang, "other_way", contact="\x00")).replace(
                "\x00", _contact_html(contact)
            )
        else:
            other = escape(_text(lang, "other_way_default"))
        main = (
            f'<h1>{escape(title)}</h1><p class="cmw-lead">{escape(reason)}</p>'
            f"<p>{other}</p>{self._back(lang)}"
        )
        return self._page(ctx, title, main, status)

    def _post(
        self,
        ctx: RequestContext,
        lang: str | None,
        request: OptoutRequest,
        read_body: Callable[[int], bytes],
    ) -> Response:
        from ..endpoints import Problem, parse_form

        body = self._engine.read_form_body(ctx, read_body)
        if isinstance(body, Problem):
            return self._problem(ctx, lang, body.status, _text(lang, "bad_post"))
        kind, payload = body
        pairs = parse_form(payload) if isinstance(payload, bytes) and kind == "form" else payload
        if isinstance(pairs, (Problem, bytes)) or ONE_CLICK not in pairs:
            return self._problem(ctx, lang, 400, _text(lang, "bad_post"))
        new = self._opt_out(request.address, request.channel, request.purpose, "one-click")
        title = _text(lang, "done_title")
        done = _text(lang, f"done_{request.channel}", address=request.address)
        parts = [
            f"<h1>{escape(title)}</h1>",
            f'<p class="cmw-lead" role="status">{escape(done)}</p>',
            self._purpose_line(lang, request.purpose),
        ]
        if not new:
            parts.append(f"<p>{escape(_text(lang, 'already'))}</p>")
        parts.append(self._back(lang))
        return self._page(ctx, title, "".join(parts))

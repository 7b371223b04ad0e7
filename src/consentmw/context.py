"""The request context: what the application sees of consentmw during one request.

``get_context(environ)`` returns the :class:`RequestContext` the middleware put in the WSGI
environ (``request.consentmw`` in Django, ``consentmw.flask.context()`` in Flask). Everything
on it is lazy: a request that never looks at the session never verifies its cookie.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .consent import ConsentState, StoredConsent
from .errors import ConsentMWError
from .events import RequestFacts
from .jars import Jar, SessionJar

if TYPE_CHECKING:
    from .cookies import CookieSpec
    from .dispatch import RequestInfo
    from .engine import Engine

__all__ = ["ENVIRON_KEY", "RequestContext", "Visitor", "get_context"]

#: Where the context lives in the WSGI environ.
ENVIRON_KEY = "consentmw.context"

log = logging.getLogger("consentmw")

_UNSET: Any = object()


def get_context(environ: Mapping[str, Any]) -> RequestContext:
    """The consentmw context of the request whose WSGI environ this is.

    Raises :class:`~consentmw.ConsentMWError` when the application is not wrapped by
    :class:`~consentmw.ConsentMiddleware` (or the Django middleware).
    """
    ctx = environ.get(ENVIRON_KEY)
    if ctx is None:
        raise ConsentMWError(
            "no consentmw context in this request: wrap the WSGI app with "
            "consentmw.ConsentMiddleware (or add consentmw.django.ConsentMiddleware)"
        )
    assert isinstance(ctx, RequestContext)
    return ctx


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who the visitor is, as far as their consent lets us know.

    ``visitor_id`` and ``session_id`` are ``None`` unless the tracking purpose is granted;
    ``ip`` is the client address as it would be stored (after anonymisation, ``None`` when
    tracking is not granted); ``email`` is known from the e-mail hook or ``identify()``.
    """

    visitor_id: str | None
    session_id: str | None
    ip: str | None
    email: str | None


class RequestContext:
    """Consent, jars and tracking for one request. Built by the middleware."""

    __slots__ = (
        "_cart",
        "_consent",
        "_consent_read",
        "_cookies",
        "_email",
        "_engine",
        "_info",
        "_prefs",
        "_prefs_meta",
        "_session",
        "_state_key",
        "_stored",
        "_stored_changed",
        "_visitor",
        "environ",
        "extra_set_cookies",
        "notice_rendered",
        "now",
    )

    def __init__(self, engine: Engine, environ: MutableMapping[str, Any], now: float) -> None:
        self._engine = engine
        self.environ = environ
        self.now = now
        self._cookies: dict[str, list[str]] | None = None
        self._consent: ConsentState | None = None
        self._consent_read = False
        self._stored: StoredConsent | None = _UNSET
        self._prefs_meta: Any = None
        self._stored_changed = False
        self._prefs: Jar | None = None
        self._session: SessionJar | None = None
        self._cart: Jar | None = None
        self._info: RequestInfo | None = None
        self._email: str | None = None
        self._visitor: Visitor | None = None
        self._state_key: Any = None
        #: Cookies the middleware adds to the response (expiries on withdrawal).
        self.extra_set_cookies: list[CookieSpec] = []
        #: Set when a banner (the notice) is put on this response's page.
        self.notice_rendered = False

    def __repr__(self) -> str:
        method, path = self.environ.get("REQUEST_METHOD"), self.environ.get("PATH_INFO")
        return f"<RequestContext {method} {path!r}>"

    # -- cookies

    def cookie_values(self, name: str) -> list[str]:
        """Every value the browser sent for one of our cookie names."""
        cookies = self._cookies
        if cookies is None:
            cookies = self._cookies = self._engine.read_cookies(self.environ.get("HTTP_COOKIE"))
        return cookies.get(name, [])

    # -- consent

    @property
    def consent(self) -> ConsentState:
        """The visitor's consent for this request (reading it makes the response vary by
        cookie: it gets ``Vary: Cookie`` and is not publicly cacheable)."""
        self._consent_read = True
        return self.state()

    def state(self) -> ConsentState:
        """:attr:`consent` without marking the response as consent-dependent."""
        state = self._consent
        if state is None:
            state = self._consent = self._engine.decide(self)
        return state

    def stored(self) -> StoredConsent | None:
        """The choice stored in the prefs cookie (verified), or ``None``."""
        if self._stored is _UNSET:
            self._engine.load_prefs(self)
        stored: StoredConsent | None = self._stored
        return stored

    def set_stored(self, stored: StoredConsent, *, same_decision: bool = False) -> None:
        """Replace the stored choice; the prefs cookie is re-sent on the response.

        ``same_decision``: only bookkeeping changed (a visitor id, the notice marker), not
        what is granted; the state decided for this request stays as it is (re-deciding
        would, for instance, take the notice shown on this very response as already seen).
        """
        self.stored()
        self._stored = stored
        self._stored_changed = True
        if not same_decision:
            self._consent = None
            self._visitor = None
        self._info = None

    # -- jars

    @property
    def prefs(self) -> Jar:
        """Preferences (language, theme…), kept in the prefs cookie with the consent."""
        jar = self._prefs
        if jar is None:
            jar = self._prefs = self._engine.prefs_jar(self)
        return jar

    @property
    def session(self) -> SessionJar:
        """The session (a signed cookie that ends with the browser session)."""
        jar = self._session
        if jar is None:
            jar = self._session = self._engine.session_jar(self)
        return jar

    @property
    def cart(self) -> Jar:
        """The shopping cart (a signed cookie kept for ``cart_max_age_days``)."""
        jar = self._cart
        if jar is None:
            jar = self._cart = self._engine.cart_jar(self)
        return jar

    # -- the visitor

    @property
    def visitor(self) -> Visitor:
        """Who the visitor is, as far as consent allows."""
        visitor = self._visitor
        if visitor is None:
            visitor = self._visitor = self._engine.visitor(self)
        return visitor

    @property
    def email(self) -> str | None:
        """The e-mail address tied to this request (hook or :meth:`identify`)."""
        return self._email

    def facts(self) -> RequestFacts:
        environ = self.environ
        return RequestFacts(
            environ.get("REMOTE_ADDR"),
            environ.get("HTTP_X_FORWARDED_FOR"),
            environ.get("HTTP_USER_AGENT"),
            environ.get("HTTP_FROM"),
            environ.get("HTTP_REFERER"),
            environ.get("HTTP_HOST"),
        )

    # -- tracking

    def record(self, name: str, /, **props: Any) -> bool:
        """Record an action (a download, a purchase, a forum post…).

        Returns ``False`` and records nothing when the purpose that covers it (the
        ``purpose`` of a ``[[tracking.actions]]`` rule of that name, else
        ``tracking.tracking_purpose``) is not granted. Property values must be JSON values.
        """
        engine = self._engine
        purpose = engine.action_purposes.get(name, engine.tracking_purpose)
        state = self._consent or self.state()
        if purpose is None or purpose not in state.granted:
            return False
        tracking = engine.tracking_purpose
        if tracking is not None and tracking in state.granted:
            info = self._info or engine.request_info(self)
        else:
            # Allowed by its own purpose, but no tracking consent: no identifiers at all.
            info = engine.aggregate_info(self)
        return engine.dispatcher.enqueue(("action", name, time.time(), props, info, None))

    def identify(self, email: str) -> bool:
        """Tie the visitor to an e-mail address (an ``identify`` event).

        ``False``, and nothing stored, when the tracking purpose is not granted or the
        address fails strict validation. Never raises for bad input.
        """
        return self._engine.identify(self, email)

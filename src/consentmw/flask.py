"""Flask integration: consent, signed jars and tracking for a Flask application.

:class:`Consent` is a Flask extension in the usual shape — ``Consent(app)``, or
``consent = Consent()`` then ``consent.init_app(app)`` in an application factory. It wraps
``app.wsgi_app`` in :class:`~consentmw.ConsentMiddleware` (so everything the middleware does
happens exactly as for any WSGI application: the endpoints under ``site.mount``, cookie
enforcement, the banner, tracking), registers itself in ``app.extensions["consentmw"]`` and
adds three Jinja globals:

- ``consent_banner()`` — the banner, placed by the template (empty once the visitor has
  decided); the middleware then does not insert a second one;
- ``consent_settings_link()`` — the "Cookie settings" link, likewise;
- ``consent`` — the request's :class:`~consentmw.ConsentState`, so a template can write
  ``{% if consent.allows("analytics") %}``.

The configuration is the ``config`` argument, else ``app.config["CONSENTMW"]`` (a mapping with
the TOML structure), else ``app.config["CONSENTMW_CONFIG"]`` (the path of a TOML file,
relative paths taken from ``app.root_path`` as Flask's ``config.from_file`` does); all three
are read once, by :func:`load_config`. Flask's session cookie (``SESSION_COOKIE_NAME``) and,
when Flask-Login is installed, its remember-me cookie are declared ``necessary`` unless the
configuration declares them itself, so ``cookie_settings.undeclared = "block"`` never breaks
them; their values and attributes are never touched. When Flask-Login is installed and
``resolve.email_hook`` is not configured, the signed-in user's ``email`` attribute is the
visitor's e-mail address (subject to consent, like every identifier).

In views, :func:`context` is the request's :class:`~consentmw.RequestContext`
(``context().record("purchase", total=12)``, ``context().cart``).

Not for plain WSGI applications (use :class:`~consentmw.ConsentMiddleware`), nor for
per-blueprint configurations: one application, one configuration.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_request_context, request
from markupsafe import Markup
from werkzeug.local import LocalProxy

from .config import Config
from .consent import ConsentState
from .context import RequestContext, get_context
from .errors import _MISSING, ConfigError, ConsentMWError
from .wsgi import ConsentMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "EXTENSION_KEY",
    "Consent",
    "consent_banner",
    "consent_settings_link",
    "consent_state",
    "context",
    "framework_cookies",
    "load_config",
]

#: The key of :class:`Consent` in ``app.extensions``.
EXTENSION_KEY = "consentmw"

ConfigSource = Config | Mapping[str, Any] | str | os.PathLike[str]


def load_config(app: Flask, config: ConfigSource | None = None) -> Config:
    """The application's consentmw configuration: ``config`` when given, else
    ``app.config["CONSENTMW"]`` (a mapping), else ``app.config["CONSENTMW_CONFIG"]`` (a
    path, relative to ``app.root_path``).

    Raises :class:`~consentmw.ConfigError` when none is set, when both settings are set, or
    when the configuration itself is invalid.
    """
    if config is not None:
        return Config.load(config)
    mapping = app.config.get("CONSENTMW")
    path = app.config.get("CONSENTMW_CONFIG")
    if mapping is not None and path is not None:
        raise ConfigError(
            "CONSENTMW_CONFIG",
            path,
            "set app.config['CONSENTMW'] (a mapping) or app.config['CONSENTMW_CONFIG'] "
            "(a path), not both",
        )
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                "CONSENTMW",
                type(mapping).__name__,
                "give a mapping with the consentmw.toml structure; for a file, set "
                "app.config['CONSENTMW_CONFIG'] to its path",
            )
        return Config.load(mapping)
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError("CONSENTMW_CONFIG", path, "give the path of a consentmw.toml")
        return Config.load(Path(app.root_path, path))
    raise ConfigError(
        "CONSENTMW",
        _MISSING,
        "pass config= to Consent(), or set app.config['CONSENTMW'] (a mapping) or "
        "app.config['CONSENTMW_CONFIG'] (the path of a consentmw.toml)",
    )


def context() -> RequestContext:
    """The consentmw context of the current Flask request.

    Raises :class:`~consentmw.ConsentMWError` outside a request, or when the application was
    not set up with :class:`Consent`.
    """
    if not has_request_context():
        raise ConsentMWError("consentmw.flask.context() needs an active Flask request")
    return get_context(request.environ)


def consent_state() -> ConsentState:
    """The current request's consent (the value of the Jinja global ``consent``)."""
    return context().consent


class Consent:
    """The Flask extension. See the module docstring.

    ``config`` is a :class:`~consentmw.Config`, a mapping with the TOML structure or the path
    of a TOML file; without it, the application's settings are read (:func:`load_config`).
    ``middleware_options`` go to :class:`~consentmw.ConsentMiddleware` (``sinks``,
    ``clock``, ``necessary_cookies`` — added to Flask's own — and ``email_hook``, which
    replaces the Flask-Login one).

    One ``Consent`` may set up several applications (the factory pattern); each gets its own
    middleware, configured from its own settings.
    """

    def __init__(
        self,
        app: Flask | None = None,
        config: ConfigSource | None = None,
        **middleware_options: Any,
    ) -> None:
        self._config = config
        self._options = middleware_options
        self._middlewares: weakref.WeakKeyDictionary[Flask, ConsentMiddleware] = (
            weakref.WeakKeyDictionary()
        )
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app``, register the extension and the Jinja globals.

        Raises :class:`~consentmw.ConfigError` for a missing or invalid configuration and
        :class:`RuntimeError` if the application is already set up.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("consentmw is already set up on this application")
        config = load_config(app, self._config)
        options = dict(self._options)
        necessary = [*framework_cookies(app, config), *options.pop("necessary_cookies", ())]
        email_hook = options.pop("email_hook", None)
        if email_hook is None and _flask_login_installed():
            email_hook = _flask_login_email
        inner: WSGIApplication = app.wsgi_app
        middleware = ConsentMiddleware(
            inner, config, necessary_cookies=necessary, email_hook=email_hook, **options
        )
        app.wsgi_app = middleware  # type: ignore[method-assign]
        self._middlewares[app] = middleware
        app.extensions[EXTENSION_KEY] = self
        app.jinja_env.globals.update(
            consent_banner=consent_banner,
            consent_settings_link=consent_settings_link,
            consent=_CONSENT,
        )

    def middleware(self, app: Flask | None = None) -> ConsentMiddleware:
        """The middleware of ``app`` (default: the current application)."""
        target: Flask = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._middlewares[target]
        except KeyError:
            raise ConsentMWError("consentmw is not set up on this application") from None

    def flush(self, timeout: float = 5.0, *, app: Flask | None = None) -> bool:
        """Wait until the application's queued events are written; ``False`` on timeout."""
        return self.middleware(app).flush(timeout)

    def stats(self, *, app: Flask | None = None) -> dict[str, Any]:
        """The application's middleware counters (:meth:`ConsentMiddleware.stats`)."""
        return self.middleware(app).stats()

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop every application's middleware; ``True`` when all finished."""
        results = [mw.close(timeout) for mw in list(self._middlewares.values())]
        return all(results)


def framework_cookies(app: Flask, config: Config) -> list[str]:
    """Flask's own cookies that the configuration does not declare: the session cookie and,
    with Flask-Login installed, the remember-me cookie."""
    names = [str(app.config.get("SESSION_COOKIE_NAME") or "session")]
    if _flask_login_installed():
        names.append(str(app.config.get("REMEMBER_COOKIE_NAME") or "remember_token"))
    return [name for name in names if config.cookie_rule(name) is None]


def consent_banner() -> Markup:
    """The Jinja global ``consent_banner()``: the banner markup for this request, or empty
    (decided, or no request)."""
    return _markup(lambda engine, ctx: engine.banner_markup(ctx))


def consent_settings_link() -> Markup:
    """The Jinja global ``consent_settings_link()``: the link to the preferences page."""
    return _markup(lambda engine, ctx: engine.settings_link_markup(ctx))


def _markup(render: Callable[[Any, RequestContext], str]) -> Markup:
    if not has_request_context():
        return Markup("")
    ctx = get_context(request.environ)
    extension = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(extension, Consent):
        raise ConsentMWError("consentmw is not set up on this application")
    engine = extension.middleware().engine
    return Markup(render(engine, ctx))  # noqa: S704 - consentmw's own markup, escaped there


#: The Jinja global ``consent``: resolved per request.
_CONSENT: ConsentState = LocalProxy(consent_state)  # type: ignore[assignment]


def _flask_login_installed() -> bool:
    return importlib.util.find_spec("flask_login") is not None


def _flask_login_email(environ: Mapping[str, Any]) -> str | None:
    """The e-mail address of Flask-Login's ``current_user`` when signed in.

    Called by the engine during this request (in the view, or while the response starts,
    while Flask's request context is still active).
    """
    if not has_request_context() or request.environ is not environ:
        return None
    if getattr(current_app, "login_manager", None) is None:
        return None  # Flask-Login installed, not used by this application
    user = importlib.import_module("flask_login").current_user
    if not getattr(user, "is_authenticated", False):
        return None
    email = getattr(user, "email", None)
    return email if isinstance(email, str) and email else None

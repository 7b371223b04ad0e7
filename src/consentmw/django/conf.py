"""Django settings → consentmw: the one place the project's settings are read.

:func:`load_config` turns ``CONSENTMW`` (a mapping with the ``consentmw.toml`` structure) or
``CONSENTMW_CONFIG`` (the path of a TOML file) into a :class:`~consentmw.Config`;
:func:`framework_cookies` names Django's own cookies; :func:`build_engine` makes the
engine the middleware and the template tags share. The app config keeps that engine for the
life of the process (:func:`get_engine`) and rebuilds it when a test overrides one of the
settings read here.

Not for reading settings per request: everything here runs once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from ..config import Config
from ..engine import Engine
from ..errors import _MISSING, ConfigError

if TYPE_CHECKING:
    from .apps import ConsentMWConfig

__all__ = [
    "REQUEST_KEY",
    "SETTINGS",
    "build_engine",
    "framework_cookies",
    "get_engine",
    "load_config",
]

#: Settings whose change (``override_settings`` in tests) rebuilds the engine.
SETTINGS = frozenset(
    {
        "CONSENTMW",
        "CONSENTMW_CONFIG",
        "SESSION_COOKIE_NAME",
        "CSRF_COOKIE_NAME",
        "CSRF_USE_SESSIONS",
        "LANGUAGE_COOKIE_NAME",
        "INSTALLED_APPS",
    }
)

#: Where the middleware keeps the request in ``request.META`` while the engine may call the
#: e-mail hook (removed when the response is finished).
REQUEST_KEY = "consentmw.django.request"


def load_config(settings: Any) -> Config:
    """The project's consentmw configuration from ``settings.CONSENTMW`` (a mapping) or
    ``settings.CONSENTMW_CONFIG`` (a path, relative to the working directory).

    Raises :class:`~consentmw.ConfigError` when neither or both are set, or when the
    configuration is invalid.
    """
    mapping = getattr(settings, "CONSENTMW", None)
    path = getattr(settings, "CONSENTMW_CONFIG", None)
    if mapping is not None and path is not None:
        raise ConfigError(
            "CONSENTMW_CONFIG",
            path,
            "set CONSENTMW (a dict) or CONSENTMW_CONFIG (a path) in settings, not both",
        )
    if mapping is not None:
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                "CONSENTMW",
                type(mapping).__name__,
                "give a dict with the consentmw.toml structure; for a file, set "
                "CONSENTMW_CONFIG to its path",
            )
        return Config.load(mapping)
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError("CONSENTMW_CONFIG", path, "give the path of a consentmw.toml")
        return Config.load(path)
    raise ConfigError(
        "CONSENTMW",
        _MISSING,
        "set CONSENTMW (a dict with the consentmw.toml structure) or CONSENTMW_CONFIG "
        "(the path of a consentmw.toml) in settings",
    )


def framework_cookies(settings: Any, config: Config) -> list[str]:
    """Django's own cookies that the configuration does not declare: the session cookie,
    the CSRF cookie (unless ``CSRF_USE_SESSIONS``), the language cookie and, with
    ``django.contrib.messages`` installed, the messages cookie."""
    names = [
        str(getattr(settings, "SESSION_COOKIE_NAME", "sessionid")),
        str(getattr(settings, "LANGUAGE_COOKIE_NAME", "django_language")),
    ]
    if not getattr(settings, "CSRF_USE_SESSIONS", False):
        names.append(str(getattr(settings, "CSRF_COOKIE_NAME", "csrftoken")))
    if "django.contrib.messages" in getattr(settings, "INSTALLED_APPS", ()):
        names.append("messages")
    return [name for name in names if config.cookie_rule(name) is None]


def build_engine(settings: Any, config: Config | None = None) -> Engine:
    """The engine for the project: its configuration, Django's cookies declared necessary,
    ``request.user.email`` as the e-mail hook."""
    config = config if config is not None else load_config(settings)
    return Engine(
        config,
        extra_necessary_cookies=framework_cookies(settings, config),
        email_hook=user_email,
    )


def user_email(environ: Mapping[str, Any]) -> str | None:
    """The e-mail hook: the signed-in ``request.user``'s ``email``, when there is one."""
    request = environ.get(REQUEST_KEY)
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    email = getattr(user, "email", None)
    return email if isinstance(email, str) and email else None


def app_config() -> ConsentMWConfig:
    """The installed ``consentmw.django`` app, or :class:`ImproperlyConfigured`."""
    from .apps import ConsentMWConfig

    try:
        found = apps.get_app_config(ConsentMWConfig.label)
    except LookupError:
        raise ImproperlyConfigured(
            'add "consentmw.django" to INSTALLED_APPS to use consentmw\'s middleware and tags'
        ) from None
    assert isinstance(found, ConsentMWConfig)
    return found


def get_engine() -> Engine:
    """The project's engine, built on first use from the settings (for operator code and
    tests: ``get_engine().stats()``, ``get_engine().dispatcher.flush()``)."""
    return app_config().engine

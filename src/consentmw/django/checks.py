"""System checks of ``consentmw.django`` (``manage.py check``, run by ``runserver``).

======================  ==============================================================
``consentmw.E001``      no configuration, or an invalid one (missing secret keys, an
                        unknown purpose…): the ``ConfigError`` with its fix
``consentmw.E002``      a template names a purpose the configuration does not have
                        (``{% consent_allows "…" %}``, ``consent.allows("…")``,
                        ``data-consent="…"``)
``consentmw.W001``      ``cookie_settings.secure = false`` while ``DEBUG`` is off
``consentmw.W002``      the middleware is not in ``MIDDLEWARE``
``consentmw.W003``      ``GZipMiddleware`` runs inside the middleware: HTML arrives
                        compressed and gets no banner
``consentmw.W004``      ``AuthenticationMiddleware`` runs inside the middleware: no e-mail
                        address from ``request.user``
``consentmw.W005``      templates use the tags but the ``request`` context processor is off
======================  ==============================================================

The template check is best effort: it reads the files under every template directory
(``DIRS`` and, with ``APP_DIRS``, the apps'), up to a few thousand, and looks for the three
patterns with a regular expression. A purpose built at run time is not seen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from ..config import Config
from ..errors import ConfigError
from .conf import load_config

__all__ = ["check_configuration", "check_middleware", "check_templates"]

_MIDDLEWARE = "consentmw.django.ConsentMiddleware"
_ALIASES = (_MIDDLEWARE, "consentmw.django.middleware.ConsentMiddleware")
_GZIP = "django.middleware.gzip.GZipMiddleware"
_AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
_REQUEST_PROCESSOR = "django.template.context_processors.request"

_PURPOSE_PATTERNS = (
    re.compile(r"""\{%-?\s*consent_allows\s+(["'])(?P<purpose>[^"'\n]*)\1\s*-?%\}"""),
    re.compile(r"""\bconsent\.allows\(\s*(["'])(?P<purpose>[^"'\n]*)\1\s*\)"""),
    re.compile(r"""\bdata-consent\s*=\s*(["'])(?P<purpose>[^"'\n]*)\1"""),
)
_TAG_USE = re.compile(r"\{%-?\s*(?:consent_banner|consent_settings_link|consent_allows)\b")
_MAX_FILES = 5000
_MAX_BYTES = 1024 * 1024


def _config() -> Config | ConfigError:
    try:
        return load_config(settings)
    except ConfigError as exc:
        return exc


@register("consentmw")
def check_configuration(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001 (no or an invalid configuration) and W001 (cookies without ``Secure`` in
    production)."""
    found = _config()
    if isinstance(found, ConfigError):
        return [
            Error(
                f"consentmw configuration: {found}",
                hint=found.fix,
                obj=found.field,
                id="consentmw.E001",
            )
        ]
    messages: list[CheckMessage] = []
    if not settings.DEBUG and not found.cookie_settings.secure:
        messages.append(
            Warning(
                "consentmw's cookies are sent without Secure while DEBUG is off",
                hint="set cookie_settings.secure = true (the default) when the site is served "
                "over HTTPS; consent and session cookies over plain HTTP can be stolen",
                obj="cookie_settings.secure",
                id="consentmw.W001",
            )
        )
    return messages


@register("consentmw")
def check_middleware(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """W002 (not listed), W003 (GZip inside) and W004 (authentication inside)."""
    middleware = [str(m) for m in getattr(settings, "MIDDLEWARE", None) or ()]
    ours = next((i for i, m in enumerate(middleware) if m in _ALIASES), None)
    if ours is None:
        return [
            Warning(
                f"{_MIDDLEWARE} is not in MIDDLEWARE",
                hint=f'add "{_MIDDLEWARE}" after AuthenticationMiddleware',
                id="consentmw.W002",
            )
        ]
    messages: list[CheckMessage] = []
    if _GZIP in middleware and middleware.index(_GZIP) > ours:
        messages.append(
            Warning(
                "GZipMiddleware is listed after consentmw's middleware, so HTML reaches "
                "consentmw compressed and gets no banner",
                hint=f"list {_GZIP} before {_MIDDLEWARE}",
                id="consentmw.W003",
            )
        )
    if _AUTH in middleware and middleware.index(_AUTH) > ours:
        messages.append(
            Warning(
                "AuthenticationMiddleware is listed after consentmw's middleware, so "
                "request.user is not there when consentmw looks for the e-mail address",
                hint=f"list {_AUTH} before {_MIDDLEWARE}",
                id="consentmw.W004",
            )
        )
    return messages


@register(Tags.templates, "consentmw")
def check_templates(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """E002 (an unknown purpose named in a template) and W005 (tags used without the
    ``request`` context processor)."""
    found = _config()
    if isinstance(found, ConfigError):
        return []  # E001 says it
    known = found.purpose_ids
    messages: list[CheckMessage] = []
    uses_tags = False
    for path in _template_files():
        try:
            with open(path, "rb") as handle:
                text = handle.read(_MAX_BYTES).decode("utf-8", "replace")
        except OSError:
            continue
        uses_tags = uses_tags or _TAG_USE.search(text) is not None
        for pattern in _PURPOSE_PATTERNS:
            for match in pattern.finditer(text):
                purpose = match.group("purpose")
                if purpose in known:
                    continue
                line = text.count("\n", 0, match.start()) + 1
                messages.append(
                    Error(
                        f"{path}:{line} names the purpose {purpose!r}, which the consentmw "
                        "configuration does not have",
                        hint=f"use one of {', '.join(sorted(known))}, or declare "
                        f"[purposes.{purpose}]",
                        obj=str(path),
                        id="consentmw.E002",
                    )
                )
    if uses_tags and not _request_processor_enabled():
        messages.append(
            Warning(
                "templates use consentmw's tags but the request context processor is off, "
                "so they render nothing",
                hint=f'add "{_REQUEST_PROCESSOR}" to OPTIONS["context_processors"] in TEMPLATES',
                id="consentmw.W005",
            )
        )
    return messages


def _template_dirs() -> list[Path]:
    from django.template import engines

    dirs: list[Path] = []
    for backend in engines.all():
        for directory in getattr(backend, "template_dirs", ()):
            path = Path(directory)
            if path not in dirs:
                dirs.append(path)
    return dirs


def _template_files() -> Iterator[Path]:
    seen = 0
    for root in _template_dirs():
        if not root.is_dir():
            continue
        for folder, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                seen += 1
                if seen > _MAX_FILES:
                    return
                yield Path(folder, name)


def _request_processor_enabled() -> bool:
    for backend in getattr(settings, "TEMPLATES", None) or ():
        if backend.get("BACKEND") != "django.template.backends.django.DjangoTemplates":
            continue
        processors = (backend.get("OPTIONS") or {}).get("context_processors") or ()
        if _REQUEST_PROCESSOR not in processors:
            return False
    return True

"""Django integration: consent, signed jars and tracking for a Django project.

Add the app and the middleware::

    INSTALLED_APPS = [..., "consentmw.django"]
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.gzip.GZipMiddleware",            # outside: compresses what we wrote
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "consentmw.django.ConsentMiddleware",                # after auth: request.user.email
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    CONSENTMW = {...}            # the consentmw.toml structure, or:
    CONSENTMW_CONFIG = BASE_DIR / "consentmw.toml"

Where the middleware goes:

- **inside** ``GZipMiddleware`` (listed after it): the response then reaches consentmw
  uncompressed and the banner can be inserted; compressed HTML is passed through untouched;
- **after** ``AuthenticationMiddleware``: ``request.user.email`` is the visitor's e-mail
  address when signed in (subject to consent) unless ``resolve.email_hook`` is configured;
- anywhere relative to ``SessionMiddleware`` and ``CsrfViewMiddleware``: their cookies (and
  the language cookie) are declared ``necessary`` unless the configuration declares them, so
  ``cookie_settings.undeclared = "block"`` never removes them. The consent endpoint
  (``POST /_consent``) is answered by this middleware before any view runs, so
  ``CsrfViewMiddleware`` never sees it; it has its own protection (a token bound to
  consentmw's session, ``Sec-Fetch-Site``/``Origin`` checks). Django's CSRF protection of
  the project's own views is unchanged.

``request.consentmw`` is the request's :class:`~consentmw.RequestContext`; the template
library ``{% load consentmw %}`` has ``{% consent_banner %}``, ``{% consent_settings_link %}``
and ``{% consent_allows "purpose" %}…{% else %}…{% endconsent_allows %}``. System checks
report a missing or invalid configuration, cookies without ``Secure`` when ``DEBUG`` is off,
a middleware order that defeats the banner or the e-mail address, and templates naming
purposes the configuration does not have.

Not for projects that cannot list the app in ``INSTALLED_APPS`` (use
:class:`consentmw.ConsentMiddleware` around the WSGI application instead).
"""

from __future__ import annotations

from .conf import framework_cookies, get_engine, load_config
from .middleware import ConsentMiddleware

__all__ = ["ConsentMiddleware", "framework_cookies", "get_engine", "load_config"]

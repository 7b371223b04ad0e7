"""Settings of the MODX forums example, in code.

The middleware order is the one ``consentmw.django`` documents: GZip outside consentmw (so the
banner goes into uncompressed HTML), authentication before it (so ``request.user.email`` is
the visitor's address when signed in), sessions and CSRF anywhere (their cookies are declared
necessary; the consent endpoint has its own protection).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FORUM_DATA_DIR") or HERE.parent / "data" / "django_forum")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def consent_config() -> dict[str, Any]:
    """``examples/consentmw.toml`` for http://127.0.0.1: events in the data directory,
    cookies neither ``Secure`` nor shared with a parent domain, no reverse DNS, no proxy."""
    with (HERE.parent / "consentmw.toml").open("rb") as handle:
        data = tomllib.load(handle)
    data["site"]["name"] = "forums.modx.com"
    data["sinks"] = {"events": ["sqlite:///" + str(DATA_DIR.resolve() / "events.db")]}
    data["cookie_settings"]["secure"] = False
    data["cookie_settings"].pop("domain", None)
    data["resolve"]["reverse_dns"] = False
    data["resolve"]["trusted_proxies"] = 0
    return data


DEBUG = os.environ.get("FORUM_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("FORUM_SECRET_KEY") or secrets.token_urlsafe(50)
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "consentmw.django",
    "forum",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "consentmw.django.ConsentMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "forum.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "forum.db")}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

CONSENTMW = consent_config()

"""Fixtures of the integration tests: the examples loaded as modules, a configured Django
project, and the three sites of the acceptance scenario behind werkzeug's test client.

Django is configured once per test session with ``settings.configure`` (a process can be
configured only once); tests change single settings with ``override_settings``, and the
``consentmw.django`` app rebuilds its engine when ``CONSENTMW`` changes.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from werkzeug.test import Client

from consentmw import ConsentRecord, Event

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TEMPLATES = Path(__file__).resolve().parent / "djangoproject" / "templates"
TEST_KEY = "integration-tests-key-0123456789"

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


def load_example(relative: str) -> ModuleType:
    """An example file as a module (examples are not a package; they run as scripts)."""
    path = EXAMPLES / relative
    name = "example_" + relative.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def secret_keys() -> Iterator[None]:
    """The examples' configuration reads its keys from ``CONSENTMW_SECRET_KEYS``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONSENTMW_SECRET_KEYS", TEST_KEY)
        yield


def example_config(data_dir: Path, site: str = "forums.modx.com") -> dict[str, Any]:
    """``examples/consentmw.toml`` as the examples run it on a laptop."""
    config: dict[str, Any] = load_example("wsgi_site.py").example_config(data_dir, site=site)
    return config


@pytest.fixture(scope="session")
def django_project(tmp_path_factory: pytest.TempPathFactory, secret_keys: None) -> Any:
    """Django, configured for the test project (``tests/integrations/djangoproject``)."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="django-tests-" + "k" * 40,
            ALLOWED_HOSTS=["localhost", "testserver", ".modx.com"],
            ROOT_URLCONF="tests.integrations.djangoproject.urls",
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                "consentmw.django",
            ],
            MIDDLEWARE=MIDDLEWARE,
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "DIRS": [str(TEMPLATES)],
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            USE_TZ=True,
            LANGUAGES=[("en", "English"), ("de", "German")],
            CONSENTMW=example_config(tmp_path_factory.mktemp("django-default")),
        )
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)
    return settings


@pytest.fixture
def django_consent(django_project: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Switch the project to a fresh consentmw configuration (events in ``tmp_path``):
    ``django_consent(**overrides)`` returns the engine; settings are restored after."""
    from django.test import override_settings

    from consentmw.django import get_engine

    overrides: list[Any] = []

    def switch(config: dict[str, Any] | None = None, **settings: Any) -> Any:
        override = override_settings(CONSENTMW=config or example_config(tmp_path), **settings)
        override.enable()
        overrides.append(override)
        return get_engine()

    yield switch
    for override in reversed(overrides):
        get_engine().close(timeout=10)
        override.disable()


@dataclass
class Site:
    """One site of the acceptance scenario."""

    name: str
    client: Client
    flush: Callable[[], bool]
    sink: Any

    def events(self) -> list[Event]:
        assert self.flush(), "the events were not written in time"
        return list(self.sink.query())

    def consent_records(self) -> list[ConsentRecord]:
        assert self.flush()
        return list(self.sink.consent_records())


@pytest.fixture(params=["wsgi", "flask", "django"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """The plain WSGI example, the Flask shop example and the Django test project, each with
    ``examples/consentmw.toml`` and its events in SQLite under ``tmp_path``."""
    if request.param == "wsgi":
        middleware = load_example("wsgi_site.py").make_app(tmp_path)
        try:
            yield Site("wsgi", Client(middleware), lambda: middleware.flush(10), _sink(middleware))
        finally:
            middleware.close(timeout=10)
    elif request.param == "flask":
        app = load_example("flask_shop/app.py").create_app(tmp_path)
        middleware = app.extensions["consentmw"].middleware(app)
        try:
            yield Site("flask", Client(app), lambda: middleware.flush(10), _sink(middleware))
        finally:
            middleware.close(timeout=10)
    else:
        switch = request.getfixturevalue("django_consent")
        engine = switch(example_config(tmp_path))
        from django.core.handlers.wsgi import WSGIHandler

        sink = engine.sinks[engine.config.sinks.events[0]]
        yield Site("django", Client(WSGIHandler()), lambda: engine.dispatcher.flush(10), sink)


def _sink(middleware: Any) -> Any:
    return middleware.sinks[middleware.config.sinks.events[0]]

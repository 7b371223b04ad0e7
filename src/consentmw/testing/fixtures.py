"""pytest fixtures for code that runs behind consentmw, registered by :mod:`.plugin`.

========================  ==================================================================
``consent_config``        a valid configuration mapping (opt-in; ``necessary``,
                          ``analytics``, ``marketing``; ``memory://`` sinks; no ``Secure``
                          cookies, so plain ``http://localhost`` works). Override it to test
                          with your own: return a mapping, a :class:`~consentmw.Config` or
                          the path of a TOML file.
``memory_sink``           a fresh :class:`~consentmw.MemorySink`; it receives the events
                          and the consent log when ``consent_config`` uses ``memory://``
``consent_app``           the WSGI application under test: a page of HTML by default;
                          override it with yours
``consent_client``        a :class:`ConsentClient` (werkzeug's test client) for
                          ``consent_app`` wrapped by :class:`~consentmw.ConsentMiddleware`
                          with ``consent_config``; closed after the test
========================  ==================================================================

For example::

    @pytest.fixture
    def consent_app():
        from myshop import create_app
        return create_app().wsgi_app

    def test_checkout_is_recorded_with_consent(consent_client, memory_sink):
        consent_client.accept("analytics")
        consent_client.post("/checkout", data={"total": "12"})
        consent_client.flush()
        assert [e.name for e in memory_sink.query(type="action")] == ["purchase"]

Not a replacement for the sink contract (:class:`~consentmw.testing.SinkContract`), which
tests sinks rather than applications.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.test import Client, TestResponse

if TYPE_CHECKING:
    from ..sinks import MemorySink
    from ..wsgi import ConsentMiddleware

__all__ = [
    "TEST_SECRET_KEY",
    "ConsentClient",
    "consent_app",
    "consent_client",
    "consent_config",
    "default_config",
    "memory_sink",
]

#: The signing key of :func:`default_config`: for tests only, never for a site.
TEST_SECRET_KEY = "consentmw-testing-key-not-secret"  # noqa: S105 - public on purpose

_SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Accept": "application/json"}
_PAGE = b"<!doctype html><html><head><title>Test</title></head><body><p>Hello</p></body></html>"


def default_config() -> dict[str, Any]:
    """The configuration :func:`consent_config` returns unless overridden (a fresh copy)."""
    return {
        "site": {"name": "localhost", "secret_keys": [TEST_SECRET_KEY]},
        "policy": {"version": "1", "model": "opt-in"},
        "purposes": {
            "necessary": {"title": "Strictly necessary", "required": True},
            "analytics": {"title": "Improve our content"},
            "marketing": {"title": "Marketing contact", "gpc_opt_out": True},
        },
        "cookies": [{"name": "_ga", "match": "prefix", "purpose": "analytics"}],
        "cookie_settings": {"secure": False},
        "tracking": {"tracking_purpose": "analytics"},
        "sinks": {"events": ["memory://"]},
        "dispatch": {"spool": "", "flush_interval_ms": 10},
    }


def _html_app(environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(_PAGE)))],
    )
    return [_PAGE]


@pytest.fixture
def consent_config() -> Any:
    """The configuration ``consent_client`` uses (see :func:`default_config`)."""
    return default_config()


@pytest.fixture
def memory_sink() -> MemorySink:
    """A fresh memory sink, given to the middleware for ``memory://``."""
    from ..sinks import MemorySink

    return MemorySink()


@pytest.fixture
def consent_app() -> Any:
    """The WSGI application ``consent_client`` wraps: one HTML page at every path."""
    return _html_app


@pytest.fixture
def consent_client(
    consent_app: Any, consent_config: Any, memory_sink: MemorySink
) -> Iterator[ConsentClient]:
    """Werkzeug's test client for ``consent_app`` behind consentmw (see :class:`ConsentClient`)."""
    from ..wsgi import ConsentMiddleware

    middleware = ConsentMiddleware(consent_app, consent_config, sinks={"memory://": memory_sink})
    client = ConsentClient(middleware)
    try:
        yield client
    finally:
        middleware.close(timeout=5)


class ConsentClient(Client):
    """A werkzeug test client with consent helpers.

    Requests go through the middleware like a browser's: cookies are kept between them.
    :meth:`accept`, :meth:`reject` and :meth:`withdraw` post a choice the way the banner does
    (with its token and a same-origin request) and return the response, whose JSON is the new
    state; :meth:`state` is the current one (``GET <mount>``).
    """

    def __init__(self, middleware: ConsentMiddleware, **kwargs: Any) -> None:
        super().__init__(middleware, **kwargs)
        self.middleware = middleware
        self.mount = middleware.config.site.mount

    def state(self) -> dict[str, Any]:
        """The visitor's consent as ``GET <mount>`` returns it (``granted``, ``decided``,
        ``policy_version``, ``source``, ``csrf``…)."""
        response = self.get(self.mount, headers=_SAME_ORIGIN)
        if response.status_code != 200:
            raise AssertionError(f"GET {self.mount} answered {response.status}")
        state: dict[str, Any] = response.get_json()
        return state

    def choose(self, choice: str, purposes: Iterable[str] = ()) -> TestResponse:
        """Post a choice (``accept_all``, ``reject_all`` or ``custom`` with ``purposes``)."""
        form = [("choice", choice), ("csrf", self.state()["csrf"])]
        form.extend(("purpose", p) for p in purposes)
        response: TestResponse = self.post(self.mount, data=MultiDict(form), headers=_SAME_ORIGIN)
        if response.status_code != 200:
            raise AssertionError(
                f"the choice {choice} was refused: {response.status} {response.get_data(True)}"
            )
        return response

    def accept(self, *purposes: str) -> TestResponse:
        """Grant ``purposes`` (every purpose when none is named)."""
        if not purposes:
            return self.choose("accept_all")
        return self.choose("custom", purposes)

    def reject(self) -> TestResponse:
        """Decline every purpose that is not required."""
        return self.choose("reject_all")

    def withdraw(self, *purposes: str) -> TestResponse:
        """Take back ``purposes``, keeping the other granted ones."""
        granted = set(self.state()["granted"]) - set(purposes)
        return self.choose("custom", sorted(granted))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the events queued so far reach the sinks (``AssertionError`` if not)."""
        if not self.middleware.flush(timeout):
            raise AssertionError(f"the events were not written within {timeout} s")

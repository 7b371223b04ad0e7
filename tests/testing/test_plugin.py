"""The pytest plugin, as a project that installs consentmw uses it.

Each test writes a throwaway test module and runs pytest on it with ``pytester``: the
plugin is found through its ``pytest11`` entry point (nothing is imported by hand), its
fixtures drive an application behind the middleware, and a third-party sink subclasses
``SinkContract``.
"""

from __future__ import annotations

import pytest

# Imported here, not first inside an inner run: pytester drops modules an inner run imported
# when it ends, and a hypothesis imported anew in each run mixes two copies of its HealthCheck
# enum with the plugin's, which breaks its suppression checks.
import consentmw.testing.contract
import consentmw.testing.fixtures
import consentmw.testing.strategies  # noqa: F401

pytest_plugins = ["pytester"]

THIRD_PARTY_SINK = '''
import threading

import pytest

from consentmw.errors import SinkError
from consentmw.testing import SinkContract


class ListSink:
    """Somebody else's sink: keeps events by id, can only be written."""

    def __init__(self):
        self.stored = {}
        self._lock = threading.Lock()
        self._closed = False

    def write(self, events):
        with self._lock:
            if self._closed:
                raise SinkError("closed", retryable=False)
            for event in events:
                self.stored.setdefault(event.id, event)

    def close(self):
        with self._lock:
            self._closed = True


class TestListSink(SinkContract):
    orders_by_timestamp = False

    @pytest.fixture
    def make_sink(self):
        return ListSink

    def read_back(self, sink):
        return list(sink.stored.values())
'''

APPLICATION_TESTS = """
import pytest

from consentmw import Config
from consentmw.testing import ConsentClient, default_config


def test_the_default_app_shows_the_banner(consent_client):
    assert isinstance(consent_client, ConsentClient)
    page = consent_client.get("/")
    assert page.status_code == 200
    assert 'id="cmw-banner"' in page.get_data(as_text=True)
    state = consent_client.state()
    assert state["decided"] is False
    assert state["granted"] == ["necessary"]


def test_accept_some_then_visits_are_recorded_with_an_id(consent_client, memory_sink):
    state = consent_client.accept("analytics").get_json()
    assert state["granted"] == ["analytics", "necessary"]
    assert state["decided"] is True
    consent_client.get("/docs/start")
    consent_client.flush()
    visits = [e for e in memory_sink.events if e.type == "page_visit"]
    assert [e.path for e in visits] == ["/docs/start"]
    assert visits[0].visitor_id
    assert [r.mechanism for r in memory_sink.consent_records()] == ["custom"]


def test_accept_all_and_reject(consent_client):
    assert consent_client.accept().get_json()["granted"] == ["analytics", "marketing", "necessary"]
    assert consent_client.reject().get_json()["granted"] == ["necessary"]
    assert consent_client.state()["decided"] is True


def test_withdraw_keeps_the_rest(consent_client):
    consent_client.accept()
    assert consent_client.withdraw("marketing").get_json()["granted"] == [
        "analytics",
        "necessary",
    ]


def test_rejected_visits_carry_no_identifier(consent_client, memory_sink):
    consent_client.reject()
    consent_client.get("/")
    consent_client.flush()
    assert not [e for e in memory_sink.events if e.visitor_id or e.session_id]


class TestOverriddenFixtures:
    @pytest.fixture
    def consent_config(self):
        data = default_config()
        data["policy"]["model"] = "opt-out"
        return Config.load(data)

    @pytest.fixture
    def consent_app(self):
        def app(environ, start_response):
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "_ga=GA1.2.3; Path=/")]
            )
            return [b"plain"]

        return app

    def test_the_project_app_and_config_are_used(self, consent_client):
        first = consent_client.get("/")
        assert first.get_data() == b"plain"
        # opt-out: analytics is on until the visitor says no, so its cookie goes out.
        assert first.headers.getlist("Set-Cookie")[0].startswith("_ga=")
        consent_client.reject()
        assert not consent_client.get("/").headers.getlist("Set-Cookie")
"""


def test_fixtures_drive_an_application_behind_the_middleware(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=APPLICATION_TESTS)
    result = pytester.runpytest("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_a_third_party_sink_runs_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_list_sink=THIRD_PARTY_SINK)
    result = pytester.runpytest("-W", "error", "-p", "no:cacheprovider", "-v", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes["passed"] >= 10
    # The write-only sink still gets the round-trip, idempotency, concurrency and close tests;
    # the capabilities it lacks are skipped, with a reason.
    result.stdout.fnmatch_lines(
        [
            "*test_round_trip_keeps_every_field PASSED*",
            "*test_same_batch_twice_is_stored_once PASSED*",
            "*test_concurrent_writers_store_every_event_exactly_once PASSED*",
            "*test_write_after_close_raises_sink_error PASSED*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*SKIPPED*query*"])


def test_a_broken_third_party_sink_fails_the_contract(pytester: pytest.Pytester) -> None:
    broken = THIRD_PARTY_SINK.replace(
        "self.stored.setdefault(event.id, event)",
        "self.stored[event.id + str(len(self.stored))] = event  # duplicates",
    )
    pytester.makepyfile(test_list_sink=broken)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.parseoutcomes().get("failed", 0) >= 2
    result.stdout.fnmatch_lines(["*FAILED*test_same_batch_twice_is_stored_once*"])


def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
        def test_uses_the_fixture(consent_client):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:consentmw", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*fixture 'consent_client' not found*"])
    assert result.ret != 0

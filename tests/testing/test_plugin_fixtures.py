"""The plugin's fixtures and the consent strategies, used directly in this project's run
(the plugin is loaded here through its entry point, like anywhere consentmw is installed)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from werkzeug.test import Client

from consentmw import ConsentMiddleware, ConsentState, MemorySink
from consentmw.testing import ConsentClient, consent_choices, consent_states, default_config

PURPOSES = ("analytics", "marketing")


def test_the_fixtures_fit_together(
    consent_client: ConsentClient, memory_sink: MemorySink, consent_config: dict[str, object]
) -> None:
    assert consent_config == default_config()
    assert consent_client.middleware.sinks["memory://"] is memory_sink
    consent_client.accept()
    consent_client.get("/")
    consent_client.flush()
    assert [e.type for e in memory_sink.events] == ["consent", "page_visit"]


def test_a_refused_choice_is_an_assertion_error(consent_client: ConsentClient) -> None:
    with pytest.raises(AssertionError, match="400"):
        consent_client.choose("custom", ["no-such-purpose"])


@given(choice=consent_choices(PURPOSES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_choice_is_what_the_state_then_says(choice: tuple[str, tuple[str, ...]]) -> None:
    kind, purposes = choice
    expected = {"accept_all": set(PURPOSES), "reject_all": set()}.get(kind, set(purposes))
    sink = MemorySink()
    middleware = ConsentMiddleware(
        lambda environ, start_response: [], default_config(), sinks={"memory://": sink}
    )
    try:
        client = ConsentClient(middleware)
        state = client.choose(kind, purposes).get_json()
        assert set(state["granted"]) == expected | {"necessary"}
        assert client.state()["granted"] == state["granted"]
        assert middleware.flush(5)
        [record] = list(sink.consent_records())
        assert set(record.granted) == expected | {"necessary"}
    finally:
        middleware.close(timeout=5)


@given(state=consent_states(("necessary", "analytics", "marketing"), versions=("2", "1")))
def test_drawn_states_keep_the_rules_of_consent(state: ConsentState) -> None:
    assert state.allows("necessary")
    assert state.granted <= {"necessary", "analytics", "marketing"}
    assert state.policy_version == "2"
    if state.stored_version == "1":
        assert not state.decided
    if not state.decided:
        assert state.source == "default" or state.stored_version == "1"


def test_consent_choices_without_purposes() -> None:
    @given(consent_choices(()))
    def check(choice: tuple[str, tuple[str, ...]]) -> None:
        assert choice[1] == ()

    check()


def test_consent_states_need_a_version() -> None:
    with pytest.raises(ValueError, match="version"):
        consent_states(versions=())


def test_the_client_is_werkzeugs(consent_client: ConsentClient) -> None:
    assert isinstance(consent_client, Client)
    assert consent_client.mount == "/_consent"

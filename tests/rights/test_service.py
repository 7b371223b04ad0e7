"""End to end through the real middleware, on SQLite, PostgreSQL and memory: two visitors
under two policy versions, then export, rectify, erase one, query by purpose, report."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from consentmw import Event
from consentmw.rights import RightsError, SubjectError
from consentmw.sinks import QueryableSink

from .conftest import V1, V2, Scenario, Visitor


def _shape(events: list[Event]) -> list[tuple[str, str | None, str]]:
    """(type, name or path, policy version), in time order."""
    return [
        (e.type, e.name if e.type != "page_visit" else e.path, e.policy_version) for e in events
    ]


ALICE_EVENTS = [
    ("consent", "accept_all", V1),
    ("identify", None, V1),
    ("page_visit", "/login", V1),
    ("page_visit", "/docs", V1),
    ("action", "download", V1),
    ("page_visit", "/download", V1),
    ("page_visit", "/pricing", V2),
    ("consent", "accept_all", V2),
    ("page_visit", "/offers", V2),
    ("action", "download", V2),
    ("page_visit", "/download", V2),
]
BOB_EVENTS = [
    ("consent", "accept_all", V1),
    ("identify", None, V1),
    ("page_visit", "/login", V1),
    ("page_visit", "/docs", V1),
    ("consent", "custom", V2),
    ("page_visit", "/offers", V2),
]


def _about(events: list[Event], visitor: Visitor) -> list[Event]:
    return [e for e in events if e.visitor_id == visitor.visitor_id]


def _export(scenario: Scenario, subject: str) -> dict[str, Any]:
    buffer = io.StringIO()
    scenario.rights.export(subject, buffer)
    doc: dict[str, Any] = json.loads(buffer.getvalue())
    return doc


def test_recorded_events_are_what_the_scenario_did(scenario: Scenario) -> None:
    events = scenario.events()
    assert _shape(_about(events, scenario.alice)) == ALICE_EVENTS
    assert _shape(_about(events, scenario.bob)) == BOB_EVENTS
    assert len(events) == len(ALICE_EVENTS) + len(BOB_EVENTS)


@pytest.mark.parametrize("by", ["email", "visitor_id", "consent_id"])
def test_export_returns_every_event_and_decision_of_one_subject(
    scenario: Scenario, by: str
) -> None:
    alice = scenario.alice
    query = {
        "email": alice.email.upper(),
        "visitor_id": alice.visitor_id,
        "consent_id": alice.consent_id,
    }[by]
    doc = _export(scenario, query)
    assert list(doc) == ["subject", "events", "consent"]
    subject = doc["subject"]
    assert subject["visitor_ids"] == [alice.visitor_id]
    assert subject["emails"] == [alice.email]
    assert subject["consent_ids"] == [alice.consent_id]
    assert subject["suppressed"] == {alice.email: []}
    assert subject["restricted"] is False
    events = [Event.from_dict(e) for e in doc["events"]]
    assert sorted(_shape(events)) == sorted(ALICE_EVENTS)
    assert {e.visitor_id for e in events} == {alice.visitor_id}
    assert len({e.id for e in events}) == len(events)
    consent = doc["consent"]
    assert [(c["policy_version"], c["mechanism"], c["granted"]) for c in consent] == [
        (V1, "accept_all", ["analytics", "necessary"]),
        (V2, "accept_all", ["analytics", "marketing", "necessary"]),
    ]
    assert {c["subject"] for c in consent} == {alice.consent_id}
    assert scenario.bob.email not in json.dumps(doc)


def test_export_of_an_unknown_subject_is_an_empty_document(scenario: Scenario) -> None:
    doc = _export(scenario, "nobody@example.com")
    assert doc["events"] == [] and doc["consent"] == []
    assert doc["subject"]["visitor_ids"] == []


def test_a_subject_must_be_an_address_or_an_identifier(scenario: Scenario) -> None:
    for bad in ("not an address@", "x", "a b c d e f g h", "Alice <alice@example.com>"):
        with pytest.raises(SubjectError):
            scenario.rights.resolve(bad)


def test_query_by_purpose_never_reaches_data_from_before_the_purpose(scenario: Scenario) -> None:
    rights = scenario.rights
    marketing = list(rights.query(purpose="marketing"))
    # Only what Alice did after she granted marketing under V2.
    assert _shape(marketing) == [
        ("consent", "accept_all", V2),
        ("page_visit", "/offers", V2),
        ("action", "download", V2),
        ("page_visit", "/download", V2),
    ]
    assert {e.visitor_id for e in marketing} == {scenario.alice.visitor_id}
    analytics = list(rights.query(purpose="analytics"))
    assert len(analytics) == len(ALICE_EVENTS) + len(BOB_EVENTS)
    necessary_v1 = [e for e in rights.query(purpose="necessary") if e.policy_version == V1]
    assert len(necessary_v1) == 6 + 4
    with pytest.raises(RightsError):
        list(rights.query(purpose="nonsense"))


def test_restriction_keeps_data_to_the_purpose_it_was_collected_for(scenario: Scenario) -> None:
    rights = scenario.rights
    alice = scenario.alice
    rights.restrict(alice.email)
    # Marketing was granted when she visited /offers, but the visit was collected for
    # analytics (the tracking purpose): restricted, it no longer serves marketing.
    assert list(rights.query(purpose="marketing")) == []
    analytics = _about(list(rights.query(purpose="analytics")), alice)
    assert sorted(_shape(analytics)) == sorted(e for e in ALICE_EVENTS if e[0] != "consent")
    necessary = _about(list(rights.query(purpose="necessary")), alice)
    assert _shape(necessary) == [("consent", "accept_all", V1), ("consent", "accept_all", V2)]
    # Bob is untouched.
    assert len(_about(list(rights.query(purpose="necessary")), scenario.bob)) == len(BOB_EVENTS)
    # An explicit allowance, then lifting the restriction.
    rights.restrict(alice.visitor_id, allow=["marketing"])
    assert len(list(rights.query(purpose="marketing"))) == 4
    assert rights.lift_restriction(alice.email) == 2
    assert len(list(rights.query(purpose="marketing"))) == 4
    doc = _export(scenario, alice.email)
    assert doc["subject"]["restricted"] is False
    with pytest.raises(RightsError):
        rights.restrict(alice.email, allow=["nonsense"])


def test_rectify_corrects_the_address_everywhere(scenario: Scenario) -> None:
    rights = scenario.rights
    alice = scenario.alice
    rights.opt_out(alice.email, "email", "marketing")
    scenario.mw.flush(10)
    result = rights.rectify(alice.email, email="Alice.Smith@Example.com")
    assert result.email == "alice.smith@example.com"
    # identify, the /login visit and the opt-out carried the old address.
    assert result.total == 3
    for sink in scenario.mw.sinks.values():
        if isinstance(sink, QueryableSink):
            assert list(sink.query(subject=alice.email)) == []
    doc = _export(scenario, "alice.smith@example.com")
    assert doc["subject"]["emails"] == ["alice.smith@example.com"]
    assert sorted(_shape([Event.from_dict(e) for e in doc["events"]])) == sorted(
        [*ALICE_EVENTS, ("optout", "email", V2)]
    )
    # The opt-out carried over to the corrected address.
    assert rights.is_suppressed("alice.smith@example.com", "email", "marketing")
    with pytest.raises(SubjectError):
        rights.rectify(alice.email, email="not an address")


def test_erase_removes_one_subject_everywhere_and_keeps_the_other(scenario: Scenario) -> None:
    rights = scenario.rights
    alice, bob = scenario.alice, scenario.bob
    rights.opt_out(bob.email)
    scenario.mw.flush(10)
    alice_before = [e.id for e in _about(scenario.events(), alice)]
    # Something of Bob's waits in the spool (a sink was down) and in the dispatcher.
    spool = scenario.mw.engine.spool
    stale = Event(
        "spooled-1",
        "page_visit",
        None,
        "2014-12-13T00:00:00.000000Z",
        "shop.example.test",
        V2,
        ("analytics",),
        visitor_id=bob.visitor_id,
        path="/late",
    )
    spool.put("some-sink", [stale])
    spool.dead_letter(
        "some-sink",
        [Event("dead-1", "identify", None, stale.ts, "shop.example.test", V2, email=bob.email)],
        "refused",
    )
    result = rights.erase(bob.email)
    assert result.subject.visitor_ids == {bob.visitor_id}
    assert sum(result.sinks.values()) == len(BOB_EVENTS) + 1  # and the opt-out event
    assert result.spool == 2
    assert result.suppressed == ("email",)
    assert result.consent_records_kept == 3  # two decisions and the opt-out
    # Nothing about Bob in any sink or the spool.
    for sink in scenario.mw.sinks.values():
        if isinstance(sink, QueryableSink):
            for event in sink.query():
                assert bob.visitor_id not in event.to_json()
                assert bob.email not in event.to_json()
                assert bob.consent_id not in event.to_json()
    for name in spool.sinks_with_rows():
        assert all(bob.visitor_id not in e.to_json() for _, e in spool.take(name, 1000))
    assert all(bob.email not in text for text, _ in spool.dead_letters())
    assert _export(scenario, bob.email)["events"] == []
    # Alice is untouched; the proof of Bob's decisions and his opt-out remain.
    assert [e.id for e in _about(scenario.events(), alice)] == alice_before
    assert rights.is_suppressed(bob.email)
    assert [r.mechanism for r in rights.receipts(bob.consent_id)] == ["accept_all", "custom"]
    assert [r.mechanism for r in rights.receipts(bob.email)] == ["optout"]
    assert rights.verify_receipts().ok


def test_erase_reaches_events_waiting_in_the_dispatcher(scenario: Scenario) -> None:
    bob = scenario.bob
    dispatcher = scenario.mw.engine.dispatcher
    waiting = Event(
        "waiting-1",
        "page_visit",
        None,
        "2014-12-13T00:00:00.000000Z",
        "shop.example.test",
        V2,
        ("analytics",),
        visitor_id=bob.visitor_id,
    )
    writer = dispatcher._writers[0]
    with writer.cond:  # a batch handed to a writer that has not taken it yet
        writer.batches.append([waiting])
        result = scenario.rights.erase(bob.visitor_id, settle_timeout=0)
    assert result.pending == 1
    assert not writer.batches


def test_report_counts_without_small_cells(scenario: Scenario) -> None:
    rights = scenario.rights
    report = rights.report(by=["path"], min_count=1)
    assert report.rows == (
        (("/docs",), 2),
        (("/download",), 2),
        (("/login",), 2),
        (("/offers",), 2),
        (("/pricing",), 1),
    )
    report = rights.report(by=["path"], min_count=2)
    assert [keys for keys, _ in report.rows] == [
        ("/docs",),
        ("/download",),
        ("/login",),
        ("/offers",),
    ]
    assert report.hidden_cells == 1
    actions = rights.report(by=["name", "site"], type="action", min_count=1)
    assert actions.rows == ((("download", "shop.example.test"), 2),)
    rights.erase(scenario.bob.email)
    after = rights.report(by=["path"], min_count=2)
    assert after.rows == ((("/download",), 2),)
    assert after.hidden_cells == 4


def test_public_names() -> None:
    import consentmw
    import consentmw.rights

    assert consentmw.__all__ == sorted(consentmw.__all__)
    for name in ("Rights", "RightsError", "SubjectError"):
        assert name in consentmw.__all__
        assert getattr(consentmw, name) is getattr(consentmw.rights, name)
    assert consentmw.rights.__all__ == sorted(consentmw.rights.__all__)
    assert issubclass(consentmw.RightsError, consentmw.ConsentMWError)
    assert issubclass(consentmw.SubjectError, consentmw.ConsentMWError)


def test_erase_forgets_the_verified_cookie_in_the_caches(scenario: Scenario) -> None:
    engine = scenario.mw.engine
    bob = scenario.bob

    def cached() -> list[str]:
        return [
            value[0].visitor_id
            for value in engine._prefs_cache.values()
            if value[0] is not None and value[0].visitor_id
        ]

    assert bob.visitor_id in cached()
    scenario.rights.erase(bob.email)
    assert bob.visitor_id not in cached()
    assert scenario.alice.visitor_id in cached()


def test_events_about_an_erased_subject_still_in_flight_are_never_written(
    scenario: Scenario,
) -> None:
    bob = scenario.bob
    mw = scenario.mw
    result = scenario.rights.erase(bob.email)
    assert result.complete
    # An event built from a request that was running during the erasure reaches a writer
    # only now.
    late = Event(
        "late-1",
        "page_visit",
        None,
        "2014-12-14T00:00:00.000000Z",
        "shop.example.test",
        V2,
        ("analytics",),
        visitor_id=bob.visitor_id,
    )
    assert mw.engine.dispatcher.enqueue_event(late)
    assert mw.flush(5)
    assert mw.stats()["dropped"].get("erased", 0) >= 1
    for sink in mw.sinks.values():
        if hasattr(sink, "query"):
            assert [e.id for e in sink.query(subject=bob.visitor_id)] == []

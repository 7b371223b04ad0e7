"""The consent engine over plain values: models, expiry, versions, GPC, DNT, jurisdictions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw import Config
from consentmw.consent import StoredConsent, apply_choice, decide, stored_from_payload
from tests.core.support import make_config

NOW = 1_800_000_000.0
DAY = 86400.0


def cfg(**kw: object) -> Config:
    return Config.load(make_config(**kw))


def stored(
    granted: set[str], version: str = "2014-12-12", at: float = NOW - DAY, **kw: object
) -> StoredConsent:
    return StoredConsent(
        granted=frozenset(granted), version=version, decided_at=int(at), mechanism="custom", **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "granted", "source"),
    [
        pytest.param("opt-in", {"necessary"}, "default", id="opt-in"),
        pytest.param("opt-out", {"necessary", "analytics", "marketing"}, "default", id="opt-out"),
        pytest.param("notice", {"necessary"}, "default", id="notice-first-view"),
    ],
)
def test_undecided_visitor_gets_the_model_default(
    model: str, granted: set[str], source: str
) -> None:
    state = decide(cfg(policy={"model": model}), None, now=NOW)
    assert state.granted == granted and state.source == source and not state.decided
    assert state.allows("necessary")


def test_notice_continued_use_is_acceptance() -> None:
    config = cfg(policy={"model": "notice"})
    first = decide(config, None, now=NOW)
    assert first.notice_shown and not first.accepted_by_notice
    shown = StoredConsent(notice_version="2014-12-12")
    second = decide(config, shown, now=NOW)
    assert second.accepted_by_notice and second.decided and second.granted == config.purpose_ids
    assert second.source == "notice"
    # A notice shown under an older version does not count for the new one.
    assert not decide(config, StoredConsent(notice_version="2013"), now=NOW).accepted_by_notice


def test_decision_is_kept_and_required_always_on() -> None:
    state = decide(cfg(), stored({"analytics"}), now=NOW)
    assert (
        state.decided and state.granted == {"analytics", "necessary"} and state.source == "banner"
    )


def test_decision_expires() -> None:
    config = cfg()
    assert decide(config, stored({"analytics"}, at=NOW - 179 * DAY), now=NOW).decided
    expired = decide(config, stored({"analytics"}, at=NOW - 181 * DAY), now=NOW)
    assert not expired.decided and expired.granted == {"necessary"}


def test_new_version_keeps_choices_but_not_new_purposes() -> None:
    config = cfg(
        policy={
            "version": "2015-01-01",
            "history": [{"version": "2014-12-12", "purposes": ["necessary", "analytics"]}],
        },
        purposes={
            "necessary": {"required": True},
            "analytics": {},
            "marketing": {},
            "newsletter": {},
        },
    )
    # The old cookie claims marketing and newsletter; newsletter did not exist then and marketing
    # was not in that version either (history says so): both are dropped; the banner asks again.
    state = decide(config, stored({"analytics", "marketing", "newsletter"}), now=NOW)
    assert not state.decided and state.granted == {"necessary", "analytics"}
    assert state.stored_version == "2014-12-12"


def test_new_version_without_history_keeps_ids_that_still_exist() -> None:
    config = cfg(policy={"version": "2015-01-01"})
    state = decide(config, stored({"analytics", "gone"}), now=NOW)
    assert not state.decided and state.granted == {"necessary", "analytics"}


@pytest.mark.parametrize(
    ("header", "honoured"),
    [pytest.param("1", True, id="one"), pytest.param(None, False, id="absent")],
)
def test_gpc_turns_off_gpc_purposes(header: str | None, honoured: bool) -> None:
    state = decide(cfg(), stored({"analytics", "marketing"}), now=NOW, gpc=header == "1")
    assert ("marketing" in state.granted) is not honoured
    assert "analytics" in state.granted
    assert (state.source == "gpc") is honoured and state.gpc is honoured


def test_dnt_only_when_configured() -> None:
    assert "marketing" in decide(cfg(), stored({"marketing"}), now=NOW, dnt=True).granted
    state = decide(cfg(policy={"honor_dnt": True}), stored({"marketing"}), now=NOW, dnt=True)
    assert "marketing" not in state.granted and state.source == "dnt"


def test_jurisdiction_header_chooses_the_model() -> None:
    config = cfg(
        jurisdictions={"header": "CF-IPCountry", "default": "opt-out", "models": {"opt-in": ["DE"]}}
    )
    assert decide(config, None, now=NOW, country="DE").granted == {"necessary"}
    assert decide(config, None, now=NOW, country="US").granted == config.purpose_ids
    assert decide(config, None, now=NOW, country=None).model == "opt-out"


def test_apply_choice() -> None:
    config = cfg(tracking={"tracking_purpose": "analytics"})
    new, mech = apply_choice(config, "accept_all", (), previous=None, now=NOW)
    assert mech == "accept_all" and new.granted == config.purpose_ids
    assert new.visitor_id and new.consent_id and new.version == "2014-12-12"
    custom, mech = apply_choice(config, "custom", ("marketing",), previous=new, now=NOW)
    assert mech == "withdraw" and custom.granted == {"necessary", "marketing"}
    assert custom.visitor_id is None and custom.consent_id == new.consent_id
    again, mech = apply_choice(
        config, "custom", ("marketing", "analytics"), previous=custom, now=NOW
    )
    assert mech == "custom" and again.visitor_id and again.visitor_id != new.visitor_id
    reject, mech = apply_choice(config, "reject_all", (), previous=None, now=NOW)
    assert mech == "reject_all" and reject.granted == {"necessary"}
    with pytest.raises(ValueError):
        apply_choice(config, "maybe", (), previous=None, now=NOW)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"g": "analytics", "v": 1}, id="granted-not-list"),
        pytest.param({"g": [1], "v": 1}, id="granted-not-str"),
        pytest.param({"g": [], "t": "yesterday", "v": 1}, id="time-not-int"),
        pytest.param({"g": [], "t": True, "v": 1}, id="time-bool"),
        pytest.param({"g": [], "t": 5, "v": 1}, id="decided-without-version"),
        pytest.param({"g": ["x"] * 100, "v": 1}, id="too-many"),
    ],
)
def test_schema_invalid_payload_is_no_consent(payload: dict[str, object]) -> None:
    assert stored_from_payload(payload) is None


def test_payload_round_trip() -> None:
    s = stored({"analytics"}, consent_id="c" * 22, visitor_id="v" * 22)
    assert stored_from_payload({**s.to_payload(), "v": 1}) == s


_purposes = st.frozensets(st.sampled_from(["necessary", "analytics", "marketing", "gone", "x"]))


@settings(max_examples=500, deadline=None)
@given(
    model=st.sampled_from(["opt-in", "opt-out", "notice"]),
    granted=_purposes,
    version=st.sampled_from(["2014-12-12", "2013-06-01", "1"]),
    age_days=st.floats(0, 400),
    decided=st.booleans(),
    gpc=st.booleans(),
    dnt=st.booleans(),
    honor_dnt=st.booleans(),
)
def test_consent_properties(
    model: str,
    granted: frozenset[str],
    version: str,
    age_days: float,
    decided: bool,
    gpc: bool,
    dnt: bool,
    honor_dnt: bool,
) -> None:
    config = cfg(
        policy={
            "model": model,
            "honor_dnt": honor_dnt,
            "history": [{"version": "2013-06-01", "purposes": ["necessary", "analytics"]}],
        }
    )
    s = (
        StoredConsent(
            granted=granted,
            version=version,
            decided_at=int(NOW - age_days * DAY) if decided else 0,
            mechanism="custom",
        )
        if decided or granted
        else None
    )
    state = decide(config, s, now=NOW, gpc=gpc, dnt=dnt)
    # Never a purpose the configuration does not have; required purposes always.
    assert state.granted <= config.purpose_ids
    assert config.required <= state.granted
    # GPC (and DNT when honoured) always win over any choice.
    if gpc or (dnt and honor_dnt):
        assert not state.granted & config.gpc_purposes
    # Opt-in without a valid current decision grants nothing beyond what was stored.
    if model == "opt-in":
        assert state.granted - config.required <= (s.granted if s is not None else frozenset())
    # A decision under another version never grants a purpose that version did not have.
    if s is not None and s.decided and version == "2013-06-01" and age_days < 180:
        assert state.granted <= {"necessary", "analytics"}
        assert not state.decided

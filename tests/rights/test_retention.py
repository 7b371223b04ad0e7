"""Consent-log retention: pruning the oldest records keeps the rest verifiable."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import consentmw
from consentmw.consentlog import ConsentRecord
from consentmw.events import format_ts
from consentmw.rights import Rights, RightsError
from consentmw.sinks import open_sink

from .conftest import Scenario, site_config
from .test_cli import run, tamper

YEAR = 365 * 86400.0


def _rights(config: dict[str, object], years: float) -> Rights:
    later = time.time() + years * YEAR
    return Rights(consentmw.Config.load(config), clock=lambda: later)


def test_prune_removes_old_records_and_the_rest_still_verifies(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    config = durable_scenario.config
    with _rights(config, 1) as rights:
        assert rights.verify_receipts().past_retention == 0
        assert rights.prune_receipts().pruned == 0
    with _rights(config, 4) as rights:
        report = rights.verify_receipts()
        assert (report.records, report.past_retention) == (4, 4)
        result = rights.prune_receipts()
        # The newest record stays: the next append links to it.
        assert result.pruned == 3
        assert result.anchor is not None and result.anchor.records == 3
        after = rights.verify_receipts(expect=result.anchor.hash)
        assert after.ok and after.records == 1
        assert after.latest_hash == report.latest_hash
        rights.opt_out("carol@example.com")
        assert rights.verify_receipts().ok
        assert rights.prune_receipts().pruned == 1
        assert rights.verify_receipts().ok
        assert rights.verify_receipts().records == 1
    code, out, _ = run(capsys, "receipts", "verify", "--config", str(durable_scenario.toml))
    assert code == 0
    code, out, err = run(capsys, "receipts", "prune", "--config", str(durable_scenario.toml))
    assert code == 0
    assert "removed 0 record(s) older than 1095 days" in err
    assert out.startswith("anchor: ")


def test_a_broken_chain_is_not_pruned(durable_scenario: Scenario) -> None:
    tamper(durable_scenario, "edit")
    with _rights(durable_scenario.config, 4) as rights, pytest.raises(RightsError, match="broken"):
        rights.prune_receipts()


def test_removing_the_first_record_after_a_prune_is_detected(durable_scenario: Scenario) -> None:
    config = durable_scenario.config
    with _rights(config, 4) as rights:
        rights.opt_out("carol@example.com")
        rights.opt_out("dave@example.com")
        rights.opt_out("erin@example.com")
    # Three and a half years on, the scenario's four decisions are past retention.
    with _rights(config, 3.5) as rights:
        assert rights.prune_receipts().pruned == 4
        assert rights.verify_receipts().records == 3
    tamper(durable_scenario, "truncate-first")
    with _rights(config, 3.5) as rights:
        report = rights.verify_receipts()
        assert not report.ok
        assert [b.kind for b in report.breaks] == ["gap"]


def test_prune_on_jsonl_and_refusals(tmp_path: Path) -> None:
    url = f"jsonl:///{tmp_path}/events.jsonl"
    sink = open_sink(url)
    old = time.time() - 5 * YEAR
    try:
        for i in range(5):
            sink.append_consent(  # type: ignore[attr-defined]
                ConsentRecord(
                    str(uuid.uuid4()),
                    format_ts(old + i),
                    "shop.example.test",
                    "1",
                    ("necessary",),
                    "reject_all",
                    f"subject-{i}",
                )
            )
    finally:
        sink.close()
    with Rights.open(site_config([url])) as rights:
        assert rights.prune_receipts().pruned == 4
        assert rights.verify_receipts().ok
        rights.opt_out("carol@example.com")
        report = rights.verify_receipts()
        assert report.ok and report.records == 2
    forever = site_config([url], rights={"consent_retention_days": 0})
    with Rights.open(forever) as rights, pytest.raises(RightsError, match="for ever"):
        rights.prune_receipts()
    with Rights.open(site_config(["memory://"])) as rights, pytest.raises(RightsError):
        rights.prune_receipts()

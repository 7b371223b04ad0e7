"""The rights commands, through ``consentmw.cli.main`` and a few as real processes (exit
codes), against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from consentmw.cli import main
from consentmw.sinks import url_path

from .conftest import V1, V2, Scenario

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cfg(scenario: Scenario) -> str:
    assert scenario.toml is not None
    return str(scenario.toml)


# ---------------------------------------------------------------------------- tampering


def _sqlite(scenario: Scenario) -> sqlite3.Connection:
    return sqlite3.connect(url_path(scenario.config["sinks"]["events"][0]))


def _tamper_sqlite(scenario: Scenario, how: str) -> None:
    conn = _sqlite(scenario)
    try:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM consent_log ORDER BY seq")]
        with conn:
            if how == "truncate":
                conn.execute("DELETE FROM consent_log WHERE seq = ?", (seqs[-1],))
            elif how == "truncate-first":
                conn.execute("DELETE FROM consent_log WHERE seq = ?", (seqs[0],))
            elif how == "edit":
                conn.execute(
                    "UPDATE consent_log SET granted = ? WHERE seq = ?",
                    ('["necessary"]', seqs[1]),
                )
            elif how == "delete":
                conn.execute("DELETE FROM consent_log WHERE seq = ?", (seqs[1],))
            else:  # reorder: the second and third records change places
                conn.execute("UPDATE consent_log SET seq = -1 WHERE seq = ?", (seqs[1],))
                conn.execute("UPDATE consent_log SET seq = ? WHERE seq = ?", (seqs[1], seqs[2]))
                conn.execute("UPDATE consent_log SET seq = ? WHERE seq = -1", (seqs[2],))
    finally:
        conn.close()


def _tamper_postgres(scenario: Scenario, how: str) -> None:
    import psycopg

    columns = "id, ts, site, policy_version, granted, mechanism, subject, prev_hash, hash"
    with psycopg.connect(scenario.config["sinks"]["events"][0], autocommit=True) as conn:
        rows = conn.execute(f"SELECT seq, {columns} FROM consent_log ORDER BY seq").fetchall()
        if how == "truncate":
            conn.execute("DELETE FROM consent_log WHERE seq = %s", [rows[-1][0]])
        elif how == "truncate-first":
            conn.execute("DELETE FROM consent_log WHERE seq = %s", [rows[0][0]])
        elif how == "edit":
            conn.execute(
                "UPDATE consent_log SET granted = ARRAY['necessary'] WHERE seq = %s", [rows[1][0]]
            )
        elif how == "delete":
            conn.execute("DELETE FROM consent_log WHERE seq = %s", [rows[1][0]])
        else:  # reorder: seq is an identity column, so the rows swap their contents
            sets = ", ".join(f"{c.strip()} = %s" for c in columns.split(","))
            conn.execute("UPDATE consent_log SET id = 'moving' WHERE seq = %s", [rows[1][0]])
            update = f"UPDATE consent_log SET {sets} WHERE seq = %s"
            conn.execute(update, [*rows[1][1:], rows[2][0]])
            conn.execute(update, [*rows[2][1:], rows[1][0]])


def tamper(scenario: Scenario, how: str) -> None:
    if scenario.config["sinks"]["events"][0].startswith("sqlite"):
        _tamper_sqlite(scenario, how)
    else:
        _tamper_postgres(scenario, how)


def test_receipts_verify_passes_and_prints_the_latest_hash(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "receipts", "verify", "--config", cfg(durable_scenario))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "4 record(s), chain intact"
    assert lines[-1].startswith("latest hash: ")
    latest = lines[-1].split(": ")[1]
    assert len(latest) == 64
    code, _, _ = run(
        capsys, "receipts", "verify", "--config", cfg(durable_scenario), "--expect", latest
    )
    assert code == 0


@pytest.mark.parametrize("how", ["edit", "delete", "reorder"])
def test_tampering_with_one_consent_record_is_detected(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    tamper(durable_scenario, how)
    code, out, _ = run(capsys, "receipts", "verify", "--config", cfg(durable_scenario))
    assert code == 1
    assert "chain BROKEN" in out
    kinds = {line.split(": ")[1] for line in out.splitlines() if line.startswith("BROKEN at")}
    assert kinds == ({"edited"} if how == "edit" else {"gap"})
    assert "latest hash: " in out


def test_a_log_cut_back_before_a_noted_hash_fails(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(capsys, "receipts", "verify", "--config", cfg(durable_scenario))
    latest = out.splitlines()[-1].split(": ")[1]
    tamper(durable_scenario, "truncate")
    code, out, _ = run(capsys, "receipts", "verify", "--config", cfg(durable_scenario))
    assert code == 0  # the chain alone cannot tell
    code, out, _ = run(
        capsys, "receipts", "verify", "--config", cfg(durable_scenario), "--expect", latest
    )
    assert code == 1
    assert "no longer reaches" in out


@pytest.mark.parametrize("by", ["consent_id", "visitor_id", "email"])
def test_receipts_show_accepts_every_kind_of_subject(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    alice = durable_scenario.alice
    subject = {
        "consent_id": alice.consent_id,
        "visitor_id": alice.visitor_id,
        "email": alice.email,
    }[by]
    code, out, _ = run(capsys, "receipts", "show", subject, "--config", cfg(durable_scenario))
    assert code == 0
    rows = out.splitlines()[2:]
    assert len(rows) == 2
    assert V1 in rows[0] and "analytics, necessary" in rows[0] and "accept_all" in rows[0]
    assert V2 in rows[1] and "analytics, marketing, necessary" in rows[1]
    code, out, _ = run(
        capsys, "receipts", "show", subject, "--json", "--config", cfg(durable_scenario)
    )
    assert [r["mechanism"] for r in json.loads(out)] == ["accept_all", "accept_all"]
    code, out, err = run(
        capsys, "receipts", "show", "nobody@example.com", "--config", cfg(durable_scenario)
    )
    assert code == 1
    assert "no consent records" in err


# ---------------------------------------------------------------------------- the rest


def test_export_erase_and_rectify_from_the_command_line(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = cfg(durable_scenario)
    alice, bob = durable_scenario.alice, durable_scenario.bob
    target = tmp_path / "alice.json"
    code, out, err = run(capsys, "export", alice.email, "--config", config, "-o", str(target))
    assert code == 0
    assert out == ""
    assert "exported 11 event(s) and 2 consent record(s)" in err
    assert os.stat(target).st_mode & 0o777 == 0o600
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert len(doc["events"]) == 11
    code, out, _ = run(capsys, "export", bob.visitor_id, "--config", config)
    assert code == 0
    assert len(json.loads(out)["events"]) == 6
    code, _, err = run(capsys, "erase", bob.email, "--config", config, "--wait", "0")
    assert code == 0
    assert "erased 6 event(s)" in err
    assert "kept 2 pseudonymous consent record(s)" in err
    code, out, _ = run(capsys, "export", bob.email, "--config", config)
    assert json.loads(out)["events"] == []
    code, _, err = run(
        capsys,
        "rectify",
        alice.email,
        "--email",
        "a.new@example.com",
        "--config",
        config,
        "--wait",
        "0",
    )
    assert code == 0
    assert "on 2 event(s)" in err
    code, out, _ = run(capsys, "export", "a.new@example.com", "--config", config)
    assert len(json.loads(out)["events"]) == 11
    code, _, err = run(capsys, "receipts", "verify", "--config", config)
    assert code == 0


def test_erase_makes_a_second_pass_after_waiting(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "erase",
        durable_scenario.bob.email,
        "--config",
        cfg(durable_scenario),
        "--wait",
        "0.05",
    )
    assert code == 0
    assert "waiting 0.05s" in err


def test_restrict_from_the_command_line(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    config = cfg(durable_scenario)
    code, _, err = run(capsys, "restrict", durable_scenario.alice.email, "--config", config)
    assert code == 0
    assert "restricted 2 identifier(s)" in err
    code, _, _ = run(
        capsys, "restrict", durable_scenario.alice.email, "--allow", "nonsense", "--config", config
    )
    assert code == 2
    code, _, _ = run(capsys, "restrict", durable_scenario.alice.email, "--lift", "--config", config)
    assert code == 0
    code, _, _ = run(capsys, "restrict", durable_scenario.alice.email, "--lift", "--config", config)
    assert code == 1


def test_suppressed_and_optout_link(
    durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    config = cfg(durable_scenario)
    code, out, _ = run(capsys, "suppressed", "Carol@Example.com", "--config", config)
    assert (code, out) == (1, "not suppressed\n")
    code, _, _ = run(capsys, "suppressed", "carol@example.com", "--add", "--config", config)
    assert code == 0
    code, out, _ = run(capsys, "suppressed", "CAROL@example.com", "--config", config)
    assert (code, out) == (0, "suppressed\n")
    code, _, _ = run(
        capsys,
        "suppressed",
        "+44 (0)20 7946 0958",
        "--channel",
        "phone",
        "--add",
        "--config",
        config,
    )
    assert code == 0
    code, _, _ = run(
        capsys, "suppressed", "0044 20 7946 0958", "--channel", "phone", "--config", config
    )
    assert code == 0
    code, _, _ = run(capsys, "suppressed", "not-an-address", "--config", config)
    assert code == 2
    code, out, _ = run(capsys, "optout-link", "dave@example.com", "--config", config)
    assert code == 0
    assert out.count("\n") == 1
    assert out.startswith("https://shop.example.test/_consent/optout/")
    code, out, _ = run(
        capsys,
        "optout-link",
        "dave@example.com",
        "--base-url",
        "https://mail.example.test/",
        "--purpose",
        "marketing",
        "--config",
        config,
    )
    assert out.startswith("https://mail.example.test/_consent/optout/")
    code, out, _ = run(capsys, "optout-link", "dave@example.com", "--headers", "--config", config)
    assert out.splitlines()[1] == "List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    for bad in (
        ["nobody"],
        ["x@example.com", "--purpose", "nonsense"],
        ["x@example.com", "--base-url", "ftp://x"],
    ):
        code, out, _ = run(capsys, "optout-link", *bad, "--config", config)
        assert (code, out) == (2, "")


def test_report_formats(durable_scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    config = cfg(durable_scenario)
    code, out, _ = run(capsys, "report", "--config", config, "--min-count", "2")
    assert code == 0
    assert out.splitlines()[0].split() == ["path", "count"]
    assert "(1 cell(s) with fewer than 2 events hidden)" in out
    code, out, _ = run(
        capsys,
        "report",
        "--config",
        config,
        "--format",
        "json",
        "--by",
        "path,day",
        "--min-count",
        "1",
    )
    doc = json.loads(out)
    assert doc["by"] == ["path", "day"]
    assert sum(r["count"] for r in doc["rows"]) == 9
    assert all(set(r) == {"path", "day", "count"} for r in doc["rows"])
    code, out, _ = run(
        capsys, "report", "--config", config, "--format", "csv", "--type", "action", "--by", "name"
    )
    assert out == "name,count\r\n"  # two downloads: below the default of 5
    code, out, _ = run(
        capsys,
        "report",
        "--config",
        config,
        "--format",
        "csv",
        "--type",
        "all",
        "--by",
        "type",
        "--min-count",
        "1",
        "--since",
        "2000-01-01",
    )
    assert out.splitlines()[0] == "type,count"
    assert "page_visit,9" in out.splitlines()
    for bad in (["--by", "email"], ["--min-count", "0"], ["--since", "yesterday"]):
        code, _, _ = run(capsys, "report", "--config", config, *bad)
        assert code == 2


def test_configuration_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "export", "a@example.com", "--config", str(tmp_path / "none"))
    assert code == 2
    assert "configuration error" in err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[site]\nsecret_keys = ["0123456789abcdef0"]\n[purposes.a]\n[rights]\n'
        'store = "redis://localhost"\n',
        encoding="utf-8",
    )
    code, _, err = run(capsys, "suppressed", "a@example.com", "--config", str(bad))
    assert code == 2
    assert "rights.store" in err


# ---------------------------------------------------------------------------- processes


def _process(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "consentmw", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_exit_codes_in_a_real_process(durable_scenario: Scenario) -> None:
    config = cfg(durable_scenario)
    assert _process("suppressed", "erin@example.com", "--config", config).returncode == 1
    assert _process("suppressed", "erin@example.com", "--add", "--config", config).returncode == 0
    done = _process("suppressed", "erin@example.com", "--config", config)
    assert (done.returncode, done.stdout) == (0, "suppressed\n")
    link = _process("optout-link", "erin@example.com", "--config", config)
    assert link.returncode == 0 and link.stdout.startswith("https://") and not link.stderr
    export = _process("export", "erin@example.com", "--config", config)
    assert export.returncode == 0
    assert export.stderr.count("\r") == 0  # no progress bar when stderr is not a terminal
    assert [e["type"] for e in json.loads(export.stdout)["events"]] == ["optout"]
    assert _process("receipts", "verify", "--config", config).returncode == 0
    tamper(durable_scenario, "edit")
    broken = _process("receipts", "verify", "--config", config)
    assert broken.returncode == 1
    assert "edited" in broken.stdout
    assert _process("export", "--config", config).returncode == 2  # usage

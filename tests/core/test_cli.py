"""The core commands: check, keys generate, relay."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from consentmw import Event, open_sink
from consentmw.cli import main
from consentmw.events import format_ts, new_event_ids
from tests.core.test_config import SAMPLE


def test_check_prints_the_declaration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "consentmw.toml"
    path.write_text(SAMPLE)
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "_ga*" in out and "promo" in out and "cmw_prefs" in out
    assert "undeclared cookies: block" in out


def test_check_errors_exit_2_with_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(SAMPLE.replace('model = "opt-in"', 'model = "maybe"'))
    assert main(["check", "--config", str(path)]) == 2
    assert "policy.model" in capsys.readouterr().err
    assert main(["check", "--config", str(tmp_path / "missing.toml")]) == 2
    assert main(["no-such-command"]) == 2


def test_check_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(SAMPLE)
    monkeypatch.setenv("CONSENTMW_CONFIG", str(path))
    assert main(["check"]) == 0


def test_keys_generate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate"]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["keys", "generate"]) == 0
    second = capsys.readouterr().out.strip()
    assert len(first) >= 40 and first != second
    assert main(["keys", "generate", "--bytes", "8"]) == 2


def test_relay_moves_a_stream_into_another_sink(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = new_event_ids(300)
    events = [
        Event(
            i,
            "page_visit",
            None,
            format_ts(1_800_000_000 + n),
            "a.test",
            "1",
            ("necessary",),
            True,
            path=f"/p/{n}",
        )
        for n, i in enumerate(ids)
    ]
    source = open_sink(redis_url)
    source.write(events)
    source.write(events[:50])  # a retried batch: the stream's dedup keeps it once
    source.close()
    target_url = "sqlite:///" + str(tmp_path / "central.db")
    assert main(["relay", "--from", redis_url, "--to", target_url, "--once"]) == 0
    printed = dict(pair.split("=") for pair in capsys.readouterr().out.split())
    assert int(printed["relayed"]) == 300
    target = open_sink(target_url)
    try:
        stored = list(target.query())  # type: ignore[attr-defined]
    finally:
        target.close()
    assert sorted(e.id for e in stored) == sorted(ids)


def test_relay_needs_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "consentmw.toml"
    data = tomllib.loads(SAMPLE)
    assert data["sinks"]["events"] == ["memory://"]
    path.write_text(SAMPLE)
    assert main(["relay", "--config", str(path), "--once"]) == 2
    assert "--from" in capsys.readouterr().err


def test_tables_never_carry_terminal_escapes() -> None:
    from consentmw.cli import format_table

    table = format_table(["path", "n"], [["/x\x1b]0;pwned\x07\x1b[2J\x9b", 6]])
    assert "\x1b" not in table and "\x07" not in table and "\x9b" not in table
    assert "\\x1b]0;pwned\\x07" in table

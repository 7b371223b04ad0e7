"""``jsonl://``: the contract, plus URLs, fsync modes, several processes and torn lines."""

from __future__ import annotations

import json
import os
import select
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from consentmw.consentlog import GENESIS_HASH, ConsentRecord, verify_chain
from consentmw.errors import ConfigError, SinkError
from consentmw.events import Event
from consentmw.sinks import Sink, open_sink
from consentmw.sinks.jsonl import JsonlSink
from consentmw.testing import SinkContract, sample_events

from ._fork import fork_call, fork_warning, wait_children


class TestJsonlContract(SinkContract):
    orders_by_timestamp = False  # file order: oldest first when written in time order

    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Callable[[], Sink]:
        return lambda: JsonlSink(tmp_path / uuid.uuid4().hex / "events.jsonl")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# -- URLs ------------------------------------------------------------------------------------


def test_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.jsonl"
    sink = open_sink(f"jsonl:///{path}")
    try:
        assert isinstance(sink, JsonlSink)
        sink.write(sample_events()[:2])
    finally:
        sink.close()
    assert len(lines(path)) == 2


def test_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = open_sink("jsonl:///logs/events.jsonl?fsync=never")
    try:
        sink.write(sample_events()[:3])
    finally:
        sink.close()
    assert len(lines(tmp_path / "logs" / "events.jsonl")) == 3


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("jsonl:///x.jsonl?fsync=sometimes", id="bad-fsync"),
        pytest.param("jsonl:///x.jsonl?compress=1", id="unknown-option"),
        pytest.param("jsonl://", id="no-path"),
    ],
)
def test_bad_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        open_sink(url)


def test_files_are_private(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "events.jsonl")
    try:
        sink.write(sample_events()[:1])
    finally:
        sink.close()
    assert (tmp_path / "events.jsonl").stat().st_mode & 0o077 == 0


# -- fsync -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("always", [5, 3, 0], id="always-per-event"),
        pytest.param("batch", [1, 1, 0], id="batch-per-write"),
        pytest.param("never", [0, 0, 0], id="never"),
    ],
)
def test_fsync_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, expected: list[int]
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    sink = JsonlSink.from_url(f"jsonl:///{tmp_path}/events.jsonl?fsync={mode}")
    data = sample_events()
    try:
        monkeypatch.setattr(os, "fsync", counting_fsync)
        counts = []
        for batch in (data[:5], data[3:8], data[:8]):  # the last write adds nothing
            before = len(calls)
            sink.write(batch)
            counts.append(len(calls) - before)
    finally:
        sink.close()
    assert counts == expected


def test_consent_records_are_fsynced_whatever_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    sink = JsonlSink(tmp_path / "events.jsonl", fsync="never")
    try:
        sink.append_consent(ConsentRecord("r1", "2024", "s", "v", ("a",), "accept_all", "c"))
    finally:
        sink.close()
    assert len(calls) == 1
    assert (tmp_path / "events.jsonl.consent.jsonl").exists()


# -- several writers -------------------------------------------------------------------------


def test_two_instances_on_one_file_stay_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    a, b = JsonlSink(path), JsonlSink(path)
    data = sample_events()
    try:
        a.write(data[:6])
        b.write(data)  # b catches up with a's lines before appending
        a.write(data[4:])  # and a with b's
    finally:
        a.close()
        b.close()
    assert [line["id"] for line in lines(path)] == [e.id for e in data]


def test_ids_in_the_file_are_known_when_reopened(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    data = sample_events()
    first = JsonlSink(path)
    try:
        first.write(data)
    finally:
        first.close()
    second = JsonlSink(path)
    try:
        second.write(data)
        assert len(list(second.query())) == len(data)
    finally:
        second.close()


def test_erase_by_one_instance_is_seen_by_another(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    a, b = JsonlSink(path), JsonlSink(path)
    data = sample_events()
    try:
        a.write(data)
        assert b.erase("v-alice") == 3
        late = Event.from_dict({**data[0].to_dict(), "id": str(uuid.uuid4()), "path": "/late"})
        a.write([late])  # a's descriptor points at the replaced file: it must reopen
        a.write(data)  # the erased events come back only if written again, as in MemorySink
    finally:
        a.close()
        b.close()
    stored = lines(path)
    assert any(line["path"] == "/late" for line in stored)
    assert len(stored) == len(data) + 1


def _append_batches(path: Path, worker: int, shared: list[Event]) -> None:
    sink = JsonlSink(path, fsync="never")
    try:
        for batch in range(10):
            sink.write(
                [
                    Event.from_dict(
                        {**shared[0].to_dict(), "id": f"w{worker}-b{batch}-{i}", "path": "/w"}
                    )
                    for i in range(20)
                ]
            )
            if batch == 5:
                sink.write(shared)
    finally:
        sink.close()


@pytest.mark.slow
@fork_warning
def test_processes_appending_together_store_each_event_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    shared = sample_events()
    pids = [fork_call(lambda w=w: _append_batches(path, w, shared)) for w in range(4)]
    assert wait_children(pids) == [0, 0, 0, 0]
    stored = lines(path)  # every line parses: no interleaved writes
    ids = [line["id"] for line in stored]
    assert len(ids) == len(set(ids)) == 4 * 10 * 20 + len(shared)


# -- torn lines and fork safety --------------------------------------------------------------


def test_a_torn_last_line_is_ended_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    data = sample_events()
    sink = JsonlSink(path)
    try:
        sink.write(data[:2])
        with open(path, "ab") as fh:
            fh.write(b'{"id":"torn","type":"pa')  # a writer died mid-line
        sink.write(data[2:4])
        assert [e.id for e in sink.query()] == [e.id for e in data[:4]]
        assert sink.malformed_lines == 1
    finally:
        sink.close()
    raw = path.read_bytes().splitlines()
    assert raw[2] == b'{"id":"torn","type":"pa'
    assert json.loads(raw[3])["id"] == data[2].id


def test_write_after_close_raises_and_query_too(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "events.jsonl")
    sink.close()
    with pytest.raises(SinkError):
        sink.query()


def test_unencodable_event_is_not_retryable(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "events.jsonl")
    bad = sample_events()[0]
    bad.props = {"x": float("nan")}
    try:
        with pytest.raises(SinkError) as info:
            sink.write([bad])
        assert info.value.retryable is False
    finally:
        sink.close()


@fork_warning
def test_a_forked_child_takes_its_own_lock(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path)
    data = sample_events()
    sink.write(data[:1])  # the parent's descriptors are open before the fork
    read_end, write_end = os.pipe()
    try:
        with sink._exclusive():  # the parent holds the file lock while the child writes

            def child() -> None:
                os.close(read_end)
                sink.write(data[1:2])
                os.write(write_end, b"x")

            pid = fork_call(child)
            os.close(write_end)
            # Had the child used the inherited descriptor, its flock would be the parent's
            # own lock and pass at once.
            ready, _, _ = select.select([read_end], [], [], 0.3)
            assert ready == [], "the child wrote while the parent held the lock"
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready == [read_end]
        assert os.read(read_end, 1) == b"x"
        assert wait_children([pid]) == [0]
        sink.write(data[2:3])  # the parent's own descriptors still work
        assert [e.id for e in sink.query()] == [e.id for e in data[:3]]
    finally:
        os.close(read_end)
        sink.close()


def _append_consent(path: Path, worker: int) -> None:
    sink = JsonlSink(path)
    try:
        for i in range(20):
            sink.append_consent(
                ConsentRecord(f"w{worker}-{i}", "2024", "s", "v", ("a",), "custom", "c")
            )
    finally:
        sink.close()


@pytest.mark.slow
@fork_warning
def test_processes_appending_consent_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    pids = [fork_call(lambda w=w: _append_consent(path, w)) for w in range(4)]
    assert wait_children(pids) == [0, 0, 0, 0]
    sink = JsonlSink(path)
    try:
        records = list(sink.consent_records())
        # Appending one of them again returns the stored record, not a new one.
        again = sink.append_consent(replace(records[5], prev_hash=GENESIS_HASH, hash=""))
    finally:
        sink.close()
    assert len(records) == 80
    assert verify_chain(records) == []
    assert again == records[5]

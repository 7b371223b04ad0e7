"""Export streams: bounded memory for a subject with 200,000 events, one copy of each event
across several sinks, and the document's shape."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest

import consentmw
from consentmw.events import Event, format_ts
from consentmw.rights import Rights
from consentmw.sinks import open_sink

from .conftest import site_config

T0 = 1_700_000_000.0


def _events(n: int, *, visitor: str, email: str | None = None, start: int = 0) -> list[Event]:
    return [
        Event(
            id=f"{visitor}-{i:07d}",
            type="page_visit",
            name=None,
            ts=format_ts(T0 + i),
            site="shop.example.test",
            policy_version="2014-12-12",
            purposes=("analytics", "necessary"),
            visitor_id=visitor,
            email=email if i % 1000 == 0 else None,
            path=f"/page/{i % 97}?ref=newsletter",
            props={"note": "x" * 200},
        )
        for i in range(start, start + n)
    ]


@pytest.mark.slow
def test_exporting_200k_events_holds_one_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/big.db"
    sink = open_sink(url)
    total = 200_000
    try:
        for start in range(0, total, 10_000):
            sink.write(
                _events(10_000, visitor="big-visitor-1", email="big@example.com", start=start)
            )
        sink.write(_events(10, visitor="someone-else"))
    finally:
        sink.close()
    target = tmp_path / "export.json"
    with Rights.open(site_config([url])) as rights:
        tracemalloc.start()
        try:
            with open(target, "w", encoding="utf-8") as fp:
                summary = rights.export("big@example.com", fp)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    size = os.path.getsize(target)
    assert summary.events == total
    assert size > 60_000_000
    # The whole export passes through; memory stays at a few megabytes at most.
    assert peak < 8_000_000, peak
    assert peak < size / 10
    with open(target, encoding="utf-8") as fp:
        doc = json.load(fp)
    assert len(doc["events"]) == total
    assert doc["subject"]["visitor_ids"] == ["big-visitor-1"]
    assert {e["visitor_id"] for e in doc["events"]} == {"big-visitor-1"}


def test_one_copy_of_each_event_across_sinks(tmp_path: Path, redis_url: str) -> None:
    urls = [f"sqlite:///{tmp_path}/a.db", redis_url, f"jsonl:///{tmp_path}/b.jsonl"]
    sinks = {u: open_sink(u) for u in urls}
    try:
        both = _events(30, visitor="visitor-abc", email="v@example.com")
        sinks[urls[0]].write(both)
        sinks[urls[1]].write(both[:20] + _events(2, visitor="visitor-abc", start=500))
        sinks[urls[2]].write(both[10:] + _events(1, visitor="visitor-abc", start=900))
        with Rights(consentmw.Config.load(site_config(urls)), sinks=sinks) as rights:
            buffer = io.StringIO()
            summary = rights.export("v@example.com", buffer)
            doc = json.loads(buffer.getvalue())
            ids = [e["id"] for e in doc["events"]]
            assert summary.events == len(ids) == 33
            assert len(set(ids)) == 33
            erased = rights.erase("visitor-abc")
            assert erased.sinks == {urls[0]: 30, redis_url: 22, urls[2]: 21}
            for sink in sinks.values():
                assert list(sink.query(subject="visitor-abc")) == []  # type: ignore[attr-defined]
    finally:
        for sink in sinks.values():
            sink.close()


def test_empty_and_unicode_documents_parse(tmp_path: Path) -> None:
    config = site_config(["memory://"])
    sink = consentmw.MemorySink()
    sink.write(
        [
            Event(
                "u1",
                "action",
                "comment",
                format_ts(T0),
                "shop.example.test",
                "1",
                visitor_id="visitor-uni",
                props={"text": 'Grüße \u2028 "quoted"'},
            )
        ]
    )
    with Rights(consentmw.Config.load(config), sinks={"memory://": sink}) as rights:
        for subject, count in (("visitor-uni", 1), ("visitor-none", 0)):
            buffer = io.StringIO()
            assert rights.export(subject, buffer).events == count
            doc = json.loads(buffer.getvalue())
            assert len(doc["events"]) == count
        assert doc["consent"] == []


@pytest.mark.parametrize("count", [0, 1, 3])
def test_progress_callback_counts_events(count: int) -> None:
    sink = consentmw.MemorySink()
    sink.write(_events(count, visitor="visitor-xyz"))
    seen: list[int] = []
    with Rights(
        consentmw.Config.load(site_config(["memory://"])), sinks={"memory://": sink}
    ) as rights:
        rights.export("visitor-xyz", io.StringIO(), on_event=lambda: seen.append(1))
    assert len(seen) == count

"""Reports: aggregation through the sink, cleaned paths, small cells, CSV neutralisation."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

import consentmw
import consentmw.resolve.redact
from consentmw import MemorySink
from consentmw.events import Event, format_ts
from consentmw.resolve.redact import Redactor
from consentmw.rights import neutralize_csv_cell
from consentmw.rights.reports import build_report, clean_path
from consentmw.sinks import AggregateRow
from tests.core.support import choose

from .conftest import app, site_config

T0 = 1_700_000_000.0


def _visit(i: int, path: str, *, day: int = 0, name: str | None = None) -> Event:
    return Event(
        f"e{i}",
        "page_visit" if name is None else "action",
        name,
        format_ts(T0 + day * 86400 + i),
        "shop.example.test",
        "1",
        path=path,
    )


class CountingSink(MemorySink):
    """A memory sink that says how it was asked."""

    calls: list[dict[str, object]]

    def aggregate(self, **kwargs: object) -> list[AggregateRow]:  # type: ignore[override]
        self.calls = [*getattr(self, "calls", []), kwargs]
        return super().aggregate(**kwargs)  # type: ignore[arg-type]


def test_paths_are_cleaned_and_merged() -> None:
    sink = CountingSink()
    sink.write(
        [_visit(i, "/shop?email=a@example.com&token=secret") for i in range(3)]
        + [_visit(10 + i, "/shop#top") for i in range(3)]
        + [_visit(20 + i, "/users/carol@example.com/orders") for i in range(5)]
        + [_visit(30 + i, "/pay/4111 1111 1111 1111") for i in range(5)]
        + [_visit(40, "/rare")]
    )
    report = build_report(sink, by=["path"], since="2000-01-01", min_count=5)
    assert sink.calls == [{"by": ("path",), "type": None, "since": "2000-01-01", "until": None}]
    assert report.rows == (
        (("/shop",), 6),
        (("/pay/visa%20****1111",), 5),
        (("/users/[email]/orders",), 5),
    )
    assert report.hidden_cells == 1
    assert report.total_shown == 16
    text = report.to_table()
    assert "(1 cell(s) with fewer than 5 events hidden)" in text
    assert "secret" not in text and "carol" not in text
    doc = json.loads(report.to_json())
    assert doc["rows"][0] == {"path": "/shop", "count": 6}
    assert doc["hidden_cells"] == 1 and doc["min_count"] == 5


def test_grouping_keys_are_checked() -> None:
    sink = MemorySink()
    for bad in (["email"], ["visitor_id"], [], ["path", "path"]):
        with pytest.raises(ValueError):
            build_report(sink, by=bad)
    with pytest.raises(ValueError):
        build_report(sink, by=["day"], min_count=0)


def test_by_day_and_name() -> None:
    sink = MemorySink()
    sink.write([_visit(i, "/x", day=i % 2, name="download") for i in range(12)])
    report = build_report(sink, by=["day", "name"], type="action", min_count=1)
    assert report.rows == (
        (("2023-11-14", "download"), 6),
        (("2023-11-15", "download"), 6),
    )
    assert report.render("csv").splitlines() == [
        "day,name,count",
        "2023-11-14,download,6",
        "2023-11-15,download,6",
    ]
    with pytest.raises(ValueError):
        report.render("xml")


def test_csv_cells_cannot_become_formulas() -> None:
    sink = MemorySink()
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    sink.write([_visit(i * 10 + j, "/p", name=h) for i, h in enumerate(hostile) for j in range(5)])
    text = build_report(sink, by=["name"], type="action").to_csv()
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert sorted(r[0] for r in rows) == sorted("'" + h for h in hostile)


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_neutralised_cells_never_start_a_formula(value: str) -> None:
    cell = neutralize_csv_cell(value)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell == value or cell == "'" + value
    assert neutralize_csv_cell(cell) == cell  # neutralising twice changes nothing more


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_clean_paths_hold_no_query_and_no_address(path: str) -> None:
    cleaned = clean_path("/" + path, Redactor())
    assert cleaned is not None
    assert "?" not in cleaned and "#" not in cleaned
    assert not any("@" in part and "." in part.split("@")[-1] for part in cleaned.split("/"))


def _looks_like_an_address(part: str) -> bool:
    for _ in range(4):
        if "@" in part and "." in part.split("@")[-1]:
            return True
        part = unquote(part)
    return False


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/reset/alice%40example.com", id="encoded"),
        pytest.param("/reset/alice%2540example.com", id="encoded-twice"),
        pytest.param("/unsubscribe/alice@example.com", id="raw"),
        pytest.param(f"/u/alice@example.com/{quote('4111 1111 1111 1111')}", id="with-a-card"),
    ],
)
def test_clean_path_finds_addresses_however_they_are_encoded(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cleaned = clean_path(path, Redactor())
    assert cleaned is not None
    assert "[email]" in cleaned
    assert not any(_looks_like_an_address(part) for part in cleaned.split("/"))
    # Reports check on their own too, whatever the redactor they are given left.
    monkeypatch.setattr(consentmw.resolve.redact, "redact_emails", lambda url: url)
    assert clean_path(path, Redactor()) == cleaned


def test_addresses_in_visited_paths_reach_neither_the_sink_nor_a_report() -> None:
    sink = MemorySink()
    config = site_config(["memory://"], tracking={"aggregate_without_consent": True})
    mw = consentmw.ConsentMiddleware(app, config, sinks={"memory://": sink})
    try:
        anonymous, consenting = Client(mw), Client(mw)
        assert choose(consenting, "accept_all").status_code == 303
        for client in (anonymous, consenting) * 3:
            # PATH_INFO arrives decoded once: "%2540" is "%40" in it.
            client.get("/reset/alice%2540example.com")
            client.get("/unsubscribe/alice@example.com")
            client.get("/plain")
        assert mw.flush(10)
        events = [e for e in sink.query() if e.type == "page_visit"]
        assert {e.aggregate for e in events} == {True, False}
        assert sorted({e.path or "" for e in events}) == [
            "/plain",
            "/reset/[email]",
            "/unsubscribe/[email]",
        ]
        text = build_report(sink, by=["path"], min_count=5).to_json()
        assert "/reset/[email]" in text and "/unsubscribe/[email]" in text
        assert "alice" not in text and "%40" not in text
    finally:
        mw.close(5)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(max_size=10), max_size=3),
    st.from_regex(r"[a-z0-9.+]{1,8}@[a-z0-9-]{1,8}\.[a-z]{2,4}", fullmatch=True),
    st.sampled_from([0, 1, 2]),
)
def test_clean_paths_hold_no_encoded_address(segments: list[str], address: str, times: int) -> None:
    for _ in range(times):
        address = quote(address, safe="")
    cleaned = clean_path("/" + "/".join([*segments, address]), Redactor())
    assert cleaned is not None
    assert not any(_looks_like_an_address(part) for part in cleaned.split("/"))

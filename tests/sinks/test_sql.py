"""The SQL text shared by the SQLite and PostgreSQL sinks, and the user-agent encoding cache."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consentmw.errors import ConfigError, SinkError
from consentmw.sinks._sql import Dialect, aggregate_sql, identifier, rectify_sql, ua_json, where_sql

QMARK = Dialect(param="?", purpose="purpose_has(?)")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("events; DROP TABLE x", id="injection"),
        pytest.param("Events", id="upper-case"),
        pytest.param("1events", id="leading-digit"),
        pytest.param('"events"', id="quoted"),
        pytest.param("a" * 64, id="too-long"),
        pytest.param("", id="empty"),
        pytest.param("événements", id="non-ascii"),
    ],
)
def test_identifier_refuses_anything_but_plain_names(name: str) -> None:
    with pytest.raises(ConfigError):
        identifier(name, "table")


def test_identifier_accepts_plain_names() -> None:
    assert identifier("events_2024", "table") == "events_2024"


def test_where_binds_every_value() -> None:
    sql, params = where_sql(
        QMARK, subject="Bob@X.test", purpose="p", type="action", since="a", until="b"
    )
    assert sql == (
        " WHERE (visitor_id = ? OR email = ?) AND purpose_has(?) AND type = ? AND ts >= ?"
        " AND ts < ?"
    )
    assert params == ["Bob@X.test", "bob@x.test", "p", "action", "a", "b"]
    assert where_sql(QMARK) == ("", [])


def test_rectify_formats_only_identifier_columns() -> None:
    sql, params = rectify_sql(QMARK, "events", "v1", {"email": "e@x.test", "ip": None})
    assert sql == "UPDATE events SET email = ?, ip = ? WHERE (visitor_id = ? OR email = ?)"
    assert params == ["e@x.test", None, "v1", "v1"]
    with pytest.raises(SinkError):
        rectify_sql(QMARK, "events", "v1", {"email = 'x', path": "y"})


@pytest.mark.parametrize("key", ["email", "ip", "visitor_id", "ts", "1); DROP TABLE events; --"])
def test_aggregate_refuses_other_keys(key: str) -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        aggregate_sql(QMARK, "events", by=["path", key])


@pytest.mark.parametrize(
    "uas",
    [
        pytest.param(
            [{"browser": "B", "os": "O", "device": "D", "is_bot": True}] * 2, id="same-values"
        ),
        pytest.param(
            [
                {"browser": "B", "os": None, "device": "D", "is_bot": True},
                {"browser": "B", "os": None, "device": "D", "is_bot": 1},
            ],
            id="true-and-one",
        ),
        pytest.param(
            [
                {"browser": 1, "os": "O", "device": "D", "is_bot": False},
                {"browser": True, "os": "O", "device": "D", "is_bot": False},
            ],
            id="int-and-bool-text",
        ),
        pytest.param(
            [
                {"browser": "B", "os": "O", "device": "D", "extra": 1},
                {"browser": "B", "os": "O", "device": "D", "extra": 2},
            ],
            id="other-keys",
        ),
        pytest.param(
            [
                {"browser": "B", "os": "O", "device": ["D"], "is_bot": False},
                {"browser": "B", "os": "O", "device": "D", "is_bot": False},
            ],
            id="unhashable",
        ),
    ],
)
def test_ua_json_cache_never_mixes_values(uas: list[dict[str, Any]]) -> None:
    cache: dict[tuple[Any, ...], str] = {}
    for ua in uas:
        text = ua_json(ua, cache)
        assert text is not None
        decoded = json.loads(text)
        assert decoded == ua
        assert [type(v) for v in decoded.values()] == [type(v) for v in ua.values()]
    assert ua_json(None, cache) is None


def test_ua_json_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        ua_json({"browser": float("nan")}, {})

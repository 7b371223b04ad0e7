"""Suppression lists and the rights store on every backend; address normalisation."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw import ConfigError
from consentmw.rights import CHANNELS, SuppressionList, normalize_address
from consentmw.rights.store import RightsStore, open_store
from consentmw.rights.suppression import address_digest, identifier_digest
from tests.core.support import Clock


@pytest.fixture(params=["sqlite", "postgres", "jsonl", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db"
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url + "&table=events"  # consentmw's own options are left out for libpq
    if request.param == "jsonl":
        return f"jsonl:///{tmp_path}/events.jsonl"
    return "memory://"


@pytest.fixture
def store(store_url: str) -> Iterator[RightsStore]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def test_entries_and_idempotency(store: RightsStore) -> None:
    lists = SuppressionList(store, clock=Clock())
    assert not lists.is_suppressed("alice@example.com")
    assert lists.add("Alice@Example.com", "email", "marketing") is True
    assert lists.add("alice@example.com", "email", "marketing") is False
    assert lists.is_suppressed("ALICE@example.com")
    assert lists.is_suppressed("alice@example.com", "email", "marketing")
    assert not lists.is_suppressed("alice@example.com", "email", "analytics")
    assert lists.add("alice@example.com") is True  # every purpose
    assert lists.is_suppressed("alice@example.com", "email", "analytics")
    assert not lists.is_suppressed("alice@example.com", "phone")
    assert lists.channels("alice@example.com") == ["email"]
    entries = sorted(store.suppression_entries("email"), key=lambda e: e.purpose or "")
    assert [(e.channel, e.purpose) for e in entries] == [("email", None), ("email", "marketing")]
    assert all("alice" not in e.digest and len(e.digest) == 64 for e in entries)
    assert not lists.is_suppressed("not an address")
    with pytest.raises(ValueError):
        lists.add("not an address")


def test_restrictions(store: RightsStore) -> None:
    store.set_restriction("d1", None, "2024-01-01T00:00:00.000000Z")
    store.set_restriction("d2", ["marketing", "analytics"], "2024-01-01T00:00:00.000000Z")
    assert store.restrictions() == {"d1": None, "d2": ("analytics", "marketing")}
    store.set_restriction("d1", ["analytics"], "2024-01-02T00:00:00.000000Z")
    assert store.restrictions()["d1"] == ("analytics",)
    assert store.remove_restrictions(["d1", "d1", "nope"]) == 1
    assert store.restrictions() == {"d2": ("analytics", "marketing")}


def test_the_pepper_is_made_once_and_shared(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        if store_url == "memory://":
            assert first.pepper() != second.pepper()  # nothing outlives the object
        else:
            assert first.pepper() == second.pepper()
            assert len(first.pepper()) == 32
            lists = SuppressionList(first, clock=Clock())
            lists.add("bob@example.com")
            assert SuppressionList(second, clock=Clock()).is_suppressed("bob@example.com")
    finally:
        first.close()
        second.close()


def test_sqlite_tables_live_beside_the_events(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/events.db")
    try:
        SuppressionList(store, clock=Clock()).add("+15550109999", "phone")
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = conn.execute("SELECT channel, digest FROM cmw_suppression").fetchall()
    finally:
        conn.close()
    assert {"cmw_rights_meta", "cmw_suppression", "cmw_restriction"} <= tables
    assert rows[0][0] == "phone" and "5550109999" not in rows[0][1]


def test_jsonl_store_file_is_private(tmp_path: Path) -> None:
    store = open_store(f"jsonl:///{tmp_path}/events.jsonl")
    store.pepper()
    assert os.stat(tmp_path / "events.jsonl.rights.json").st_mode & 0o777 == 0o600


def test_store_urls_are_checked() -> None:
    with pytest.raises(ConfigError):
        open_store("redis://localhost/0")
    with pytest.raises(ConfigError):
        open_store("sqlite:///:memory:")


def test_digests_are_keyed_and_namespaced() -> None:
    pepper = b"p" * 32
    digest = address_digest(pepper, "email", "a@example.com")
    assert digest != address_digest(b"q" * 32, "email", "a@example.com")
    assert digest != address_digest(pepper, "phone", "a@example.com")
    assert digest != identifier_digest(pepper, "a@example.com")
    import hashlib

    assert digest != hashlib.sha256(b"a@example.com").hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("+1 (555) 010-9999", "+15550109999", id="punctuation"),
        pytest.param("+44 (0)20 7946 0958", "+442079460958", id="trunk digit"),
        pytest.param("0044 20 7946 0958", "+442079460958", id="00 prefix"),
        pytest.param("0044(0)20-7946-0958", "+442079460958", id="00 prefix and trunk"),
        pytest.param("030 1234567", "0301234567", id="national"),
        pytest.param("555 0199 ext 12", None, id="extension"),
        pytest.param("+1234", None, id="too short"),
        pytest.param("+1234567890123456", None, id="too long"),
        pytest.param("00" + "1" * 16, None, id="too long after 00"),
        pytest.param("", None, id="empty"),
    ],
)
def test_phone_numbers_are_normalised(raw: str, expected: str | None) -> None:
    assert normalize_address(raw, "phone") == expected


def test_unknown_channel() -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        normalize_address("a@example.com", "fax")
    assert normalize_address(42, "email") is None
    assert normalize_address(None, "phone") is None


_phone = st.builds(
    lambda cc, digits, sep: f"+{cc}{sep}{sep.join(digits)}",
    st.integers(1, 999),
    st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=2, max_size=4),
    st.sampled_from([" ", "-", ".", ""]),
)


@settings(max_examples=300, deadline=None)
@given(_phone)
def test_phone_spellings_agree(number: str) -> None:
    normalized = normalize_address(number, "phone")
    if normalized is None:
        return
    assert normalized.startswith("+") and normalized[1:].isdigit()
    assert normalize_address(normalized, "phone") == normalized  # idempotent
    assert normalize_address("00" + normalized[1:], "phone") == normalized
    assert normalize_address(f" ({normalized[:3]}) {normalized[3:]} ", "phone") in (
        normalized,
        None,
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from(CHANNELS))
def test_any_text_normalises_or_is_refused(text: str, channel: str) -> None:
    normalized = normalize_address(text, channel)
    if normalized is not None:
        assert normalize_address(normalized, channel) == normalized
        assert "\n" not in normalized and "\r" not in normalized


@settings(max_examples=200, deadline=None)
@given(st.emails())
def test_email_case_does_not_matter(address: str) -> None:
    normalized = normalize_address(address, "email")
    if normalized is not None:
        assert normalize_address(address.upper(), "email") in (normalized, None)
        assert normalize_address(normalized.upper(), "email") == normalized

"""Shared fixtures: the local PostgreSQL and Redis servers, and Debian's Chromium.

Each is skipped with a reason when it is not there, and fails the run instead when
``CONSENTMW_REQUIRE_SERVICES=1`` / ``CONSENTMW_REQUIRE_BROWSER=1`` (as in CI), so nothing
silently skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "CONSENTMW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONSENTMW_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHROMIUM = os.environ.get("CONSENTMW_CHROMIUM", "/usr/bin/chromium")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def _missing(what: str, env: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required ({env}=1) but not available", pytrace=False)
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL, after checking the server answers."""
    if not _reachable(POSTGRES_URL, 5432):
        _missing(f"PostgreSQL at {POSTGRES_URL}", "CONSENTMW_REQUIRE_SERVICES")
    try:
        import psycopg
    except ImportError:
        _missing("psycopg (pip install 'consentmw[postgres]')", "CONSENTMW_REQUIRE_SERVICES")
    with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
        conn.execute("SELECT 1")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema, dropped afterwards."""
    import psycopg

    schema = "cmw_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_server else "?"
    try:
        yield f"{postgres_server}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def redis_server() -> str:
    if not _reachable(REDIS_URL, 6379):
        _missing(f"Redis at {REDIS_URL}", "CONSENTMW_REQUIRE_SERVICES")
    try:
        import redis  # noqa: F401
    except ImportError:
        _missing("redis-py (pip install 'consentmw[redis]')", "CONSENTMW_REQUIRE_SERVICES")
    return REDIS_URL


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis URL naming a fresh stream, deleted afterwards."""
    import redis

    stream = "cmw-test-" + uuid.uuid4().hex[:12]
    yield f"{redis_server}?stream={stream}"
    client = redis.Redis.from_url(redis_server)
    try:
        for key in client.scan_iter(match=f"{stream}*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        _missing(
            f"Chromium at {CHROMIUM} (apt-get install -y chromium)", "CONSENTMW_REQUIRE_BROWSER"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        _missing("playwright (pip install 'consentmw[test]')", "CONSENTMW_REQUIRE_BROWSER")
    assert path is not None
    return path

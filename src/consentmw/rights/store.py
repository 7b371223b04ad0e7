"""The rights store: suppression lists, restrictions and the store's own secret, kept next to
the consent log.

The sinks store events and consent records and nothing else; the rights layer needs a little
state of its own that must outlive any erasure: who asked not to be contacted on which
channel (as keyed hashes, never addresses), whose data is restricted to the purposes it was
collected for, and the random *pepper* those hashes are keyed with. :func:`open_store` opens
that state from a sink URL (``rights.store``, by default ``sinks.consent_log``):

- ``sqlite://`` — tables ``cmw_rights_meta``, ``cmw_suppression`` and ``cmw_restriction`` in
  the same file, through a connection of the store's own;
- ``postgresql://`` — the same tables in the first schema of the URL's search path (psycopg
  is imported only here, and only when such a URL is opened);
- ``jsonl://`` — one JSON file beside the events file (``<path>.rights.json``), rewritten
  atomically under a lock file; fine for the few thousand entries a JSON Lines site has;
- ``memory://`` — dictionaries, for tests and the demo; nothing survives the process.

Not a general key-value store, and not where events go: nothing here is ever exported,
reported or erased by subject, because nothing here names a subject in clear.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, MissingDependencyError, SinkError

if TYPE_CHECKING:
    import psycopg

__all__ = ["RightsStore", "SuppressionEntry", "open_store", "prune_postgres_consent_log"]

_PEPPER_KEY = "pepper"
_PEPPER_BYTES = 32
#: consentmw's own query options of a PostgreSQL URL (see ``sinks.postgres``): not libpq's.
_PG_OWN_OPTIONS = ("statement_timeout", "table", "consent_table", "strategy")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cmw_rights_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # purpose '' is "every purpose": a primary key cannot hold NULLs in PostgreSQL.
    """CREATE TABLE IF NOT EXISTS cmw_suppression (
        channel TEXT NOT NULL,
        digest TEXT NOT NULL,
        purpose TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (channel, digest, purpose)
    )""",
    """CREATE TABLE IF NOT EXISTS cmw_restriction (
        digest TEXT PRIMARY KEY,
        allowed TEXT,
        created TEXT NOT NULL
    )""",
)


class SuppressionEntry(tuple[str, str, "str | None", str]):
    """``(channel, digest, purpose, created)``; ``purpose`` ``None`` means every purpose."""

    __slots__ = ()

    @property
    def channel(self) -> str:
        return self[0]

    @property
    def digest(self) -> str:
        return self[1]

    @property
    def purpose(self) -> str | None:
        return self[2]

    @property
    def created(self) -> str:
        return self[3]


@runtime_checkable
class RightsStore(Protocol):
    """What the rights layer keeps besides events and consent records.

    Digests are hex strings made by :mod:`consentmw.rights.suppression`; the store never sees
    an address or identifier in clear. Every method may raise :class:`~consentmw.SinkError`.
    """

    def pepper(self) -> bytes:
        """The store's random secret (created on first use, never changed)."""

    def add_suppression(self, channel: str, digest: str, purpose: str | None, created: str) -> bool:
        """Record an opt-out; ``False`` if that exact entry was there already."""

    def suppression(self, channel: str, digest: str) -> list[str | None]:
        """The purposes the digest is suppressed for on ``channel`` (``None``: all)."""

    def suppression_entries(self, channel: str | None = None) -> Iterator[SuppressionEntry]:
        """Every entry (of one channel)."""

    def set_restriction(self, digest: str, allowed: Sequence[str] | None, created: str) -> None:
        """Restrict an identifier (``allowed``: extra purposes its data may serve)."""

    def remove_restrictions(self, digests: Sequence[str]) -> int:
        """Lift restrictions; return how many there were."""

    def restrictions(self) -> dict[str, tuple[str, ...] | None]:
        """Every restriction: digest → allowed purposes (``None``: collection purposes only)."""

    def get_meta(self, key: str) -> str | None:
        """A small named value (the consent log's pruning anchor), or ``None``."""

    def set_meta(self, key: str, value: str) -> None:
        """Set a small named value."""

    def close(self) -> None:
        """Release connections and files."""


def open_store(url: str) -> RightsStore:
    """The rights store for a sink URL (see the module docstring)."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if url.strip() == "memory://":
        return MemoryStore()
    if sep and scheme == "sqlite":
        from ..sinks import url_path

        return SQLiteStore(url_path(url))
    if sep and scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    if sep and scheme == "jsonl":
        from ..sinks import url_path

        return JsonStore(url_path(url) + ".rights.json")
    raise ConfigError(
        "rights.store", url, "use a sqlite://, postgresql://, jsonl:// or memory:// URL"
    )


def _allowed_json(allowed: Sequence[str] | None) -> str | None:
    return None if allowed is None else json.dumps(sorted(allowed))


def _allowed_value(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    value = json.loads(text)
    return tuple(str(v) for v in value)


# --------------------------------------------------------------------------- memory


class MemoryStore:
    """The rights store in dictionaries (``memory://``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pepper = secrets.token_bytes(_PEPPER_BYTES)
        self._suppression: dict[tuple[str, str, str], str] = {}
        self._restriction: dict[str, tuple[tuple[str, ...] | None, str]] = {}
        self._meta: dict[str, str] = {}

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._meta[key] = value

    def pepper(self) -> bytes:
        return self._pepper

    def add_suppression(self, channel: str, digest: str, purpose: str | None, created: str) -> bool:
        key = (channel, digest, purpose or "")
        with self._lock:
            if key in self._suppression:
                return False
            self._suppression[key] = created
            return True

    def suppression(self, channel: str, digest: str) -> list[str | None]:
        with self._lock:
            return [p or None for (c, d, p) in self._suppression if c == channel and d == digest]

    def suppression_entries(self, channel: str | None = None) -> Iterator[SuppressionEntry]:
        with self._lock:
            items = list(self._suppression.items())
        for (c, d, p), created in items:
            if channel is None or c == channel:
                yield SuppressionEntry((c, d, p or None, created))

    def set_restriction(self, digest: str, allowed: Sequence[str] | None, created: str) -> None:
        with self._lock:
            self._restriction[digest] = (
                None if allowed is None else tuple(sorted(allowed)),
                created,
            )

    def remove_restrictions(self, digests: Sequence[str]) -> int:
        with self._lock:
            return sum(self._restriction.pop(d, None) is not None for d in set(digests))

    def restrictions(self) -> dict[str, tuple[str, ...] | None]:
        with self._lock:
            return {d: allowed for d, (allowed, _) in self._restriction.items()}

    def close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------- SQL


class _SQLStore:
    """The SQL store for SQLite and PostgreSQL: the same statements, ``?`` placeholders
    (turned into ``%s`` for psycopg by :meth:`_sql`)."""

    _pepper_cache: bytes | None = None

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _change(self, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    def pepper(self) -> bytes:
        if self._pepper_cache is None:
            # Two processes may create it at once: the first insert wins, both read it back.
            self._change(
                "INSERT INTO cmw_rights_meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                "DO NOTHING",
                (_PEPPER_KEY, secrets.token_hex(_PEPPER_BYTES)),
            )
            rows = self._rows("SELECT value FROM cmw_rights_meta WHERE key = ?", (_PEPPER_KEY,))
            self._pepper_cache = bytes.fromhex(rows[0][0])
        return self._pepper_cache

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM cmw_rights_meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._change(
            "INSERT INTO cmw_rights_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def add_suppression(self, channel: str, digest: str, purpose: str | None, created: str) -> bool:
        count = self._change(
            "INSERT INTO cmw_suppression (channel, digest, purpose, created) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel, digest, purpose) DO NOTHING",
            (channel, digest, purpose or "", created),
        )
        return count > 0

    def suppression(self, channel: str, digest: str) -> list[str | None]:
        rows = self._rows(
            "SELECT purpose FROM cmw_suppression WHERE channel = ? AND digest = ?",
            (channel, digest),
        )
        return [r[0] or None for r in rows]

    def suppression_entries(self, channel: str | None = None) -> Iterator[SuppressionEntry]:
        sql = "SELECT channel, digest, purpose, created FROM cmw_suppression"
        params: tuple[object, ...] = ()
        if channel is not None:
            sql += " WHERE channel = ?"
            params = (channel,)
        for c, d, p, created in self._rows(sql + " ORDER BY created, digest", params):
            yield SuppressionEntry((c, d, p or None, created))

    def set_restriction(self, digest: str, allowed: Sequence[str] | None, created: str) -> None:
        self._change(
            "INSERT INTO cmw_restriction (digest, allowed, created) VALUES (?, ?, ?) "
            "ON CONFLICT (digest) DO UPDATE SET allowed = excluded.allowed, "
            "created = excluded.created",
            (digest, _allowed_json(allowed), created),
        )

    def remove_restrictions(self, digests: Sequence[str]) -> int:
        return sum(
            self._change("DELETE FROM cmw_restriction WHERE digest = ?", (d,)) for d in set(digests)
        )

    def restrictions(self) -> dict[str, tuple[str, ...] | None]:
        rows = self._rows("SELECT digest, allowed FROM cmw_restriction")
        return {d: _allowed_value(a) for d, a in rows}


class SQLiteStore(_SQLStore):
    """The rights tables in a SQLite file (the sink's file; a connection of our own)."""

    def __init__(self, path: str) -> None:
        if not path or path == ":memory:":
            raise ConfigError("rights.store", path, "give a SQLite file, e.g. sqlite:///x.db")
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        # Inherited over fork(): never closed here (that would disturb the parent's WAL).
        self._inherited: list[sqlite3.Connection] = []

    def __repr__(self) -> str:
        return f"<SQLiteStore {self._path!r}>"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                self._inherited.append(self._conn)
                self._lock = threading.Lock()
            os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
            try:
                conn = sqlite3.connect(
                    self._path, timeout=10.0, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise SinkError(f"cannot open the rights tables in {self._path!r}: {exc}") from exc
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return [tuple(r) for r in self._db().execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise SinkError(f"rights store query failed: {exc}") from exc

    def _change(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock:
            try:
                return int(self._db().execute(sql, params).rowcount)
            except sqlite3.Error as exc:
                raise SinkError(f"rights store update failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()


def _libpq_url(url: str) -> str:
    """The URL without consentmw's own query options (libpq would refuse them)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    rest = [(k, v) for k, v in pairs if k not in _PG_OWN_OPTIONS]
    if len(rest) == len(pairs):
        return url
    return urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))


class PostgresStore(_SQLStore):
    """The rights tables in PostgreSQL (the sink's database and search path)."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise MissingDependencyError("PostgreSQL rights store", "postgres") from exc
        self._pg: Any = psycopg
        self._url = _libpq_url(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._inherited: list[psycopg.Connection[Any]] = []

    def __repr__(self) -> str:
        return "<PostgresStore>"

    def _db(self) -> psycopg.Connection[Any]:
        pg = self._pg
        if self._conn is not None and (self._pid != os.getpid() or self._conn.closed):
            if self._pid != os.getpid():
                # Closing would end the parent's session on the shared socket.
                self._inherited.append(self._conn)
                self._lock = threading.Lock()
            self._conn = None
        if self._conn is None:
            try:
                conn = pg.connect(self._url, autocommit=True, connect_timeout=5)
            except pg.Error as exc:
                raise SinkError(
                    f"cannot connect to PostgreSQL for the rights store: {exc}"
                ) from exc
            try:
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        ["consentmw.rights.schema"],
                    )
                    for statement in _SCHEMA:
                        conn.execute(statement)
            except pg.Error as exc:
                conn.close()
                raise SinkError(f"cannot create the rights tables: {exc}") from exc
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        pg = self._pg
        with self._lock:
            try:
                return [tuple(r) for r in self._db().execute(self._sql(sql), params).fetchall()]
            except pg.Error as exc:
                self._drop()
                raise SinkError(f"rights store query failed: {exc}") from exc

    def _change(self, sql: str, params: Sequence[object] = ()) -> int:
        pg = self._pg
        with self._lock:
            try:
                return int(self._db().execute(self._sql(sql), params).rowcount)
            except pg.Error as exc:
                self._drop()
                raise SinkError(f"rights store update failed: {exc}") from exc

    def _drop(self) -> None:
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()


def prune_postgres_consent_log(url: str, last_hash: str) -> int:
    """Delete the PostgreSQL consent-log records up to the one whose hash is ``last_hash``
    (see :mod:`consentmw.rights.retention`), under the lock the sink appends with; return
    how many. Here because psycopg is imported nowhere else in the rights layer."""
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError("PostgreSQL consent-log pruning", "postgres") from exc
    from ..sinks._sql import identifier

    options = dict(parse_qsl(urlsplit(url).query))
    table = identifier(options.get("consent_table", "consent_log"), "consent_table")
    conn = psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=5)
    try:
        with conn.transaction():
            # The lock the sink takes to append: no record is added while we cut.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '.' || %s, 0))",
                [table],
            )
            found = conn.execute(
                f"SELECT seq FROM {table} WHERE hash = %s",  # noqa: S608 - checked identifier
                [last_hash],
            ).fetchone()
            if found is None:
                return 0
            cursor = conn.execute(
                f"DELETE FROM {table} WHERE seq <= %s",  # noqa: S608 - checked identifier
                [found[0]],
            )
            return int(cursor.rowcount)
    except psycopg.Error as exc:
        raise SinkError(f"cannot prune the consent log: {exc}") from exc
    finally:
        conn.close()


# --------------------------------------------------------------------------- JSON file


class JsonStore:
    """The rights store as one JSON file (beside a ``jsonl://`` sink), mode 0600.

    Every change reads the file, changes it and replaces it atomically, under an ``flock`` on
    ``<path>.lock``, so several processes on one machine may share it.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<JsonStore {self._path!r}>"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
            try:
                fd = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise SinkError(f"cannot lock {self._path!r}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _read(self) -> dict[str, Any]:
        try:
            with open(self._path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise SinkError(f"cannot read the rights store {self._path!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise SinkError(f"the rights store {self._path!r} is not a JSON object")
        data.setdefault("suppression", [])
        data.setdefault("restriction", {})
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = os.path.dirname(os.path.abspath(self._path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".cmw-rights-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            raise SinkError(f"cannot write the rights store {self._path!r}: {exc}") from exc

    def pepper(self) -> bytes:
        with self._locked():
            data = self._read()
            if not isinstance(data.get(_PEPPER_KEY), str):
                data[_PEPPER_KEY] = secrets.token_hex(_PEPPER_BYTES)
                self._write(data)
            return bytes.fromhex(data[_PEPPER_KEY])

    def get_meta(self, key: str) -> str | None:
        with self._locked():
            value = self._read().get("meta", {}).get(key)
        return value if isinstance(value, str) else None

    def set_meta(self, key: str, value: str) -> None:
        with self._locked():
            data = self._read()
            data.setdefault("meta", {})[key] = value
            self._write(data)

    def add_suppression(self, channel: str, digest: str, purpose: str | None, created: str) -> bool:
        with self._locked():
            data = self._read()
            for c, d, p, _ in data["suppression"]:
                if (c, d, p) == (channel, digest, purpose or ""):
                    return False
            data["suppression"].append([channel, digest, purpose or "", created])
            self._write(data)
            return True

    def suppression(self, channel: str, digest: str) -> list[str | None]:
        with self._locked():
            rows = self._read()["suppression"]
        return [p or None for c, d, p, _ in rows if c == channel and d == digest]

    def suppression_entries(self, channel: str | None = None) -> Iterator[SuppressionEntry]:
        with self._locked():
            rows = self._read()["suppression"]
        for c, d, p, created in rows:
            if channel is None or c == channel:
                yield SuppressionEntry((c, d, p or None, created))

    def set_restriction(self, digest: str, allowed: Sequence[str] | None, created: str) -> None:
        with self._locked():
            data = self._read()
            data["restriction"][digest] = [None if allowed is None else sorted(allowed), created]
            self._write(data)

    def remove_restrictions(self, digests: Sequence[str]) -> int:
        with self._locked():
            data = self._read()
            removed = sum(data["restriction"].pop(d, None) is not None for d in set(digests))
            if removed:
                self._write(data)
            return removed

    def restrictions(self) -> dict[str, tuple[str, ...] | None]:
        with self._locked():
            rows = self._read()["restriction"]
        return {d: None if a is None else tuple(a) for d, (a, _) in rows.items()}

    def close(self) -> None:
        """Nothing stays open between calls."""

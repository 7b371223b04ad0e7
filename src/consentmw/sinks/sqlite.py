"""``sqlite://``: events and the consent log in one embedded SQLite file, the default sink.

One site on one machine needs nothing more: the file takes about a hundred thousand events a
second in WAL mode on a small machine, several processes (web workers, the CLI) can write it
at once, and it answers subject queries, erasure, rectification, reports and the consent chain
with SQL. When several machines write, use ``postgresql://`` (or ``redis://`` plus a relay) instead:
SQLite files must not live on network file systems.

Layout: table ``events`` (one column per :data:`~consentmw.events.EVENT_FIELDS`, ``purposes``
a JSON array, ``ua`` and ``props`` JSON text, ``seq`` the arrival order) and table
``consent_log`` (``seq`` is the log order), both created on first use.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..consentlog import GENESIS_HASH, ConsentRecord, seal
from ..errors import ConfigError, SinkError
from ..events import EVENT_FIELDS, Event
from ._base import AggregateRow
from ._forksafe import ProcessLock
from ._sql import COLUMNS, Dialect, aggregate_sql, erase_sql, query_sql, rectify_sql, ua_json

__all__ = ["SQLiteSink"]

_DIALECT = Dialect(
    param="?",
    purpose="EXISTS (SELECT 1 FROM json_each(events.purposes) WHERE json_each.value = ?)",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        name TEXT,
        ts TEXT NOT NULL,
        site TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        purposes TEXT NOT NULL,
        aggregate INTEGER NOT NULL,
        visitor_id TEXT,
        session_id TEXT,
        method TEXT,
        path TEXT,
        status INTEGER,
        referrer TEXT,
        ip TEXT,
        domain TEXT,
        email TEXT,
        claimed_email TEXT,
        ua TEXT,
        props TEXT NOT NULL,
        -- The idempotency key. An event's id and ts are fixed together when it is made, so a
        -- retried or replayed event repeats both. Keyed (ts, id) rather than (id) the index
        -- grows at its end, as time does, instead of at random UUID places: that alone
        -- doubles the insert rate, and the same index serves every time-range query.
        UNIQUE (ts, id)
    )""",
    # Partial indexes: aggregate events (most of them without consent) carry no identifier,
    # so leaving NULLs out keeps the indexes small and the inserts cheap.
    "CREATE INDEX IF NOT EXISTS ix_events_visitor ON events (visitor_id) "
    "WHERE visitor_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_events_email ON events (email) WHERE email IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_events_type ON events (type, ts)",
    """CREATE TABLE IF NOT EXISTS consent_log (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts TEXT NOT NULL,
        site TEXT NOT NULL,
        policy_version TEXT NOT NULL,
        granted TEXT NOT NULL,
        mechanism TEXT NOT NULL,
        subject TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ix_consent_subject ON consent_log (subject)",
)

# ON CONFLICT rather than INSERT OR IGNORE: the latter would also silently drop a row that
# breaks NOT NULL, and a malformed event must fail loudly instead of vanishing.
_ROW = "(" + ", ".join("?" * len(EVENT_FIELDS)) + ")"
_INSERT = f"INSERT INTO events ({COLUMNS}) VALUES {_ROW} ON CONFLICT (ts, id) DO NOTHING"  # noqa: S608

# Rows per INSERT statement. The sqlite3 module lets other threads run while SQLite works on a
# statement, and takes the GIL back afterwards: executemany() does that once per row, which
# under a busy dispatcher thread costs a GIL hand-off per event. Multi-row VALUES lists take as
# many rows per hand-off and insert as fast on their own. 45 rows are 900 parameters, within
# the 999 that SQLite builds before 3.32 allow.
_ROWS_PER_STATEMENT = 45


@functools.cache
def _insert_rows(count: int) -> str:
    values = ", ".join([_ROW] * count)
    return f"INSERT INTO events ({COLUMNS}) VALUES {values} ON CONFLICT (ts, id) DO NOTHING"  # noqa: S608


_CONSENT_COLUMNS = "id, ts, site, policy_version, granted, mechanism, subject, prev_hash, hash"
_SELECT_CONSENT = f"SELECT {_CONSENT_COLUMNS} FROM consent_log"  # noqa: S608 - a fixed name
_FETCH = 500

# Errors that the same rows will always meet: a value SQLite cannot store or a constraint.
_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    OverflowError,
    TypeError,
    ValueError,  # includes UnicodeEncodeError (lone surrogates) and JSON's NaN refusal
)


# fork() while another thread is inside SQLite would copy SQLite's internal mutexes locked
# into the child, where nothing ever unlocks them: the child's first SQLite call would hang.
# So a fork waits until no sink of this process is writing, holding every sink's lock across
# it. Process-wide by nature (fork is), and holds only weak references.
_LIVE_SINKS: weakref.WeakSet[SQLiteSink] = weakref.WeakSet()
_HELD_FOR_FORK: list[threading.Lock] = []


def _before_fork() -> None:
    for sink in list(_LIVE_SINKS):
        lock = sink._guard()
        lock.acquire()
        _HELD_FOR_FORK.append(lock)


def _after_fork_in_parent() -> None:
    while _HELD_FOR_FORK:
        _HELD_FOR_FORK.pop().release()


def _after_fork_in_child() -> None:
    # The child's copies of the locks are held; SQLiteSink._guard gives each sink a new one.
    _HELD_FOR_FORK.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class SQLiteSink:
    """Events and consent records in one SQLite file (WAL mode); thread- and fork-safe.

    ``path`` is the database file (parent directories are created). ``busy_timeout_ms`` is how
    long a write waits for another process's lock before failing with a retryable
    ``SinkError``. Connections open lazily and are reopened in a forked child, never shared
    with the parent. Supports every capability: query, erase, rectify, aggregate and the
    consent log.

    The idempotency key is ``(ts, id)``: an event written again (a retry, a replay from the
    spool or a relay) repeats both and is stored once; two events that share an id but not a
    timestamp are both kept. The other sinks key by id alone; this one trades that corner for
    an index that grows in time order, about twice the insert rate of a random-UUID key.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        self._path = os.fspath(path)
        if not self._path:
            raise ConfigError("sinks", path, "give the SQLite file, e.g. sqlite:///events.db")
        if self._path == ":memory:" or self._path.startswith("file:"):
            # Each connection (writer, every reader) would see a database of its own.
            raise ConfigError("sinks", path, "use a file path, or memory:// for a memory sink")
        if busy_timeout_ms < 0:
            raise ConfigError("busy_timeout_ms", busy_timeout_ms, "use a positive number")
        self._busy_ms = int(busy_timeout_ms)
        self._lock = ProcessLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        # Connections inherited over fork(): never used or closed here (closing would let
        # SQLite checkpoint and delete the parent's WAL), only kept from the garbage collector.
        self._inherited: list[sqlite3.Connection] = []
        self._closed = False
        _LIVE_SINKS.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteSink:
        """``sqlite:///rel/events.db`` (relative) or ``sqlite:////abs/events.db`` (absolute);
        ``?busy_timeout_ms=N`` in the URL or as a keyword option."""
        from . import url_path

        query = dict(parse_qsl(urlsplit(url).query))
        for key, value in query.items():
            if key != "busy_timeout_ms":
                raise ConfigError("sinks", url, f"unknown SQLite option {key!r}")
            try:
                options.setdefault(key, int(value))
            except ValueError:
                raise ConfigError("sinks", url, "busy_timeout_ms must be an integer") from None
        return cls(url_path(url), **options)

    def __repr__(self) -> str:
        return f"<SQLiteSink {self._path!r}>"

    # -- connections -------------------------------------------------------------------------

    def _guard(self) -> threading.Lock:
        return self._lock.get()

    def _connect(self) -> sqlite3.Connection:
        parent = os.path.dirname(os.path.abspath(self._path))
        try:
            os.makedirs(parent, exist_ok=True)
            # isolation_level=None: transactions are spelled out (BEGIN IMMEDIATE) below.
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"cannot open SQLite file {self._path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise SinkError(f"cannot prepare SQLite file {self._path!r}: {exc}") from exc
        return conn

    def _writer(self) -> sqlite3.Connection:
        """The write connection of this process; the caller holds the lock."""
        if self._closed:
            raise SinkError("SQLite sink is closed", retryable=False)
        pid = os.getpid()
        if self._conn is None or self._conn_pid != pid:
            if self._conn is not None:
                self._inherited.append(self._conn)
                self._conn = None
            self._conn = self._connect()
            self._conn_pid = pid
        return self._conn

    def _ready(self) -> None:
        """Raise if closed; create the file and schema if this is the first use."""
        with self._guard():
            self._writer()

    def _read_connection(self) -> sqlite3.Connection:
        """A connection of its own for one streamed query, so a slow reader blocks no write."""
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,
                check_same_thread=False,  # the caller may iterate on another thread
            )
        except sqlite3.Error as exc:
            raise SinkError(f"cannot read SQLite file {self._path!r}: {exc}") from exc
        try:
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise SinkError(f"cannot read SQLite file {self._path!r}: {exc}") from exc
        return conn

    def close(self) -> None:
        """Close the connection; idempotent. Writing afterwards raises ``SinkError``."""
        with self._guard():
            self._closed = True
            _LIVE_SINKS.discard(self)
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._conn_pid == os.getpid():
                    conn.close()
                else:
                    self._inherited.append(conn)

    # -- events ------------------------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> None:
        """Insert ``events`` in one transaction, skipping ids already stored."""
        try:
            rows = _rows(events)
        except _DATA_ERRORS as exc:
            raise SinkError(f"cannot store event: {exc}", retryable=False) from exc
        with self._guard():
            conn = self._writer()
            if not rows:
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    step = _ROWS_PER_STATEMENT
                    for start in range(0, len(rows), step):
                        chunk = rows[start : start + step]
                        conn.execute(_insert_rows(len(chunk)), list(chain.from_iterable(chunk)))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise SinkError(f"SQLite write failed: {exc}") from exc
            except _DATA_ERRORS as exc:
                raise SinkError(f"cannot store event: {exc}", retryable=False) from exc
            except sqlite3.Error as exc:
                raise SinkError(f"SQLite write failed: {exc}") from exc

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Matching events, oldest first, fetched in chunks from a connection of their own."""
        sql, params = query_sql(
            _DIALECT,
            "events",
            subject=subject,
            purpose=purpose,
            type=type,
            since=since,
            until=until,
        )
        return self._stream(sql, params, _event)

    def _stream(self, sql: str, params: Sequence[object], convert: Any) -> Iterator[Any]:
        # Checked now, not at the first next(): a closed sink fails where it is called.
        self._ready()
        return self._fetch(sql, params, convert)

    def _fetch(self, sql: str, params: Sequence[object], convert: Any) -> Iterator[Any]:
        # The connection opens at the first next() and closes when the iteration ends or the
        # generator is dropped, so an iterator nobody starts holds nothing open.
        conn = self._read_connection()
        try:
            try:
                cursor = conn.execute(sql, params)
                rows = cursor.fetchmany(_FETCH)
                while rows:
                    for row in rows:
                        yield convert(row)
                    rows = cursor.fetchmany(_FETCH)
            except sqlite3.Error as exc:
                raise SinkError(f"SQLite query failed: {exc}") from exc
        finally:
            conn.close()

    def erase(self, subject: str) -> int:
        """Delete every event whose ``visitor_id`` is ``subject`` or whose ``email`` is
        ``subject`` lower-cased; return how many."""
        sql, params = erase_sql(_DIALECT, "events", subject)
        return self._change(sql, params)

    def rectify(self, subject: str, changes: Mapping[str, str | None]) -> int:
        """Set identifier fields on every event about ``subject``; return how many changed."""
        sql, params = rectify_sql(_DIALECT, "events", subject, changes)
        return self._change(sql, params)

    def _change(self, sql: str, params: Sequence[object]) -> int:
        with self._guard():
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    count = conn.execute(sql, params).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise SinkError(f"SQLite update failed: {exc}") from exc
            return int(count)

    def aggregate(
        self,
        *,
        by: Sequence[str],
        type: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AggregateRow]:
        """Counts grouped by ``by`` with SQL ``GROUP BY``; ``ValueError`` for an unknown key."""
        sql, params = aggregate_sql(_DIALECT, "events", by=by, type=type, since=since, until=until)
        rows = [
            AggregateRow(tuple(row[:-1]), int(row[-1])) for row in self._stream(sql, params, tuple)
        ]
        return [row for row in rows if row.count]

    # -- consent log -------------------------------------------------------------------------

    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        """Seal ``record`` after the head of the chain and store it, in one ``BEGIN
        IMMEDIATE`` transaction so appends from other processes cannot fork the chain.
        Returns the stored record (the earlier one if its id is already there)."""
        with self._guard():
            conn = self._writer()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    sealed = _append(conn, record)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise SinkError(f"SQLite consent append failed: {exc}") from exc
            except _DATA_ERRORS as exc:
                raise SinkError(f"cannot store consent record: {exc}", retryable=False) from exc
            except sqlite3.Error as exc:
                raise SinkError(f"SQLite consent append failed: {exc}") from exc
            return sealed

    def consent_records(self, *, subject: str | None = None) -> Iterator[ConsentRecord]:
        """Records in log order, optionally only those of one pseudonymous subject."""
        sql = _SELECT_CONSENT
        params: list[object] = []
        if subject is not None:
            sql += " WHERE subject = ?"
            params.append(subject)
        return self._stream(sql + " ORDER BY seq", params, _consent)


def _rows(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    # The hot path of the default pipeline: one tuple per event, JSON only where there is
    # something to encode, purpose lists and user agents encoded once per distinct value.
    dumps = json.dumps
    purpose_json: dict[tuple[str, ...], str] = {}
    ua_cache: dict[tuple[Any, ...], str] = {}
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for e in events:
        purposes = e.purposes
        pj = purpose_json.get(purposes)
        if pj is None:
            pj = purpose_json[purposes] = dumps(list(purposes), separators=(",", ":"))
        uj = ua_json(e.ua, ua_cache)
        props = e.props
        append(
            (
                e.id,
                e.type,
                e.name,
                e.ts,
                e.site,
                e.policy_version,
                pj,
                e.aggregate,
                e.visitor_id,
                e.session_id,
                e.method,
                e.path,
                e.status,
                e.referrer,
                e.ip,
                e.domain,
                e.email,
                e.claimed_email,
                uj,
                dumps(props, separators=(",", ":"), allow_nan=False) if props else "{}",
            )
        )
    return rows


def _event(row: tuple[Any, ...]) -> Event:
    ua = row[18]
    props = row[19]
    return Event(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        tuple(json.loads(row[6])),
        bool(row[7]),
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        None if ua is None else json.loads(ua),
        {} if props == "{}" else json.loads(props),
    )


def _consent(row: tuple[Any, ...]) -> ConsentRecord:
    return ConsentRecord(
        id=row[0],
        ts=row[1],
        site=row[2],
        policy_version=row[3],
        granted=tuple(json.loads(row[4])),
        mechanism=row[5],
        subject=row[6],
        prev_hash=row[7],
        hash=row[8],
    )


def _append(conn: sqlite3.Connection, record: ConsentRecord) -> ConsentRecord:
    existing = conn.execute(_SELECT_CONSENT + " WHERE id = ?", (record.id,)).fetchone()
    if existing is not None:
        return _consent(existing)
    head = conn.execute("SELECT hash FROM consent_log ORDER BY seq DESC LIMIT 1").fetchone()
    sealed = seal(record, GENESIS_HASH if head is None else head[0])
    conn.execute(
        f"INSERT INTO consent_log ({_CONSENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - fixed names
        (
            sealed.id,
            sealed.ts,
            sealed.site,
            sealed.policy_version,
            json.dumps(list(sealed.granted)),
            sealed.mechanism,
            sealed.subject,
            sealed.prev_hash,
            sealed.hash,
        ),
    )
    return sealed

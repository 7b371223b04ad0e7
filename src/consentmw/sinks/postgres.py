"""``postgresql://`` (or ``postgres://``): events and the consent log in PostgreSQL.

For sites that outgrow one machine: every web server writes to one database, and rights
requests, reports and the consent chain see all of them. Needs the ``postgres`` extra
(``pip install 'consentmw[postgres]'``, psycopg 3). The URL goes to ``psycopg.connect`` as is,
libpq parameters included (``?sslmode=require``, ``?options=-csearch_path%3Dconsent``);
consentmw's own options may ride along in the query string and are taken out first:
``statement_timeout`` (seconds, default 5), ``table`` and ``consent_table`` (default
``events`` and ``consent_log``, created on first use in the first schema of the search path)
and ``strategy`` (how batches are inserted, see :data:`STRATEGIES`).

Not for one machine alone: ``sqlite://`` needs no server and is faster there.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..consentlog import GENESIS_HASH, ConsentRecord, seal
from ..errors import ConfigError, MissingDependencyError, SinkError
from ..events import EVENT_FIELDS, Event
from ._base import AggregateRow
from ._forksafe import ProcessLock
from ._sql import (
    COLUMNS,
    Dialect,
    aggregate_sql,
    erase_sql,
    identifier,
    query_sql,
    rectify_sql,
    ua_json,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["STRATEGIES", "PostgresSink"]

#: How a batch is inserted. ``copy`` streams it with ``COPY`` into a session-private staging
#: table and moves it over with one ``INSERT … SELECT … ON CONFLICT (id) DO NOTHING``;
#: ``executemany`` sends one ``INSERT … ON CONFLICT`` per event in pipeline mode. ``copy`` is
#: the default: with batches of 500 into a local server it measured 41,000 to 45,000 events a
#: second against 24,000 to 39,000 for ``executemany`` (``tests/sinks/bench_sinks.py``); most
#: of the time either way is the server updating the indexes.
STRATEGIES = ("copy", "executemany")

_OWN_OPTIONS = ("statement_timeout", "table", "consent_table", "strategy")
_FETCH = 1000
_DIALECT = Dialect(
    param="%s",
    # Containment rather than "= ANY(purposes)": the same answer, and @> can use the GIN index.
    purpose="purposes @> ARRAY[%s]::text[]",
    collate=' COLLATE "C"',
)
_CONSENT_COLUMNS = "id, ts, site, policy_version, granted, mechanism, subject, prev_hash, hash"
_SCHEMA_LOCK = "consentmw.schema"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise MissingDependencyError("PostgreSQL sink", "postgres") from exc
    return psycopg


class PostgresSink:
    """Events and consent records in PostgreSQL; thread- and fork-safe.

    ``conninfo`` is a libpq URL or key/value string. ``statement_timeout`` and
    ``connect_timeout`` are in seconds. One connection writes (under a lock, so threads take
    turns); each ``query`` streams through a server-side cursor on a connection of its own.
    Connections open lazily and are reopened in a forked child, never shared with the
    parent. Supports every capability: query, erase, rectify, aggregate and the consent log.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        statement_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        table: str = "events",
        consent_table: str = "consent_log",
        strategy: str = "copy",
    ) -> None:
        self._pg = _psycopg()
        self._conninfo = conninfo
        if statement_timeout <= 0:
            raise ConfigError("statement_timeout", statement_timeout, "use a number of seconds")
        if strategy not in STRATEGIES:
            raise ConfigError("strategy", strategy, f"use one of {', '.join(STRATEGIES)}")
        self._statement_ms = max(1, round(statement_timeout * 1000))
        # libpq takes whole seconds and treats anything under 2 as 2.
        self._connect_timeout = max(2, round(connect_timeout))
        self._table = _name(table, "table")
        self._consent_table = _name(consent_table, "consent_table")
        self._stage = f"_cmw_stage_{self._table}"
        self._strategy = strategy
        cols = ", ".join(EVENT_FIELDS)
        self._insert_values = (
            f"INSERT INTO {self._table} ({cols}) VALUES ({', '.join(['%s'] * len(EVENT_FIELDS))})"  # noqa: S608
            " ON CONFLICT (id) DO NOTHING"
        )
        self._insert_staged = (
            f"INSERT INTO {self._table} ({cols}) SELECT {cols} FROM {self._stage}"  # noqa: S608
            " ORDER BY ord ON CONFLICT (id) DO NOTHING"
        )
        self._lock = ProcessLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._conn_pid = 0
        # Connections inherited over fork(): closing one here would end the parent's session
        # (libpq sends Terminate on the shared socket), so they are only kept referenced.
        self._inherited: list[psycopg.Connection[Any]] = []
        self._schema_ready = False
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresSink:
        """A sink for a ``postgresql://`` or ``postgres://`` URL; consentmw's own query
        parameters (``statement_timeout``, ``table``, ``consent_table``, ``strategy``) are
        taken out, keyword ``options`` win over them."""
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in pairs if k in _OWN_OPTIONS}
        if own:
            rest = [(k, v) for k, v in pairs if k not in _OWN_OPTIONS]
            # quote, not quote_plus: libpq does not read "+" as a space.
            url = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
        for key, value in own.items():
            if key == "statement_timeout":
                try:
                    options.setdefault(key, float(value))
                except ValueError:
                    raise ConfigError("sinks", key, "statement_timeout is in seconds") from None
            else:
                options.setdefault(key, value)
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"<PostgresSink table={self._table}>"

    # -- connections -------------------------------------------------------------------------

    def _guard(self) -> threading.Lock:
        return self._lock.get()

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        pg = self._pg
        try:
            conn: psycopg.Connection[Any] = pg.connect(
                self._conninfo, connect_timeout=self._connect_timeout, autocommit=autocommit
            )
        except pg.Error as exc:
            raise SinkError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", [f"{self._statement_ms}ms"]
            )
            if not autocommit:
                conn.commit()
        except pg.Error as exc:
            conn.close()
            raise self._error(exc, "cannot prepare the PostgreSQL session") from exc
        return conn

    def _writer(self) -> psycopg.Connection[Any]:
        """The write connection of this process; the caller holds the lock."""
        if self._closed:
            raise SinkError("PostgreSQL sink is closed", retryable=False)
        pid = os.getpid()
        if self._conn is not None and self._conn_pid != pid:
            self._inherited.append(self._conn)
            self._conn = None
        if self._conn is not None and self._conn.closed:
            self._conn = None
        if self._conn is None:
            conn = self._connect(autocommit=True)
            try:
                if not self._schema_ready:
                    self._create_schema(conn)
                    self._schema_ready = True
                conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {self._stage} ("
                    "ord bigint GENERATED ALWAYS AS IDENTITY, id text, type text, name text,"
                    " ts text, site text, policy_version text, purposes text[], aggregate bool,"
                    " visitor_id text, session_id text, method text, path text, status integer,"
                    " referrer text, ip text, domain text, email text, claimed_email text,"
                    " ua json, props json) ON COMMIT DELETE ROWS"
                )
            except self._pg.Error as exc:
                conn.close()
                raise self._error(exc, "cannot create the consentmw tables") from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._conn_pid = pid
        return self._conn

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        t, c = self._table, self._consent_table
        with conn.transaction():
            # Several processes may start at once; CREATE … IF NOT EXISTS alone still races.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [_SCHEMA_LOCK])
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {t} (
                    seq bigint GENERATED ALWAYS AS IDENTITY,
                    id text PRIMARY KEY,
                    type text NOT NULL,
                    name text,
                    ts text COLLATE "C" NOT NULL,
                    site text NOT NULL,
                    policy_version text NOT NULL,
                    purposes text[] NOT NULL,
                    aggregate boolean NOT NULL,
                    visitor_id text,
                    session_id text,
                    method text,
                    path text,
                    status integer,
                    referrer text,
                    ip text,
                    domain text,
                    email text,
                    claimed_email text,
                    ua json,
                    props json NOT NULL
                )"""
            )
            # json rather than jsonb for ua and props: it keeps the text as written, so
            # numbers and key order come back exactly as the event had them.
            for ddl in (
                f"CREATE INDEX IF NOT EXISTS {t}_visitor_idx ON {t} (visitor_id)"
                " WHERE visitor_id IS NOT NULL",
                f"CREATE INDEX IF NOT EXISTS {t}_email_idx ON {t} (email) WHERE email IS NOT NULL",
                f"CREATE INDEX IF NOT EXISTS {t}_ts_idx ON {t} (ts, seq)",
                f"CREATE INDEX IF NOT EXISTS {t}_type_idx ON {t} (type, ts)",
                f"CREATE INDEX IF NOT EXISTS {t}_purposes_idx ON {t} USING gin (purposes)",
                f"""CREATE TABLE IF NOT EXISTS {c} (
                    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    id text NOT NULL UNIQUE,
                    ts text NOT NULL,
                    site text NOT NULL,
                    policy_version text NOT NULL,
                    granted text[] NOT NULL,
                    mechanism text NOT NULL,
                    subject text NOT NULL,
                    prev_hash text NOT NULL,
                    hash text NOT NULL
                )""",
                f"CREATE INDEX IF NOT EXISTS {c}_subject_idx ON {c} (subject)",
            ):
                conn.execute(ddl)

    def _error(self, exc: BaseException, what: str) -> SinkError:
        """Map a psycopg error to ``SinkError``: data the server refuses is not retryable;
        everything else (connection, timeout, lock, permissions) may pass later."""
        pg = self._pg
        retryable = not isinstance(exc, (pg.DataError, pg.IntegrityError))
        return SinkError(f"{what}: {exc}", retryable=retryable)

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection; idempotent. Writing afterwards raises ``SinkError``."""
        with self._guard():
            self._closed = True
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
        except (TypeError, ValueError) as exc:
            raise SinkError(f"cannot store event: {exc}", retryable=False) from exc
        pg = self._pg
        with self._guard():
            conn = self._writer()
            if not rows:
                return
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if self._strategy == "copy":
                        with cur.copy(f"COPY {self._stage} ({COLUMNS}) FROM STDIN") as copy:
                            for row in rows:
                                copy.write_row(row)
                        cur.execute(self._insert_staged)
                    else:
                        cur.executemany(self._insert_values, rows)
            except pg.Error as exc:
                self._drop_if_broken()
                raise self._error(exc, "PostgreSQL write failed") from exc
            except (TypeError, ValueError) as exc:  # a value psycopg cannot adapt
                self._drop_if_broken()
                raise SinkError(f"cannot store event: {exc}", retryable=False) from exc

    def _ready(self) -> None:
        with self._guard():
            self._writer()

    def _stream(self, sql: str, params: Sequence[object], convert: Any) -> Iterator[Any]:
        # Checked now, not at the first next(): a closed sink fails where it is called.
        self._ready()
        return self._fetch(sql, params, convert)

    def _fetch(self, sql: str, params: Sequence[object], convert: Any) -> Iterator[Any]:
        # A connection of its own (a slow reader blocks no write), opened at the first next()
        # and closed when the iteration ends or the generator is dropped. The named cursor
        # lives on the server: rows arrive _FETCH at a time, never all at once.
        pg = self._pg
        conn = self._connect(autocommit=False)
        try:
            with conn.cursor(name=f"cmw_{uuid.uuid4().hex}") as cur:
                cur.execute(sql, params)
                rows = cur.fetchmany(_FETCH)
                while rows:
                    for row in rows:
                        yield convert(row)
                    rows = cur.fetchmany(_FETCH)
        except pg.Error as exc:
            raise self._error(exc, "PostgreSQL query failed") from exc
        finally:
            conn.close()

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Matching events, oldest first, streamed through a server-side cursor."""
        sql, params = query_sql(
            _DIALECT,
            self._table,
            subject=subject,
            purpose=purpose,
            type=type,
            since=since,
            until=until,
        )
        return self._stream(sql, params, _event)

    def erase(self, subject: str) -> int:
        """Delete every event about ``subject``; return how many."""
        sql, params = erase_sql(_DIALECT, self._table, subject)
        return self._change(sql, params)

    def rectify(self, subject: str, changes: Mapping[str, str | None]) -> int:
        """Set identifier fields on every event about ``subject``; return how many changed."""
        sql, params = rectify_sql(_DIALECT, self._table, subject, changes)
        return self._change(sql, params)

    def _change(self, sql: str, params: Sequence[object]) -> int:
        pg = self._pg
        with self._guard():
            conn = self._writer()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(sql, params)
                    return int(cur.rowcount)
            except pg.Error as exc:
                self._drop_if_broken()
                raise self._error(exc, "PostgreSQL update failed") from exc

    def aggregate(
        self,
        *,
        by: Sequence[str],
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> list[AggregateRow]:
        """Counts grouped by ``by`` with SQL ``GROUP BY``; ``ValueError`` for an unknown key."""
        sql, params = aggregate_sql(
            _DIALECT, self._table, by=by, type=type, since=since, until=until
        )
        rows = [
            AggregateRow(tuple(row[:-1]), int(row[-1])) for row in self._stream(sql, params, tuple)
        ]
        return [row for row in rows if row.count]

    # -- consent log -------------------------------------------------------------------------

    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        """Seal ``record`` after the head of the chain and store it. A transaction-level
        advisory lock makes the head read and the insert one step for every process and
        machine, so the chain never forks. Returns the stored record (the earlier one if its
        id is already there)."""
        pg = self._pg
        c = self._consent_table
        with self._guard():
            conn = self._writer()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended("
                        "current_schema() || '.' || %s, 0))",
                        [c],
                    )
                    cur.execute(
                        f"SELECT {_CONSENT_COLUMNS} FROM {c} WHERE id = %s",  # noqa: S608
                        [record.id],
                    )
                    existing = cur.fetchone()
                    if existing is not None:
                        return _consent(existing)
                    cur.execute(f"SELECT hash FROM {c} ORDER BY seq DESC LIMIT 1")  # noqa: S608
                    head = cur.fetchone()
                    sealed = seal(record, GENESIS_HASH if head is None else head[0])
                    cur.execute(
                        f"INSERT INTO {c} ({_CONSENT_COLUMNS})"  # noqa: S608
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            sealed.id,
                            sealed.ts,
                            sealed.site,
                            sealed.policy_version,
                            list(sealed.granted),
                            sealed.mechanism,
                            sealed.subject,
                            sealed.prev_hash,
                            sealed.hash,
                        ],
                    )
                    return sealed
            except pg.Error as exc:
                self._drop_if_broken()
                raise self._error(exc, "PostgreSQL consent append failed") from exc

    def consent_records(self, *, subject: str | None = None) -> Iterator[ConsentRecord]:
        """Records in log order, optionally only those of one pseudonymous subject."""
        sql = f"SELECT {_CONSENT_COLUMNS} FROM {self._consent_table}"  # noqa: S608
        params: list[object] = []
        if subject is not None:
            sql += " WHERE subject = %s"
            params.append(subject)
        return self._stream(sql + " ORDER BY seq", params, _consent)


def _name(value: str, field: str) -> str:
    name = identifier(value, field)
    if len(name) > 40:  # room for the index and staging-table suffixes within 63
        raise ConfigError(field, value, "use a table name of at most 40 characters")
    return name


def _rows(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    # Duplicates inside one batch collapse here, first one kept, as in every sink.
    dumps = json.dumps
    ua_cache: dict[tuple[Any, ...], str] = {}
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    for e in events:
        if e.id in seen:
            continue
        seen.add(e.id)
        uj = ua_json(e.ua, ua_cache)
        props = e.props
        rows.append(
            (
                e.id,
                e.type,
                e.name,
                e.ts,
                e.site,
                e.policy_version,
                list(e.purposes),
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
    return Event(
        id=row[0],
        type=row[1],
        name=row[2],
        ts=row[3],
        site=row[4],
        policy_version=row[5],
        purposes=tuple(row[6]),
        aggregate=row[7],
        visitor_id=row[8],
        session_id=row[9],
        method=row[10],
        path=row[11],
        status=row[12],
        referrer=row[13],
        ip=row[14],
        domain=row[15],
        email=row[16],
        claimed_email=row[17],
        ua=row[18],
        props=row[19],
    )


def _consent(row: tuple[Any, ...]) -> ConsentRecord:
    return ConsentRecord(
        id=row[0],
        ts=row[1],
        site=row[2],
        policy_version=row[3],
        granted=tuple(row[4]),
        mechanism=row[5],
        subject=row[6],
        prev_hash=row[7],
        hash=row[8],
    )

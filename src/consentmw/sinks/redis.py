"""``redis://host:port/db?stream=name``: events into a Redis stream, and the relay that moves
them on.

For sites on many machines that want a cheap, fast write path: each web server appends to one
stream, and one or more :class:`StreamRelay` processes (``consentmw relay``) move the events
into the store that answers questions, usually ``postgresql://``. Needs the ``redis`` extra
(``pip install 'consentmw[redis]'``).

Query parameters: ``stream`` (default ``consentmw:events``), ``maxlen`` (default 1,000,000:
the stream is trimmed to about that many entries, ``XADD MAXLEN ~``, so a relay that falls
further behind than that loses the oldest events) and ``dedup_ttl`` (seconds, default 7 days).
The rest of the URL is redis-py's (``rediss://`` for TLS, ``?socket_timeout=``…).

**Idempotency has a window.** Each write records the event id under ``cmw:<stream>:id:<id>``
with a time-to-live of ``dedup_ttl``, in the same Lua script as the ``XADD``: an event written
again within the window is skipped; after it, it is appended again (the relay's target then
removes the duplicate by id, as every sink does).

**No consent log here.** A hash chain needs "read the head, append after it" as one atomic
step for every writer; a Redis stream can do that only inside a script on one primary, and
loses the tail on a failover. Keep the consent log in ``sqlite://`` or ``postgresql://``
(``sinks.consent_log``). Likewise no ``rectify`` (stream entries cannot be changed in place)
and no ``aggregate`` (it would mean reading the whole stream): do those at the relay's target.
``query`` and ``erase`` scan the stream in chunks, which is what the rights layer needs while
events still sit here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, MissingDependencyError, SinkError
from ..events import Event
from ._base import Sink
from ._filters import matches
from ._forksafe import ProcessLock

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_DEDUP_TTL",
    "DEFAULT_MAXLEN",
    "DEFAULT_STREAM",
    "RedisStreamSink",
    "StreamRelay",
    "relay",
]

log = logging.getLogger(__name__)

DEFAULT_STREAM = "consentmw:events"
DEFAULT_MAXLEN = 1_000_000
#: Seconds an event id is remembered for deduplication (7 days).
DEFAULT_DEDUP_TTL = 7 * 24 * 3600

_OWN_OPTIONS = ("stream", "maxlen", "dedup_ttl")
_CHUNK = 500
_FIELD = b"event"

# KEYS[1] the stream, KEYS[2..n] one dedup key per event; ARGV[1] the dedup TTL, ARGV[2] the
# MAXLEN, ARGV[3..] the events' JSON in KEYS order. The id is checked, the entry appended, and
# only then the id recorded: a script that fails half-way may leave an entry unrecorded (a
# duplicate on retry, removed downstream), never an id recorded without its entry (a loss).
_ADD_SCRIPT = """
local added = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i + 1])
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[1])
    added = added + 1
  end
end
return added
"""


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:
        raise MissingDependencyError("Redis stream sink", "redis") from exc
    return redis


class RedisStreamSink:
    """Events appended to a Redis stream, one JSON entry each; thread- and fork-safe.

    ``url`` is a redis-py URL without consentmw's options; ``stream``, ``maxlen`` and
    ``dedup_ttl`` are as in the module documentation. The client opens lazily and is made anew
    in a forked child. Supports ``query`` and ``erase``; not ``rectify``, ``aggregate`` or the
    consent log (see the module documentation for why).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = DEFAULT_MAXLEN,
        dedup_ttl: int = DEFAULT_DEDUP_TTL,
        socket_timeout: float = 5.0,
    ) -> None:
        self._redis = _redis()
        if not stream:
            raise ConfigError("stream", stream, "name the Redis stream, e.g. ?stream=events")
        if maxlen < 1:
            raise ConfigError("maxlen", maxlen, "use a positive number of entries")
        if dedup_ttl < 1:
            raise ConfigError("dedup_ttl", dedup_ttl, "use a positive number of seconds")
        self._url = url
        self.stream = stream
        self._maxlen = int(maxlen)
        self._dedup_ttl = int(dedup_ttl)
        self._socket_timeout = socket_timeout
        self._dedup_prefix = f"cmw:{stream}:id:"
        self._lock = ProcessLock()
        self._client_obj: redis.Redis[bytes] | None = None
        self._pid = 0
        self._script: Any = None
        # Clients inherited over fork(): redis-py would not reuse their sockets here, but
        # dropping them would close sockets the parent still uses; keep them referenced.
        self._inherited: list[redis.Redis[bytes]] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStreamSink:
        """A sink for ``redis://host:port/db?stream=name&maxlen=N&dedup_ttl=S``; keyword
        ``options`` win over the URL's."""
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        rest = [(k, v) for k, v in pairs if k not in _OWN_OPTIONS]
        for key, value in pairs:
            if key not in _OWN_OPTIONS:
                continue
            if key == "stream":
                options.setdefault(key, value)
                continue
            try:
                options.setdefault(key, int(value))
            except ValueError:
                raise ConfigError("sinks", url, f"{key} must be an integer") from None
        clean = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
        return cls(clean, **options)

    def __repr__(self) -> str:
        return f"<RedisStreamSink stream={self.stream!r}>"

    # -- connection --------------------------------------------------------------------------

    def _guard(self) -> threading.Lock:
        return self._lock.get()

    def _client(self) -> redis.Redis[bytes]:
        """This process's client (made anew after fork)."""
        if self._closed:
            raise SinkError("Redis sink is closed", retryable=False)
        pid = os.getpid()
        client = self._client_obj
        if client is not None and self._pid == pid:
            return client
        with self._guard():
            if self._client_obj is not None and self._pid != pid:
                self._inherited.append(self._client_obj)
                self._client_obj = None
            if self._client_obj is None:
                client = self._redis.Redis.from_url(
                    self._url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                )
                self._script = client.register_script(_ADD_SCRIPT)
                self._client_obj = client
                self._pid = pid
            return self._client_obj

    def _error(self, exc: BaseException, what: str) -> SinkError:
        retryable = not isinstance(exc, self._redis.DataError)
        return SinkError(f"{what}: {exc}", retryable=retryable)

    def close(self) -> None:
        """Close the client's connections; idempotent. Writing afterwards raises ``SinkError``."""
        with self._guard():
            self._closed = True
            client, self._client_obj = self._client_obj, None
            if client is not None:
                if self._pid == os.getpid():
                    client.close()
                else:
                    self._inherited.append(client)

    # -- events ------------------------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> None:
        """Append the events not seen within the dedup window, one Lua script per chunk of
        500, all chunks in one pipeline."""
        try:
            payload = [(e.id, e.to_json()) for e in events]
        except (TypeError, ValueError) as exc:
            raise SinkError(f"cannot encode event: {exc}", retryable=False) from exc
        client = self._client()
        if not payload:
            return
        prefix = self._dedup_prefix
        try:
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(payload), _CHUNK):
                chunk = payload[start : start + _CHUNK]
                self._script(
                    keys=[self.stream, *(prefix + ev_id for ev_id, _ in chunk)],
                    args=[self._dedup_ttl, self._maxlen, *(text for _, text in chunk)],
                    client=pipe,
                )
            pipe.execute()
        except self._redis.RedisError as exc:
            raise self._error(exc, "Redis write failed") from exc

    def _entries(self) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        """Every entry of the stream, oldest first, fetched _CHUNK at a time."""
        client = self._client()
        start = "-"
        while True:
            try:
                chunk = client.xrange(self.stream, min=start, max="+", count=_CHUNK)
            except self._redis.RedisError as exc:
                raise self._error(exc, "Redis read failed") from exc
            if not chunk:
                return
            yield from chunk
            start = "(" + chunk[-1][0].decode("ascii")

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Matching events in stream (arrival) order, scanned in chunks."""
        self._client()  # a closed sink fails here, not at the first next()
        return (
            event
            for _, fields in self._entries()
            if (event := parse_entry(fields)) is not None
            and matches(
                event, subject=subject, purpose=purpose, type=type, since=since, until=until
            )
        )

    def erase(self, subject: str) -> int:
        """Delete the subject's entries from the stream (``XDEL``); return how many.

        The dedup keys stay (they hold only the random event id): an erased event written
        again within the window is not stored again. Entries a relay already moved on are
        erased at its target, not here.
        """
        client = self._client()
        doomed = [
            entry_id
            for entry_id, fields in self._entries()
            if (event := parse_entry(fields)) is not None and matches(event, subject=subject)
        ]
        deleted = 0
        try:
            for start in range(0, len(doomed), _CHUNK):
                deleted += int(client.xdel(self.stream, *doomed[start : start + _CHUNK]))
        except self._redis.RedisError as exc:
            raise self._error(exc, "Redis erase failed") from exc
        return deleted


def parse_entry(fields: dict[bytes, bytes] | None) -> Event | None:
    """The event in a stream entry, or ``None`` if the entry is not one (deleted, foreign,
    garbled)."""
    raw = fields.get(_FIELD) if fields else None
    if raw is None:
        return None
    try:
        return Event.from_json(raw)
    except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
        return None


class StreamRelay:
    """Moves events from a Redis stream into another sink, at least once, without loss.

    Reads with a consumer group (``group``, created at the stream's start if missing), so
    several relays share the work, each as its own ``consumer``. An entry is acknowledged only
    after ``target.write`` returned; a relay that dies between the two leaves its entries
    pending, and they are delivered again, by the same consumer when it restarts or by
    another that claims entries idle for ``claim_idle_ms`` (``XAUTOCLAIM``). The target
    removes such duplicates by event id. Entries that are not events are acknowledged and
    counted (``malformed``). Events the target refuses for good (a non-retryable
    ``SinkError``) go, one by one, to the dead-letter stream ``<stream>:dead`` with the error,
    and are acknowledged.

    :attr:`stats` counts ``relayed``, ``claimed``, ``malformed``, ``dead_lettered`` and
    ``failures`` (target writes that failed and will be retried).
    """

    def __init__(
        self,
        source: RedisStreamSink,
        target: Sink,
        *,
        group: str = "consentmw",
        consumer: str | None = None,
        claim_idle_ms: int = 60_000,
        dead_letter: str | None = None,
    ) -> None:
        if not group:
            raise ConfigError("group", group, "name the consumer group")
        if claim_idle_ms < 0:
            raise ConfigError("claim_idle_ms", claim_idle_ms, "use 0 or more milliseconds")
        self._source = source
        self._target = target
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._claim_idle_ms = claim_idle_ms
        self._dead_letter = dead_letter or f"{source.stream}:dead"
        self._group_ready = False
        # Start by re-reading this consumer's own pending entries: after a crash or a failed
        # target write they were delivered but never acknowledged.
        self._recover = True
        self._claim_cursor: bytes | str = "0-0"
        self._stats = dict.fromkeys(
            ("relayed", "claimed", "malformed", "dead_lettered", "failures"), 0
        )

    @property
    def stats(self) -> dict[str, int]:
        """A copy of the counters."""
        return dict(self._stats)

    def _ensure_group(self, client: redis.Redis[bytes]) -> None:
        if self._group_ready:
            return
        try:
            client.xgroup_create(self._source.stream, self.group, id="0", mkstream=True)
        except self._source._redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def run_once(self, *, count: int = 500, block_ms: int | None = None) -> int:
        """Relay at most ``count`` entries; return how many events the target received.

        Looks first at this consumer's own unacknowledged entries, then at entries other
        consumers left idle too long, then at new ones, waiting up to ``block_ms`` for them
        (``None``: not at all). Raises ``SinkError`` when Redis or the target fails; the
        entries stay pending and come again at the next call.
        """
        return self._step(count, block_ms)[1]

    def _step(self, count: int, block_ms: int | None) -> tuple[int, int]:
        """One read and delivery: (entries handled, events delivered)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if block_ms is not None and block_ms < 1:
            raise ValueError("block_ms must be None or at least 1 (Redis reads 0 as forever)")
        redis_mod = self._source._redis
        client = self._source._client()
        try:
            try:
                entries = self._next_entries(client, count, block_ms)
            except redis_mod.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream (and its groups) was deleted under us: start again.
                self._group_ready = False
                entries = self._next_entries(client, count, block_ms)
            if not entries:
                return 0, 0
            return len(entries), self._deliver(client, entries)
        except redis_mod.RedisError as exc:
            self._recover = True
            raise SinkError(f"Redis relay failed: {exc}") from exc

    def _next_entries(
        self, client: redis.Redis[bytes], count: int, block_ms: int | None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        stream = self._source.stream
        self._ensure_group(client)
        if self._recover:
            entries = _only_stream(
                client.xreadgroup(self.group, self.consumer, {stream: "0"}, count=count)
            )
            if entries:
                return entries
            self._recover = False
        claimed = client.xautoclaim(
            stream,
            self.group,
            self.consumer,
            min_idle_time=self._claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = claimed[0]
        entries = list(claimed[1])
        if entries:
            self._stats["claimed"] += len(entries)
            return entries
        return _only_stream(
            client.xreadgroup(self.group, self.consumer, {stream: ">"}, count=count, block=block_ms)
        )

    def _deliver(
        self, client: redis.Redis[bytes], entries: list[tuple[bytes, dict[bytes, bytes]]]
    ) -> int:
        stream = self._source.stream
        ids: list[bytes] = []
        events: list[Event] = []
        bad: list[bytes] = []
        for entry_id, fields in entries:
            event = parse_entry(fields)
            if event is None:
                bad.append(entry_id)
            else:
                ids.append(entry_id)
                events.append(event)
        if bad:
            _xack(client, stream, self.group, bad)
            self._stats["malformed"] += len(bad)
            log.warning(
                "redis relay: acknowledged %d entries of %s that are not events (first %s)",
                len(bad),
                stream,
                bad[0].decode("ascii", "replace"),
            )
        if not events:
            return 0
        try:
            self._target.write(events)
        except SinkError as exc:
            self._stats["failures"] += 1
            if exc.retryable:
                self._recover = True
                raise
            self._isolate(client, ids, events)
            return len(events)
        _xack(client, stream, self.group, ids)
        self._stats["relayed"] += len(events)
        return len(events)

    def _isolate(self, client: redis.Redis[bytes], ids: list[bytes], events: list[Event]) -> None:
        """Write the events one at a time: the ones the target refuses for good go to the
        dead-letter stream; every one that is settled is acknowledged."""
        stream = self._source.stream
        for entry_id, event in zip(ids, events, strict=True):
            try:
                self._target.write([event])
            except SinkError as exc:
                if exc.retryable:
                    self._recover = True
                    raise
                client.xadd(
                    self._dead_letter,
                    {"event": event.to_json(), "error": str(exc)[:500], "entry": entry_id},
                )
                self._stats["dead_lettered"] += 1
                log.error(
                    "redis relay: the target refused event %s for good; moved to %s",
                    event.id,
                    self._dead_letter,
                )
            else:
                self._stats["relayed"] += 1
            _xack(client, stream, self.group, [entry_id])

    def run(
        self,
        stop: threading.Event,
        *,
        count: int = 500,
        block_ms: int = 1000,
        max_backoff: float = 30.0,
    ) -> None:
        """Relay until ``stop`` is set. Failures are logged and retried with a backoff that
        doubles from 0.5 s to ``max_backoff``; ``block_ms`` bounds how long ``stop`` can go
        unnoticed while the stream is idle (keep it under the client's socket timeout)."""
        backoff = 0.5
        while not stop.is_set():
            try:
                self.run_once(count=count, block_ms=block_ms)
            except SinkError as exc:
                log.warning("redis relay: %s; retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
            else:
                backoff = 0.5

    def drain(self, *, count: int = 500) -> int:
        """Relay until nothing is left to read; return how many events were delivered.

        For one-shot runs (a cron job, tests). Entries other consumers hold are left to them
        unless they have been idle for ``claim_idle_ms``.
        """
        total = 0
        while True:
            entries, delivered = self._step(count, None)
            if not entries:
                return total
            total += delivered


def _xack(client: redis.Redis[bytes], stream: str, group: str, ids: Sequence[bytes]) -> None:
    client.execute_command("XACK", stream, group, *ids)


def _only_stream(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an ``XREADGROUP`` reply for a single stream."""
    if not response:
        return []
    return list(response[0][1])


def relay(
    source_url: str,
    target_url: str,
    *,
    group: str = "consentmw",
    consumer: str | None = None,
    stop: threading.Event | None = None,
    count: int = 500,
    block_ms: int = 1000,
    claim_idle_ms: int = 60_000,
) -> dict[str, int]:
    """Relay events from the Redis stream ``source_url`` into the sink ``target_url`` until
    ``stop`` is set, or, with ``stop=None``, until the stream has nothing left; return the
    relay's :attr:`StreamRelay.stats`. What ``consentmw relay`` runs."""
    from . import open_sink

    if not source_url.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("source", source_url, "the relay reads a redis:// stream URL")
    source = RedisStreamSink.from_url(source_url)
    try:
        target = open_sink(target_url)
        try:
            worker = StreamRelay(
                source, target, group=group, consumer=consumer, claim_idle_ms=claim_idle_ms
            )
            if stop is None:
                worker.drain(count=count)
            else:
                worker.run(stop, count=count, block_ms=block_ms)
            return worker.stats
        finally:
            target.close()
    finally:
        source.close()

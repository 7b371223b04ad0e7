"""The dispatcher: takes events off the request thread and delivers every one of them.

The request thread only appends a small tuple to a bounded ``deque`` (no lock, no I/O, no
wake-up unless a batch is full). A background *router* thread drains it in batches, turns
the tuples into :class:`~consentmw.Event` objects (id, ISO timestamp), enriches them
(client IP, reverse DNS, user agent), redacts them (always last), and hands each batch to
one *writer* thread per sink, each with its own bounded queue, so a slow sink stalls no
other.

A writer retries a failing batch with exponential backoff and jitter. When a sink stays
down its batches go to the :class:`~consentmw.spool.Spool` (a local SQLite file) and are
replayed, oldest first, when it answers again; a batch that the sink rejects for good is
split in halves until the poison event is isolated in the dead-letter table. Nothing is
dropped silently: the one place events can be refused is the bounded queue itself (policy
``drop_newest`` by default, never blocking the request), and every refusal is counted in
:meth:`Dispatcher.stats`.

The threads start with the first event. After ``fork()`` the child starts its own threads
and forgets the parent's queue (the parent delivers those). At interpreter exit queued
events are flushed with a deadline.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .errors import SinkError
from .events import Event, RequestFacts, TimestampFormatter, format_ts, new_event_ids
from .sinks import Sink
from .spool import Spool

__all__ = ["Dispatcher", "RequestInfo", "safe_url"]

log = logging.getLogger("consentmw.dispatch")

EnrichFn = Callable[[Sequence[tuple[Event, RequestFacts | None]]], None]
RedactFn = Callable[[Event], Event]


class RequestInfo:
    """What the events of one request share, built once per request on the request thread."""

    __slots__ = (
        "aggregate",
        "email",
        "facts",
        "method",
        "path",
        "policy_version",
        "purposes",
        "referrer",
        "session_id",
        "visitor_id",
    )

    def __init__(
        self,
        *,
        policy_version: str,
        purposes: tuple[str, ...],
        aggregate: bool,
        visitor_id: str | None,
        session_id: str | None,
        method: str | None,
        path: str | None,
        referrer: str | None,
        email: str | None,
        facts: RequestFacts | None,
    ) -> None:
        self.policy_version = policy_version
        self.purposes = purposes
        self.aggregate = aggregate
        self.visitor_id = visitor_id
        self.session_id = session_id
        self.method = method
        self.path = path
        self.referrer = referrer
        self.email = email
        self.facts = facts


# A queued item: (type, name, epoch, props, info, status). A ready-made Event is queued as
# ("event", None, 0.0, event, None, None).
Item = tuple[str, "str | None", float, Any, "RequestInfo | None", "int | None"]

_RETRYABLE_ERRORS = (OSError, TimeoutError, ConnectionError)

#: How long the router waits for room in a sink's full backlog before spooling the batch.
_BACKLOG_WAIT = 0.5


def _digest(identifier: str) -> bytes:
    return hashlib.blake2b(
        identifier.lower().encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


def safe_url(url: str) -> str:
    """A sink URL fit for logs and stats: the password is replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    return f"{scheme}://{netloc}{slash}{tail}"


class _Counter:
    """A counter threads may bump without contention on the hot path.

    ``next()`` on an ``itertools.count`` is atomic under the GIL (``+=`` on an attribute is
    not); bulk additions, made by background threads only, take a lock.
    """

    __slots__ = ("_bulk", "_counter", "_lock")

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._bulk = 0
        self._lock = threading.Lock()

    def incr(self) -> None:
        next(self._counter)

    def add(self, n: int = 1) -> None:
        if n == 1:
            next(self._counter)
            return
        with self._lock:
            self._bulk += n

    @property
    def value(self) -> int:
        # repr(count(7)) is "count(7)": the next value, i.e. how many were taken.
        return int(repr(self._counter)[6:-1]) + self._bulk


class _Writer:
    """Delivers batches to one sink, in its own thread."""

    def __init__(self, owner: Dispatcher, name: str, sink: Sink) -> None:
        self.owner = owner
        self.name = name  # the URL (password hidden): spool rows and stats use it
        self.sink = sink
        self.batches: deque[list[Event]] = deque()
        self.cond = threading.Condition()
        # Signalled when the writer takes a batch: room in a full backlog (same lock).
        self.room = threading.Condition(self.cond._lock)  # type: ignore[attr-defined]
        self.busy = False
        self.down = False
        self.healthy = True  # the last write succeeded
        self.replay_pending = True  # look at the spool once at start
        self.next_probe = 0.0
        self.failures = 0
        self.thread: threading.Thread | None = None
        self.written = 0
        self.retried = 0
        self.spooled = 0
        self.replayed = 0
        self.dead = 0
        self.last_error: str | None = None

    # -- called by the router

    def submit(self, events: list[Event]) -> None:
        owner = self.owner
        limit = owner.max_batches_per_sink
        with self.cond:
            if len(self.batches) >= limit and self.healthy:
                # A sink that keeps up but more slowly than events arrive: wait a little for
                # room rather than spool a batch that is about to be written anyway (the spool
                # costs a serialisation and a replay per event). Not while the request-side
                # queue is filling up (it would start refusing events), not while the sink
                # fails, nor for long: a sink that takes longer is slow or stuck, and its
                # batches go to disk.
                deadline = time.monotonic() + _BACKLOG_WAIT
                while (
                    len(self.batches) >= limit
                    and self.healthy
                    and not owner.stopping.is_set()
                    and not owner.queue_pressed()
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.room.wait(min(left, 0.01))
            if len(self.batches) >= limit:
                # A slow or stuck sink: keep the batch on disk rather than in memory.
                spill = True
            else:
                spill = False
                self.batches.append(events)
                self.cond.notify()
        if spill:
            self._spool(events, "backlog")

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.run, name=f"consentmw-writer-{self.name[:40]}", daemon=True
        )
        self.thread.start()

    def idle(self) -> bool:
        return not self.batches and not self.busy

    # -- the thread

    def run(self) -> None:
        owner = self.owner
        while True:
            with self.cond:
                while not self.batches and not owner.stopping.is_set():
                    timeout = None
                    if self.down or self.replay_pending:
                        timeout = max(0.0, self.next_probe - time.monotonic())
                        if timeout == 0.0:
                            break
                    self.cond.wait(timeout)
                batch = self.batches.popleft() if self.batches else None
                self.busy = batch is not None
                if batch is not None:
                    self.room.notify()
            try:
                if batch is not None:
                    if self.down:
                        self._spool(batch, "sink down")
                    else:
                        self._deliver(batch, final=owner.stopping.is_set())
                if (self.down or self.replay_pending) and time.monotonic() >= self.next_probe:
                    self._replay(final=owner.stopping.is_set())
            except Exception:  # the writer must survive anything a sink or the spool throws
                log.exception("consentmw writer for %s failed", self.name)
                if batch is not None:
                    self._spool(batch, "writer error")
                self.next_probe = time.monotonic() + self.owner.backoff(0)
            finally:
                with self.cond:
                    self.busy = False
                owner.progress()
            if owner.stopping.is_set() and not self.batches:
                return

    def _write(self, events: Sequence[Event]) -> int:
        """Write ``events`` (less any erased since they were queued); how many went in."""
        owner = self.owner
        if owner._forgotten:
            kept = [e for e in events if not owner.forgotten(e)]
            if len(kept) != len(events):
                owner.dropped("erased", len(events) - len(kept))
                events = kept
            if not events:
                return 0
        try:
            self.sink.write(events)
        except SinkError:
            self.healthy = False
            raise
        except _RETRYABLE_ERRORS as exc:
            self.healthy = False
            raise SinkError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except Exception as exc:
            self.healthy = False
            raise SinkError(f"{type(exc).__name__}: {exc}", retryable=False) from exc
        self.healthy = True
        return len(events)

    def _deliver(self, batch: list[Event], *, final: bool) -> None:
        attempts = 1 if final else self.owner.max_retries + 1
        for attempt in range(attempts):
            try:
                written = self._write(batch)
            except SinkError as exc:
                self.last_error = str(exc)[:200]
                if not exc.retryable:
                    self._isolate(batch, str(exc))
                    return
                if attempt + 1 < attempts:
                    self.retried += 1
                    self.owner.retried.add()
                    if self.owner.stopping.wait(self.owner.backoff(attempt)):
                        break
                continue
            self._ok(written)
            return
        self._spool(batch, "sink down")
        self._mark_down()

    def _ok(self, n: int) -> None:
        self.written += n
        self.owner.written.add(n)
        self.failures = 0

    def _mark_down(self) -> None:
        if not self.down:
            log.warning("consentmw sink %s is down; spooling its events", self.name)
        self.down = True
        self.failures += 1
        self.next_probe = time.monotonic() + self.owner.backoff(self.failures - 1)

    def _isolate(self, batch: list[Event], error: str) -> None:
        """Split a rejected batch until the events the sink refuses are alone; those go to
        the dead-letter table, the rest is written."""
        if len(batch) == 1:
            self.owner.spool.dead_letter(self.name, batch, error)
            self.dead += 1
            self.owner.dead_lettered.add()
            log.error(
                "consentmw sink %s rejected event %s: %s", self.name, batch[0].id, error[:200]
            )
            return
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            try:
                written = self._write(half)
            except SinkError as exc:
                if exc.retryable:
                    self._spool(half, "sink down")
                    self._mark_down()
                else:
                    self._isolate(half, str(exc))
                continue
            self._ok(written)

    def _spool(self, batch: Sequence[Event], reason: str) -> None:
        try:
            self.owner.spool.put(self.name, batch)
        except Exception:
            log.exception("consentmw could not spool %d events for %s", len(batch), self.name)
            self.owner.dropped("spool_failed", len(batch))
            return
        self.spooled += len(batch)
        self.owner.spooled.add(len(batch))
        self.replay_pending = True

    def _replay(self, *, final: bool) -> None:
        """Replay the spool into the sink, oldest first, while it answers."""
        spool = self.owner.spool
        while True:
            rows = spool.take(self.name, self.owner.batch_size)
            if not rows:
                self.replay_pending = False
                if self.down:
                    log.warning("consentmw sink %s is back", self.name)
                self.down = False
                self.failures = 0
                return
            events = [e for _, e in rows]
            try:
                written = self._write(events)
            except SinkError as exc:
                self.last_error = str(exc)[:200]
                if exc.retryable:
                    self._mark_down()
                    return
                self._isolate(events, str(exc))
                spool.ack([s for s, _ in rows])
                continue
            spool.ack([s for s, _ in rows])
            self.replayed += written
            self.owner.replayed.add(written)
            self.written += written
            self.owner.written.add(written)
            if final or self.batches:
                # Let fresh batches through between replay chunks; come back at once.
                self.next_probe = 0.0
                return

    def stats(self) -> dict[str, Any]:
        return {
            "written": self.written,
            "retried": self.retried,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dead_lettered": self.dead,
            "down": self.down,
            "queued_batches": len(self.batches),
            "last_error": self.last_error,
        }


class Dispatcher:
    """Background delivery of events to sinks. See the module docstring."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        *,
        site: str,
        spool: Spool,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        queue_size: int = 10000,
        when_full: str = "drop_newest",
        max_retries: int = 5,
        retry_base: float = 0.2,
        retry_max: float = 30.0,
        close_timeout: float = 5.0,
        enrich: EnrichFn | None = None,
        redact: RedactFn | None = None,
        rng: Callable[[], float] = random.random,
        consent_log: tuple[str, Any] | None = None,
    ) -> None:
        self.site = site
        self._consent_log = consent_log
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_size = queue_size
        self.when_full = when_full
        self.max_retries = max_retries
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.close_timeout = close_timeout
        self.max_batches_per_sink = max(2, queue_size // batch_size + 1)
        self._sinks = dict(sinks)
        self._enrich = enrich
        self._redact = redact
        self._rng = rng
        self._closed = False
        # Erased identifiers (digests) and when: events about them collected up to then are
        # not written any more.
        self._forgotten: dict[bytes, str] = {}
        self._init_state()
        ref = weakref.ref(self)

        def _child() -> None:
            d = ref()
            if d is not None:
                d._after_fork()

        def _exit() -> None:
            d = ref()
            if d is not None and not d._closed:
                d.close(d.close_timeout)

        os.register_at_fork(after_in_child=_child)
        self._atexit = _exit
        atexit.register(_exit)

    def _init_state(self) -> None:
        self.queue: deque[Item] = deque()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._progress = threading.Condition()
        self._router: threading.Thread | None = None
        self._routing = False
        self._pid = os.getpid()
        self._writers = [_Writer(self, safe_url(url), sink) for url, sink in self._sinks.items()]
        self.enqueued = _Counter()
        self.written = _Counter()
        self.retried = _Counter()
        self.spooled = _Counter()
        self.replayed = _Counter()
        self.dead_lettered = _Counter()
        self._dropped: dict[str, _Counter] = {}
        self._enrich_errors = _Counter()
        self._fmt = TimestampFormatter()
        self._consent_pending = True  # look at the consent spool once at start
        self._consent_next_try = 0.0
        self._consent_failures = 0

    def _after_fork(self) -> None:
        # The parent delivers what it queued; the child starts empty, with fresh locks and
        # its own threads and connections (started with its first event). The spool
        # handles its own connection at fork.
        self._init_state()

    # -- the request path

    def enqueue(self, item: Item) -> bool:
        """Queue one item; ``False`` (counted) when the queue is full. Never does I/O."""
        queue = self.queue
        if len(queue) >= self.queue_size and not self._wait_for_room():
            return False
        queue.append(item)
        self.enqueued.incr()
        if self._router is None:
            self._start()
        if len(queue) == self.batch_size:
            self.wake.set()
        return True

    def enqueue_event(self, event: Event) -> bool:
        """Queue a ready-made event (its id and timestamp are kept)."""
        return self.enqueue(("event", None, 0.0, event, None, None))

    def _wait_for_room(self) -> bool:
        if self.when_full == "block" and not self._closed:
            self.wake.set()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                with self._progress:
                    self._progress.wait(0.01)
                if len(self.queue) < self.queue_size:
                    return True
            self.dropped("block_timeout")
            return False
        self.dropped("queue_full")
        return False

    def queue_pressed(self) -> bool:
        """Is the request-side queue more than half full under ``drop_newest`` (so that
        holding the router back would soon make it refuse events)?"""
        return self.when_full != "block" and len(self.queue) * 2 >= self.queue_size

    def dropped(self, reason: str, n: int = 1) -> None:
        counter = self._dropped.get(reason)
        if counter is None:
            counter = self._dropped.setdefault(reason, _Counter())
        counter.add(n)

    # -- the threads

    def _start(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():  # pragma: no cover - register_at_fork handles it
                self._after_fork()
            if self._router is not None or self._closed:
                return
            for writer in self._writers:
                writer.start()
            router = threading.Thread(target=self._route, name="consentmw-router", daemon=True)
            self._router = router
            router.start()

    def start(self) -> None:
        """Start the threads now (they otherwise start with the first event), e.g. to
        replay a spool left by an earlier process."""
        if self._router is None:
            self._start()

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: ``base * 2**attempt``, capped, times 0.5 to 1."""
        delay = min(self.retry_max, self.retry_base * (2 ** min(attempt, 30)))
        return float(delay * (0.5 + self._rng() / 2))

    def progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _route(self) -> None:
        queue = self.queue
        while True:
            if len(queue) < self.batch_size and not self.stopping.is_set():
                self.wake.wait(self.flush_interval)
            self.wake.clear()
            self._routing = True
            if self._consent_pending and time.monotonic() >= self._consent_next_try:
                self._replay_consent()
            try:
                while queue:
                    n = min(len(queue), self.batch_size)
                    items = [queue.popleft() for _ in range(n)]
                    try:
                        events = self._prepare(items)
                    except Exception:
                        # Not one event of the batch could be built: each is counted.
                        log.exception("consentmw could not prepare a batch of events")
                        self.dropped("prepare_failed", len(items))
                        continue
                    if events:
                        for writer in self._writers:
                            writer.submit(events)
            finally:
                self._routing = False
                self.progress()
            if self.stopping.is_set() and not queue:
                for writer in self._writers:
                    with writer.cond:
                        writer.cond.notify()
                return

    def spool_consent(self, record: Any) -> None:
        """Keep a consent-log record that could not be written now; the router appends it
        to the consent log when the log answers again (``append_consent`` is idempotent)."""
        if self._consent_log is None:
            return
        self.spool.put_consent(self._consent_log[0], record)
        self._consent_pending = True
        if self._router is None:
            self._start()

    def _replay_consent(self) -> None:
        if self._consent_log is None:
            self._consent_pending = False
            return
        name, sink = self._consent_log
        try:
            rows = self.spool.take_consent(name, 100)
            while rows:
                for seq, record in rows:
                    sink.append_consent(record)
                    self.spool.ack_consent([seq])
                rows = self.spool.take_consent(name, 100)
        except Exception as exc:
            self._consent_failures += 1
            self._consent_next_try = time.monotonic() + self.backoff(self._consent_failures - 1)
            log.warning("consentmw: the consent log %s is still failing: %s", name, exc)
            return
        self._consent_pending = False
        self._consent_failures = 0

    def _prepare(self, items: list[Item]) -> list[Event]:
        ids = new_event_ids(len(items))
        fmt = self._fmt
        site = self.site
        pairs: list[tuple[Event, RequestFacts | None]] = []
        for i, (kind, name, ts, props, info, status) in enumerate(items):
            if kind == "event":
                pairs.append((props, None))
                continue
            assert info is not None
            event = Event(
                ids[i],
                kind,
                name,
                fmt(ts),
                site,
                info.policy_version,
                info.purposes,
                info.aggregate,
                info.visitor_id,
                info.session_id,
                info.method,
                info.path,
                status,
                info.referrer,
                None,
                None,
                info.email,
                None,
                None,
                props,
            )
            pairs.append((event, info.facts))
        if self._enrich is not None:
            try:
                self._enrich(pairs)
            except Exception:
                # Enrichment is best effort; redaction below is not.
                log.exception("consentmw enrichment failed for a batch")
                self._enrich_errors.add()
        out: list[Event] = []
        redact = self._redact
        for event, _ in pairs:
            if redact is not None:
                try:
                    event = redact(event)
                except Exception:
                    log.exception("consentmw redaction failed; event %s dead-lettered", event.id)
                    self.spool.dead_letter("(redaction)", [event.id], "redaction failed")
                    self.dead_lettered.add()
                    continue
            out.append(event)
        return out

    # -- control

    def pending(self) -> int:
        """Events queued or in flight (not yet written, spooled or dead-lettered)."""
        n = len(self.queue)
        for writer in self._writers:
            n += sum(len(b) for b in list(writer.batches))
        return n

    def _settled(self) -> bool:
        return not self.queue and not self._routing and all(w.idle() for w in self._writers)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written or spooled; ``False`` on timeout."""
        if self._pid != os.getpid():
            self._after_fork()
        if self._router is None:
            if not self.queue:
                return True
            self._start()
        deadline = time.monotonic() + timeout
        self.wake.set()
        with self._progress:
            while not self._settled():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.wake.set()
                self._progress.wait(min(left, 0.05))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush with a deadline, then stop the threads. What is still in memory at the
        deadline is spooled (a later process replays it). ``True`` if everything settled."""
        if self._closed:
            return True
        timeout = self.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        ok = self.flush(max(0.0, timeout * 0.8))
        self._closed = True
        self.stopping.set()
        self.wake.set()
        for writer in self._writers:
            with writer.cond:
                writer.cond.notify_all()
        threads = [w.thread for w in self._writers] + [self._router]
        for thread in threads:
            if thread is not None and thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        leftovers = self._drain_leftovers()
        if leftovers:
            ok = False
        try:
            atexit.unregister(self._atexit)
        except Exception:  # pragma: no cover - interpreter shutting down
            log.debug("atexit unregister failed", exc_info=True)
        return ok and not leftovers

    def _drain_leftovers(self) -> int:
        """Spool what no thread delivered before the deadline."""
        n = 0
        if self.queue:
            items = list(self.queue)
            self.queue.clear()
            events = self._prepare(items)
            for writer in self._writers:
                writer.batches.append(events)
        for writer in self._writers:
            while writer.batches:
                batch = writer.batches.popleft()
                writer._spool(batch, "closing")
                n += len(batch)
        return n

    def stats(self) -> dict[str, Any]:
        """Counters: ``enqueued``, ``written`` (summed over sinks), ``retried``,
        ``spooled``, ``replayed``, ``dead_lettered``, ``dropped`` (by reason), ``queued``,
        ``spool_rows``, and per sink under ``sinks``."""
        try:
            spool_rows = self.spool.count()
        except Exception:
            spool_rows = -1
        return {
            "enqueued": self.enqueued.value,
            "written": self.written.value,
            "retried": self.retried.value,
            "spooled": self.spooled.value,
            "replayed": self.replayed.value,
            "dead_lettered": self.dead_lettered.value,
            "dropped": {k: c.value for k, c in sorted(self._dropped.items())},
            "enrich_errors": self._enrich_errors.value,
            "queued": len(self.queue),
            "spool_rows": spool_rows,
            "sinks": {w.name: w.stats() for w in self._writers},
        }

    def forget(self, identifiers: Iterable[str], *, until: str | None = None) -> None:
        """Drop events about these identifiers (visitor ids, e-mail addresses) collected up
        to ``until`` (an ISO timestamp, default now) when they would be written, in this
        process: still queued, in a writer's hands or in the spool (counted as
        ``dropped["erased"]``). An erasure calls it first, so nothing collected before it
        lands after the sinks were cleared; what the visitor does afterwards, with consent,
        is recorded as usual. Only digests of the identifiers are kept."""
        stamp = until or format_ts(time.time())
        forgotten = dict(self._forgotten)
        for identifier in identifiers:
            if identifier:
                forgotten[_digest(identifier)] = stamp
        self._forgotten = forgotten

    def forgotten(self, event: Event) -> bool:
        """Was ``event`` collected before an erasure of its visitor id or e-mail address?"""
        forgotten = self._forgotten
        if not forgotten:
            return False
        for identifier in (event.visitor_id, event.email):
            if identifier is not None:
                until = forgotten.get(_digest(identifier))
                if until is not None and event.ts <= until:
                    return True
        return False

    def erase_pending(self, match: Callable[[Event], bool]) -> int:
        """Remove queued events (already prepared, waiting for a writer) that ``match``."""
        n = 0
        for writer in self._writers:
            with writer.cond:
                kept: deque[list[Event]] = deque()
                for batch in writer.batches:
                    rest = [e for e in batch if not match(e)]
                    n += len(batch) - len(rest)
                    if rest:
                        kept.append(rest)
                writer.batches = kept
        return n

    def writers(self) -> Iterable[tuple[str, Sink]]:
        return [(w.name, w.sink) for w in self._writers]

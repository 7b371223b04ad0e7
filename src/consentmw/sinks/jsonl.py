"""``jsonl://``: events as JSON Lines in a plain file, one :meth:`Event.to_json` per line.

For a small site, an audit trail you read with ``jq``, or for handing events to another tool
(log shippers tail such files). Several processes on one machine may append to the same file:
an ``flock`` serialises them, and each process catches up with the lines the others wrote
before appending, so writes stay idempotent by event id across processes. Queries, erasure and
reports read the file from the start, which is fine for thousands to a few million events;
beyond that use ``sqlite://``. Do not put the file on a network file system (``flock`` may not
lock there).

Files: ``<path>`` (events), ``<path>.consent.jsonl`` (the consent log) and ``<path>.lock``
(the lock both share; never replaced, so it stays valid while erasure replaces the others).
Files are created ``0600``: they hold personal data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit

from ..consentlog import GENESIS_HASH, ConsentRecord, seal
from ..errors import ConfigError, SinkError
from ..events import Event
from ._base import AggregateRow
from ._filters import aggregate_keys, check_aggregate_keys, check_rectify, matches
from ._forksafe import ProcessLock

__all__ = ["FSYNC_MODES", "JsonlSink"]

log = logging.getLogger(__name__)

#: ``always``: fsync after every event; ``batch``: once per ``write`` call; ``never``: leave it
#: to the operating system (a crash of the machine may lose the last seconds).
FSYNC_MODES = ("always", "batch", "never")

_ID_PREFIX = b'{"id":"'
_MODE = 0o600


class _Tail:
    """What this process knows about one append-only file: the descriptor it appends with,
    how far it has read, and the ids (and last line) seen so far.

    Only touched with the sink's thread lock and the file lock held.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.ino = -1
        self.scanned = 0
        self.ids: set[str] = set()
        self.last: bytes | None = None
        self.malformed = 0

    def reset(self) -> None:
        self.close()
        self.scanned = 0
        self.ids = set()
        self.last = None
        self.malformed = 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.ino = -1

    def sync(self) -> None:
        """Open (or reopen, if the file was replaced) and read what others appended."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if self.fd is None or st is None or st.st_ino != self.ino:
            self.reset()
            self.fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _MODE
            )
            self.ino = os.fstat(self.fd).st_ino
            size = os.fstat(self.fd).st_size
        else:
            size = st.st_size
        if size < self.scanned:  # truncated behind our back: start over
            self.ids = set()
            self.scanned = 0
            self.last = None
        if size > self.scanned:
            self._scan(size)

    def _scan(self, size: int) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self.scanned)
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                self.scanned += len(line)
                ev_id = _line_id(line)
                if ev_id is None:
                    self.malformed += 1
                    continue
                self.ids.add(ev_id)
                self.last = line
        if self.scanned < size:
            # A line without its newline: a writer died mid-line, and the lock we hold means
            # no one is writing now. End it, so the next line is not glued onto it; readers
            # skip it as malformed.
            assert self.fd is not None
            _write_all(self.fd, b"\n")
            self.scanned = size + 1
            self.malformed += 1
            log.warning("jsonl sink: ended a torn line in %s", self.path)

    def append(self, lines: Sequence[bytes], fsync: str) -> None:
        assert self.fd is not None
        if fsync == "always":
            for line in lines:
                _write_all(self.fd, line)
                os.fsync(self.fd)
        else:
            _write_all(self.fd, b"".join(lines))
            if fsync == "batch":
                os.fsync(self.fd)
        self.scanned += sum(len(line) for line in lines)
        self.last = lines[-1]


class JsonlSink:
    """Events in a JSON Lines file; thread-, process- and fork-safe.

    ``fsync`` is one of :data:`FSYNC_MODES` (default ``batch``). Files and descriptors open
    lazily and are reopened in a forked child. Supports query, erase, rectify and aggregate by
    reading the file (streamed, never loaded whole), and the consent log in a sibling file.
    ``query`` returns events in the order they were written.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: str = "batch") -> None:
        self._path = os.fspath(path)
        if not self._path:
            raise ConfigError("sinks", path, "give the file, e.g. jsonl:///var/log/events.jsonl")
        if fsync not in FSYNC_MODES:
            raise ConfigError("fsync", fsync, f"use one of {', '.join(FSYNC_MODES)}")
        self._fsync = fsync
        self._lock = ProcessLock()
        self._pid = 0
        self._lock_fd: int | None = None
        self._events = _Tail(self._path)
        self._consent = _Tail(self._path + ".consent.jsonl")
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> JsonlSink:
        """``jsonl:///rel/events.jsonl`` or ``jsonl:////abs/events.jsonl``; ``?fsync=``."""
        from . import url_path

        for key, value in parse_qsl(urlsplit(url).query):
            if key != "fsync":
                raise ConfigError("sinks", url, f"unknown JSON Lines option {key!r}")
            options.setdefault("fsync", value)
        return cls(url_path(url), **options)

    def __repr__(self) -> str:
        return f"<JsonlSink {self._path!r} fsync={self._fsync}>"

    @property
    def malformed_lines(self) -> int:
        """Lines this process skipped because they were not events (torn or edited)."""
        return self._events.malformed

    # -- locking -----------------------------------------------------------------------------

    def _guard(self) -> threading.Lock:
        return self._lock.get()

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """The thread lock and the file lock, with this process's descriptors ready."""
        with self._guard():
            if self._closed:
                raise SinkError("JSON Lines sink is closed", retryable=False)
            try:
                self._prepare()
                assert self._lock_fd is not None
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise SinkError(f"cannot lock {self._path!r}: {exc}") from exc
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _prepare(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        if self._pid:
            # A forked child: the inherited descriptors share the parent's open file
            # descriptions, and an flock taken through them would be the parent's lock, so it
            # would not exclude the parent. Closing our copies leaves the parent's intact.
            self._close_files()
        os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
        self._lock_fd = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)
        self._pid = pid

    def _close_files(self) -> None:
        self._events.reset()
        self._consent.reset()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        """Close the files; idempotent. Writing afterwards raises ``SinkError``."""
        with self._guard():
            self._closed = True
            self._close_files()
            self._pid = 0

    # -- events ------------------------------------------------------------------------------

    def write(self, events: Sequence[Event]) -> None:
        """Append the events whose ids are not in the file yet, then fsync as configured."""
        try:
            encoded = [(e.id, (e.to_json() + "\n").encode("utf-8")) for e in events]
        except (TypeError, ValueError) as exc:
            raise SinkError(f"cannot encode event: {exc}", retryable=False) from exc
        with self._exclusive():
            tail = self._events
            try:
                tail.sync()
                fresh: list[bytes] = []
                ids = tail.ids
                added: list[str] = []
                for ev_id, line in encoded:
                    if ev_id not in ids:
                        ids.add(ev_id)
                        added.append(ev_id)
                        fresh.append(line)
                if not fresh:
                    return
                try:
                    tail.append(fresh, self._fsync)
                except OSError:
                    ids.difference_update(added)
                    # What reached the file is unknown: read it again before the next write.
                    tail.reset()
                    raise
            except OSError as exc:
                raise SinkError(f"cannot write {self._path!r}: {exc}") from exc

    def query(
        self,
        *,
        subject: str | None = None,
        purpose: str | None = None,
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[Event]:
        """Matching events in file order, read line by line."""
        self._check_open()
        needles: tuple[bytes, ...] = ()
        if subject is not None:
            # A line about the subject holds its JSON encoding (to_json escapes the same way),
            # so most lines are skipped without being parsed.
            needles = (_json_bytes(subject), _json_bytes(subject.lower()))
        filters = {
            "subject": subject,
            "purpose": purpose,
            "type": type,
            "since": since,
            "until": until,
        }
        return self._scan_events(needles, lambda e: matches(e, **filters))

    def _scan_events(
        self, needles: tuple[bytes, ...], keep: Callable[[Event], bool]
    ) -> Iterator[Event]:
        for line in _lines(self._path):
            if needles and not any(n in line for n in needles):
                continue
            event = _parse_event(line)
            if event is not None and keep(event):
                yield event

    def _check_open(self) -> None:
        if self._closed:
            raise SinkError("JSON Lines sink is closed", retryable=False)

    def erase(self, subject: str) -> int:
        """Rewrite the file without the subject's events; return how many were removed."""

        def drop(event: Event) -> Event | None:
            return None

        return self._rewrite(subject, drop)

    def rectify(self, subject: str, changes: Mapping[str, str | None]) -> int:
        """Rewrite the file with identifier fields changed on the subject's events; return how
        many events are about the subject."""
        check_rectify(changes)

        def change(event: Event) -> Event | None:
            for key, value in changes.items():
                setattr(event, key, value)
            return event

        return self._rewrite(subject, change)

    def _rewrite(self, subject: str, edit: Callable[[Event], Event | None]) -> int:
        """Copy the file through ``edit`` (applied to the subject's events; ``None`` drops the
        event) into a temporary file that then replaces the original atomically. Returns how
        many events were about the subject. Lines it cannot parse are kept as they are."""
        directory = os.path.dirname(os.path.abspath(self._path))
        needles = (_json_bytes(subject), _json_bytes(subject.lower()))
        with self._exclusive():
            try:
                self._events.sync()
                fd, tmp = tempfile.mkstemp(prefix=".cmw-", suffix=".tmp", dir=directory)
                count = 0
                try:
                    with os.fdopen(fd, "wb") as out:
                        for line in _lines(self._path):
                            event = None
                            if any(n in line for n in needles):
                                event = _parse_event(line)
                            if event is None or not matches(event, subject=subject):
                                out.write(line)
                                continue
                            count += 1
                            edited = edit(event)
                            if edited is not None:
                                out.write((edited.to_json() + "\n").encode("utf-8"))
                        out.flush()
                        os.fsync(out.fileno())
                    if count:
                        os.replace(tmp, self._path)
                        _fsync_dir(directory)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                # Other processes notice the new inode at their next write; this one re-reads.
                self._events.reset()
                return count
            except OSError as exc:
                raise SinkError(f"cannot rewrite {self._path!r}: {exc}") from exc

    def aggregate(
        self,
        *,
        by: Sequence[str],
        type: str | None = None,  # the event field's name
        since: str | None = None,
        until: str | None = None,
    ) -> list[AggregateRow]:
        """Counts grouped by ``by``, one pass over the file holding only the counters."""
        check_aggregate_keys(by)
        self._check_open()
        counts: Counter[tuple[str | None, ...]] = Counter()
        for event in self._scan_events(
            (), lambda e: matches(e, type=type, since=since, until=until)
        ):
            counts[aggregate_keys(event, by)] += 1
        return [
            AggregateRow(keys, n)
            for keys, n in sorted(counts.items(), key=lambda kv: tuple(k or "" for k in kv[0]))
        ]

    # -- consent log -------------------------------------------------------------------------

    def append_consent(self, record: ConsentRecord) -> ConsentRecord:
        """Seal ``record`` after the last line of the consent file and append it, under the
        file lock so appends from other processes cannot fork the chain."""
        with self._exclusive():
            tail = self._consent
            try:
                tail.sync()
                if record.id in tail.ids:
                    for existing in _consent_lines(tail.path):
                        if existing.id == record.id:
                            return existing
                head = GENESIS_HASH
                if tail.last is not None:
                    head = ConsentRecord.from_dict(json.loads(tail.last)).hash
                sealed = seal(record, head)
                line = json.dumps(sealed.to_dict(), separators=(",", ":")) + "\n"
                # The consent log is the proof of consent: always on disk before returning.
                tail.append([line.encode("utf-8")], "always")
                tail.ids.add(sealed.id)
                return sealed
            except OSError as exc:
                raise SinkError(f"cannot append to {tail.path!r}: {exc}") from exc

    def consent_records(self, *, subject: str | None = None) -> Iterator[ConsentRecord]:
        """Records in log (file) order, optionally only those of one subject."""
        self._check_open()
        return (
            r for r in _consent_lines(self._consent.path) if subject is None or r.subject == subject
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; some file systems refuse fsync on directories.
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("jsonl sink: fsync of directory %s failed: %s", directory, exc)
    finally:
        os.close(fd)


def _json_bytes(text: str) -> bytes:
    return json.dumps(text).encode("utf-8")


def _line_id(line: bytes) -> str | None:
    """The event id of a line, without parsing it when it has the shape to_json writes."""
    if line.startswith(_ID_PREFIX):
        end = line.find(b'"', len(_ID_PREFIX))
        candidate = line[len(_ID_PREFIX) : end]
        if end > 0 and b"\\" not in candidate:
            return candidate.decode("utf-8", "replace")
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return str(data["id"])
    return None


def _lines(path: str) -> Iterator[bytes]:
    """Complete lines of ``path``; a missing file has none. The handle closes when the
    iteration ends or the generator is dropped."""
    try:
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SinkError(f"cannot read {path!r}: {exc}") from exc
    try:
        for line in fh:
            if line.endswith(b"\n"):  # a line still being written is not read yet
                yield line
    finally:
        fh.close()


def _parse_event(line: bytes) -> Event | None:
    try:
        return Event.from_json(line)
    except ValueError:  # includes JSONDecodeError
        return None


def _consent_lines(path: str) -> Iterator[ConsentRecord]:
    for line in _lines(path):
        try:
            yield ConsentRecord.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue

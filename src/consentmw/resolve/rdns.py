"""The visitor's domain, by forward-confirmed reverse DNS, off the request path.

The policy says the site "recognizes the consumer's domain name where possible". The only
source of a domain for an address is its PTR record, which the owner of the address block
writes and anyone can fake for their own block (a PTR of ``crawl.googlebot.com`` costs
nothing). So a name is *verified* only when it is forward-confirmed: the PTR name's A (or
AAAA) records contain the address again. The stored domain is the registrable domain
(``crawl-66-249-66-1.googlebot.com`` → ``googlebot.com``), which names the organisation
without re-identifying the address the way a full host name like ``host-203-0-113-7.isp.net``
would.

:class:`ReverseResolver` runs lookups on a small pool of threads with a hard deadline per
lookup, a bounded queue, and positive and negative caches, so that a slow or hostile DNS
server costs the dispatcher at most the batch deadline it chose and never a blocked
thread. Private, loopback, link-local and reserved addresses are never looked up. PTR
answers are validated as host names before anything is stored.

dnspython and publicsuffixlist are the ``dns`` extra (``pip install 'consentmw[dns]'``).
Do not use this module on the request thread (even a cached answer takes a lock), or to
make access decisions (a PTR name is chosen by the address owner).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["VERIFY_MODES", "DomainResult", "ReverseResolver", "normalize_hostname"]

log = logging.getLogger(__name__)

#: Values of ``ReverseResolver(verify=...)``.
VERIFY_MODES = ("forward", "unverified", "off")

#: The counters :meth:`ReverseResolver.stats` reports.
STAT_KEYS = (
    "lookups",
    "ok",
    "unverified",
    "nxdomain",
    "timeout",
    "invalid_ptr",
    "error",
    "skipped_private",
    "skipped_invalid",
    "skipped_busy",
    "cache_hit",
)

# At most this many PTR names of one address are checked (an address may have several; a
# hostile zone may return hundreds).
_MAX_PTR_NAMES = 4
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class DomainResult:
    """What reverse DNS found for one address.

    ``hostname`` is the PTR name (validated, lower case, IDNA A-labels, no trailing dot),
    ``domain`` its registrable domain (or the host name itself when reduction is off or
    unavailable), ``verified`` whether the name's forward records contain the address.
    """

    hostname: str
    domain: str
    verified: bool


def normalize_hostname(text: str) -> str | None:
    """A host name in canonical form (lower case, no trailing dot), or ``None``.

    Valid: at most 253 characters, at least two labels of 1-63 letters, digits and hyphens
    (no hyphen at either end), ``xn--`` labels that decode as IDNA, a top-level label that
    is not all digits. Everything else (``<script>``, CR/LF, spaces, underscores, a
    300-character name, an address written as a name) gives ``None``.
    """
    if not isinstance(text, str) or len(text) > 254:
        return None
    if text.endswith("."):
        text = text[:-1]
    return _join_labels(text.split("."))


def _join_labels(labels: Sequence[str | bytes]) -> str | None:
    if len(labels) < 2:
        return None
    out = []
    for raw in labels:
        if isinstance(raw, bytes):
            # Wire-format labels may hold any byte, dots included: validate each one as it
            # is, never a re-split text form.
            if not raw.isascii():
                return None
            raw = raw.decode("ascii")
        label = raw.lower()
        if not _LABEL_RE.fullmatch(label):
            return None
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return None
        out.append(label)
    if out[-1].isdigit():
        return None
    name = ".".join(out)
    return name if len(name) <= 253 else None


class ReverseResolver:
    """Forward-confirmed reverse DNS with caches, a worker pool and hard deadlines.

    Configuration (keyword arguments, read once):

    ``nameservers`` / ``port``
        the DNS servers to ask; ``None`` uses the system's (``/etc/resolv.conf``).
    ``timeout``
        the hard deadline of one lookup, PTR and forward queries together, in seconds.
    ``max_concurrency`` / ``max_pending``
        worker threads (lookups in flight at once) and queued addresses; an address
        submitted while the queue is full is skipped and counted (``skipped_busy``).
    ``positive_ttl`` / ``negative_ttl`` / ``cache_size``
        how long a found name and a failure are remembered, and how many addresses; the
        caches use ``clock`` (:func:`time.monotonic` unless a test injects one).
    ``verify``
        ``"forward"`` keeps only forward-confirmed names; ``"unverified"`` keeps the others
        too, with ``verified=False``; ``"off"`` skips the forward queries (every result is
        unverified).
    ``registrable``
        reduce names to their registrable domain with the ICANN section of the Public
        Suffix List (the private section would keep ``ec2-…compute-1.amazonaws.com``
        whole, address included).

    :raises MissingDependencyError: when dnspython is not installed.
    :raises ValueError: for an invalid option.
    """

    def __init__(
        self,
        *,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        timeout: float = 1.0,
        max_concurrency: int = 4,
        max_pending: int = 1024,
        positive_ttl: float = 3600,
        negative_ttl: float = 300,
        verify: str = "forward",
        registrable: bool = True,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = 10_000,
    ) -> None:
        try:
            import dns.resolver  # noqa: F401 - imported here only to fail early without the extra
        except ImportError:
            raise MissingDependencyError("reverse DNS", "dns") from None
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        if timeout <= 0 or max_concurrency < 1 or max_pending < 1 or cache_size < 1:
            raise ValueError(
                "timeout, max_concurrency, max_pending and cache_size must be positive"
            )
        if positive_ttl < 0 or negative_ttl < 0:
            raise ValueError("positive_ttl and negative_ttl must not be negative")
        self._nameservers = None if nameservers is None else list(nameservers)
        self._port = port
        self._timeout = float(timeout)
        self._max_concurrency = max_concurrency
        self._max_pending = max_pending
        self._positive_ttl = positive_ttl
        self._negative_ttl = negative_ttl
        self._verify = verify
        self._clock = clock
        self._cache_size = cache_size
        # Built once here, so that a bad system configuration fails at start-up.
        self._make_resolver()
        self._psl: Any = None
        if registrable:
            try:
                from publicsuffixlist import PublicSuffixList
            except ImportError:
                log.warning(
                    "publicsuffixlist is not installed: reverse DNS stores full host names "
                    "(pip install 'consentmw[dns]')"
                )
            else:
                self._psl = PublicSuffixList(only_icann=True)

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # workers wait for addresses
        self._done = threading.Condition(self._lock)  # batches wait for results
        self._queue: collections.deque[str] = collections.deque()
        self._pending: set[str] = set()  # queued or in flight
        self._cache: collections.OrderedDict[str, tuple[DomainResult | None, float]] = (
            collections.OrderedDict()
        )
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- public ---------------------------------------------------------------------------

    def submit(self, ip: str) -> None:
        """Start looking ``ip`` up in the background, unless it is cached, already pending,
        not a global address, or the queue is full. Never blocks, never raises.
        """
        with self._lock:
            self._submit_locked(ip)

    def result(self, ip: str) -> DomainResult | None:
        """The cached result for ``ip``: a :class:`DomainResult`, or ``None`` when there is
        none (not looked up yet, pending, failed, expired or dropped as unverified).
        """
        key = _address_key(ip)
        if key is None:
            return None
        with self._lock:
            return self._cached_locked(key)[1]

    def resolve_batch(self, ips: Iterable[str], deadline_s: float) -> dict[str, DomainResult]:
        """Look up every address in ``ips`` and wait at most ``deadline_s`` seconds in all.

        Addresses are submitted first (as by :meth:`submit`), then the call waits until
        each has an answer or the deadline passes, and returns the results found, keyed by
        the address as given. A lookup still running at the deadline is not abandoned: it
        finishes in the background and fills the cache for a later call.
        """
        end = time.monotonic() + max(0.0, deadline_s)
        wanted: dict[str, str] = {}
        with self._lock:
            for ip in ips:
                key = self._submit_locked(ip)
                if key is not None:
                    wanted[ip] = key
            while not self._closed and any(k in self._pending for k in wanted.values()):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self._done.wait(remaining)
            found = {}
            for ip, key in wanted.items():
                result = self._cached_locked(key)[1]
                if result is not None:
                    found[ip] = result
        return found

    def stats(self) -> dict[str, int]:
        """Counters since construction (see :data:`STAT_KEYS`), plus the ``pending`` and
        ``cached`` gauges. ``cache_hit`` counts lookups saved by a fresh cache entry.
        """
        with self._lock:
            out = dict(self._stats)
            out["pending"] = len(self._pending)
            out["cached"] = len(self._cache)
        return out

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers: queued addresses are dropped, lookups in flight end at their
        deadline. Waits up to ``timeout`` seconds (default: one lookup's deadline and a
        second) for the threads. Idempotent.
        """
        with self._lock:
            self._closed = True
            for key in self._queue:
                self._pending.discard(key)
            self._queue.clear()
            self._work.notify_all()
            self._done.notify_all()
            threads = list(self._threads)
        wait_until = time.monotonic() + (self._timeout + 1.0 if timeout is None else timeout)
        for thread in threads:
            thread.join(max(0.0, wait_until - time.monotonic()))

    def __enter__(self) -> ReverseResolver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- cache and queue (called with the lock held) ---------------------------------------

    def _cached_locked(self, key: str) -> tuple[bool, DomainResult | None]:
        """``(fresh, result)``: whether a fresh entry exists, and its result."""
        entry = self._cache.get(key)
        if entry is None:
            return False, None
        if entry[1] <= self._clock():
            del self._cache[key]
            return False, None
        self._cache.move_to_end(key)
        return True, entry[0]

    def _store_locked(self, key: str, result: DomainResult | None) -> None:
        ttl = self._positive_ttl if result is not None else self._negative_ttl
        self._cache[key] = (result, self._clock() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _submit_locked(self, ip: str) -> str | None:
        """Queue ``ip`` if needed; return its cache key, or ``None`` if it is skipped."""
        if self._closed:
            return None
        key = _address_key(ip)
        if key is None:
            self._stats["skipped_invalid"] += 1
            return None
        # Pending and cached addresses are global already; checking them first keeps the
        # common case (a cache hit) cheap while the lock is held.
        if key in self._pending:
            return key
        if self._cached_locked(key)[0]:
            self._stats["cache_hit"] += 1
            return key
        if not ipaddress.ip_address(key).is_global:
            self._stats["skipped_private"] += 1
            return None
        if len(self._queue) >= self._max_pending:
            self._stats["skipped_busy"] += 1
            return None
        self._queue.append(key)
        self._pending.add(key)
        if len(self._threads) < self._max_concurrency:
            thread = threading.Thread(
                target=self._worker, name=f"consentmw-rdns-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        else:
            self._work.notify()
        return key

    # -- workers --------------------------------------------------------------------------

    def _worker(self) -> None:
        resolver = self._make_resolver()
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work.wait()
                if self._closed:
                    return
                key = self._queue.popleft()
                self._stats["lookups"] += 1
            try:
                outcome, result = self._lookup(resolver, key)
            except Exception as exc:  # a worker must survive any answer
                log.warning("reverse DNS lookup failed (%s)", type(exc).__name__)
                outcome, result = "error", None
            with self._lock:
                self._stats[outcome] += 1
                if not self._closed:
                    self._store_locked(key, result)
                self._pending.discard(key)
                self._done.notify_all()

    def _make_resolver(self) -> Any:
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=self._nameservers is None)
        if self._nameservers is not None:
            resolver.nameservers = list(self._nameservers)
        resolver.port = self._port
        resolver.timeout = self._timeout
        resolver.lifetime = self._timeout
        resolver.cache = None  # the resolver's own caches are above, bounded
        resolver.search = []
        resolver.use_search_by_default = False
        return resolver

    def _lookup(self, resolver: Any, key: str) -> tuple[str, DomainResult | None]:
        """One lookup: ``(outcome, result to cache)``, within the per-lookup deadline."""
        import dns.exception
        import dns.name
        import dns.resolver
        import dns.reversename

        deadline = time.monotonic() + self._timeout
        try:
            answer = resolver.resolve(
                dns.reversename.from_address(key),
                "PTR",
                lifetime=self._timeout,
                raise_on_no_answer=False,
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return "nxdomain", None
        except dns.exception.Timeout:
            return "timeout", None
        except dns.resolver.NoNameservers as exc:
            # An answer that does not even parse (a name over 255 octets, a label over 63)
            # makes dnspython give up on the server: a hostile answer, not an outage. (Over
            # UDP dnspython discards such a packet as if spoofed and the lookup times out;
            # this is what a TCP retry meets.)
            errors = exc.kwargs.get("errors") or ()
            if any(isinstance(err[3], dns.exception.FormError) for err in errors):
                return "invalid_ptr", None
            return "error", None
        except dns.exception.DNSException:
            return "error", None
        if answer.rrset is None:
            return "nxdomain", None

        names = []
        for rdata in list(answer.rrset)[:_MAX_PTR_NAMES]:
            target = getattr(rdata, "target", None)
            if isinstance(target, dns.name.Name):
                hostname = _join_labels(
                    target.labels[:-1] if target.is_absolute() else target.labels
                )
                domain = self._reduce(hostname) if hostname is not None else None
                if hostname is not None and domain is not None:
                    names.append((hostname, domain))
        if not names:
            return "invalid_ptr", None
        if self._verify == "off":
            return "unverified", DomainResult(names[0][0], names[0][1], verified=False)

        address = ipaddress.ip_address(key)
        rdtype = "A" if address.version == 4 else "AAAA"
        for hostname, domain in names:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                forward = resolver.resolve(
                    dns.name.from_text(hostname),
                    rdtype,
                    lifetime=remaining,
                    raise_on_no_answer=False,
                )
            except dns.exception.DNSException:
                continue
            if forward.rrset is not None and any(
                _same_address(rdata, address) for rdata in forward.rrset
            ):
                return "ok", DomainResult(hostname, domain, verified=True)
        if self._verify == "unverified":
            return "unverified", DomainResult(names[0][0], names[0][1], verified=False)
        return "unverified", None

    def _reduce(self, hostname: str) -> str | None:
        if self._psl is None:
            return hostname
        domain = self._psl.privatesuffix(hostname)
        # None: the name is itself a public suffix ("co.uk"), which names nobody.
        return domain if isinstance(domain, str) else None


def _address_key(ip: object) -> str | None:
    if not isinstance(ip, str) or len(ip) > 64:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _same_address(rdata: Any, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(rdata.address) == address
    except (AttributeError, ValueError):
        return False

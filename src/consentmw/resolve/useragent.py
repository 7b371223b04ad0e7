"""What kind of client sent a request, from its ``User-Agent`` header.

Two tools for two threads:

:class:`UAClassifier`
    the dispatcher's full classification (browser family, OS family, device class, bot), by
    the ``user-agents`` package's rules over ua-parser's regular expressions. A parse costs a
    few hundred microseconds, so results are kept in a bounded per-instance LRU cache; real
    traffic repeats a few hundred distinct strings.
:class:`BotFilter`
    the request thread's cheap check (substring searches, cached) for
    skipping crawler page visits before an event is even queued. It is a heuristic and
    deliberately broader than the classifier: HTTP libraries and command-line tools (curl,
    python-requests, wget) count as bots for it, while ``user-agents`` calls them "other".

Values are coarse on purpose: families only, no versions. A version adds identifying
entropy to every event and splits aggregate reports into small cells, and no use in the
policy needs it.

Parser backends. ``user-agents`` calls ua-parser's legacy ``user_agent_parser.Parse``. The
1.x API (``ua_parser`` resolvers) runs the same regular expressions in the same order and
can feed ``user-agents`` the same result (see :func:`_user_agent_from_resolver`); the test
suite proves the answers identical on a corpus of real user agents. In pure Python the 1.x
basic resolver is not faster (measured in ``benchmarks/bench_enrich.py``: about 10 % slower,
as it runs the same regular expressions with a little more Python around them), so it is
used only when ua-parser's compiled backend (``ua-parser-rs``, or ``google-re2``) is
installed, which exists to be faster. ``backend="auto"`` makes that choice. Either way the
result is cached here, so the parser's speed matters only for user agents not seen before.

Do not use this module to make security decisions: every byte of a user agent is chosen by
the client.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

__all__ = ["UA_BACKENDS", "BotFilter", "UAClassifier", "compiled_backend_available"]

log = logging.getLogger(__name__)

#: Values of ``UAClassifier(backend=...)``.
UA_BACKENDS = ("auto", "user_agents", "ua_parser")

#: Device classes, in the order they are decided: a crawler that claims to be an iPhone is
#: a ``bot``; an Android tablet whose browser calls itself "Chrome Mobile" is a ``tablet``.
DEVICE_CLASSES = ("bot", "tablet", "mobile", "pc", "other")

_KEYS = ("browser", "os", "device", "is_bot")
_FAMILY_MAX = 64
# Families come from capture groups over client-chosen text: no control characters in them.
_UNPRINTABLE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_Classification = tuple[str | None, str | None, str, bool]
_UNKNOWN: _Classification = (None, None, "other", False)


def compiled_backend_available() -> bool:
    """True when ua-parser found a compiled matcher backend (``ua-parser-rs`` or ``re2``)."""
    try:
        import ua_parser
    except ImportError:  # pragma: no cover - a dependency of user-agents
        return False
    return ua_parser.RegexResolver is not None or ua_parser.Re2Resolver is not None


class UAClassifier:
    """Classify ``User-Agent`` strings into ``{"browser", "os", "device", "is_bot"}``.

    ``browser`` and ``os`` are family names (``"Chrome"``, ``"Mobile Safari"``, ``"iOS"``,
    ``"Windows"``) or ``None`` when unknown; ``device`` is one of ``"bot"``, ``"tablet"``,
    ``"mobile"``, ``"pc"``, ``"other"`` (checked in that order, from ``user-agents``'
    ``is_bot``, ``is_tablet``, ``is_mobile`` and ``is_pc``); ``is_bot`` is ``user-agents``'
    ``is_bot``.

    The raw string is cut to ``max_length`` characters before parsing (a bound on the
    regular expressions' work; real user agents are shorter) and results are kept in an LRU
    cache of ``cache_size`` entries, per instance and safe to share between threads.
    ``backend`` chooses the parser: ``"user_agents"`` (``user_agents.parse``),
    ``"ua_parser"`` (ua-parser 1.x's best available resolver feeding ``user-agents``' rules)
    or ``"auto"`` (the second only when a compiled backend is installed).

    :raises ValueError: for an unknown ``backend`` or a negative size.
    """

    def __init__(
        self,
        cache_size: int = 4096,
        max_length: int = 512,
        *,
        backend: str = "auto",
    ) -> None:
        if backend not in UA_BACKENDS:
            raise ValueError(f"unknown user-agent backend {backend!r}; use one of {UA_BACKENDS}")
        if cache_size < 0 or max_length < 0:
            raise ValueError("cache_size and max_length must not be negative")
        if backend == "auto":
            backend = "ua_parser" if compiled_backend_available() else "user_agents"
        self.backend = backend
        self.max_length = max_length
        self._parse = _legacy_parser() if backend == "user_agents" else _resolver_parser()
        # functools' LRU is implemented in C and thread-safe; one per instance so that two
        # classifiers (or two tests) never share entries.
        self._cached: Callable[[str], _Classification] = functools.lru_cache(maxsize=cache_size)(
            self._classify_uncached
        )

    def classify(self, raw: str | None) -> dict[str, Any]:
        """The classification of ``raw`` (``None`` or junk gives unknown families and
        ``"other"``). A new dictionary each call, so callers may change it. Never raises.
        """
        if not isinstance(raw, str):
            return dict(zip(_KEYS, _UNKNOWN, strict=True))
        return dict(zip(_KEYS, self._cached(raw[: self.max_length]), strict=True))

    def classify_uncached(self, raw: str | None) -> dict[str, Any]:
        """:meth:`classify` without the cache (for measurements and tests)."""
        if not isinstance(raw, str):
            return dict(zip(_KEYS, _UNKNOWN, strict=True))
        return dict(zip(_KEYS, self._classify_uncached(raw[: self.max_length]), strict=True))

    def cache_info(self) -> dict[str, int]:
        """Cache counters: ``hits``, ``misses``, ``size``, ``max_size``."""
        info = self._cached.cache_info()  # type: ignore[attr-defined]
        return {
            "hits": info.hits,
            "misses": info.misses,
            "size": info.currsize,
            "max_size": info.maxsize or 0,
        }

    def _classify_uncached(self, ua: str) -> _Classification:
        try:
            return classify_parsed(self._parse(ua))
        except Exception as exc:  # hostile input must not stop the dispatcher
            # The parsers are regular-expression tables maintained elsewhere; an input that
            # trips one is recorded as unknown. The string itself is not logged (it can
            # carry anything).
            log.warning("user agent could not be classified (%s)", type(exc).__name__)
            return _UNKNOWN


def classify_parsed(agent: Any) -> tuple[str | None, str | None, str, bool]:
    """The classification tuple ``(browser, os, device, is_bot)`` of a parsed
    ``user_agents.parsers.UserAgent``.
    """
    is_bot = bool(agent.is_bot)
    if is_bot:
        device = "bot"
    elif agent.is_tablet:
        device = "tablet"
    elif agent.is_mobile:
        device = "mobile"
    elif agent.is_pc:
        device = "pc"
    else:
        device = "other"
    return (_family(agent.browser.family), _family(agent.os.family), device, is_bot)


def _family(value: object) -> str | None:
    if not isinstance(value, str) or not value or value == "Other":
        return None
    return _UNPRINTABLE_RE.sub("", value)[:_FAMILY_MAX] or None


def _legacy_parser() -> Callable[[str], Any]:
    import user_agents

    parse: Callable[[str], Any] = user_agents.parse
    return parse


def _resolver_parser() -> Callable[[str], Any]:
    import ua_parser

    matchers = (
        ua_parser.load_lazy_builtins()
        if compiled_backend_available()
        else ua_parser.load_builtins()  # eager: the basic resolver tries every pattern anyway
    )
    resolver = ua_parser.BestAvailableResolver(matchers)
    legacy = _legacy_parser()

    def parse(ua: str) -> Any:
        try:
            return _user_agent_from_resolver(resolver, ua)
        except (ValueError, TypeError, IndexError):
            # ua-parser 1.x raises where the legacy parser skips a pattern whose capture
            # group came out empty; the legacy parser is the reference, so ask it.
            return legacy(ua)

    return parse


def _user_agent_from_resolver(resolver: Callable[[str, Any], Any], ua: str) -> Any:
    """A ``user_agents.parsers.UserAgent`` built from a ua-parser 1.x resolver's result.

    ``UserAgent.__init__`` always calls the legacy parser, so the object is created without
    it and given the same four attributes ``__init__`` sets, converted by ``user-agents``' own
    helpers. The test suite checks this against ``user_agents.parse`` on a corpus.
    """
    from ua_parser import Domain
    from user_agents.parsers import (
        UserAgent,
        parse_browser,
        parse_device,
        parse_operating_system,
    )

    result = resolver(ua, Domain.ALL).complete().with_defaults()
    agent = UserAgent.__new__(UserAgent)
    agent.ua_string = ua
    b, o, d = result.user_agent, result.os, result.device
    agent.browser = parse_browser(b.family, b.major, b.minor, b.patch)
    agent.os = parse_operating_system(o.family, o.major, o.minor, o.patch, o.patch_minor)
    agent.device = parse_device(d.family, d.brand, d.model)
    return agent


# Tokens that only automated clients put in a user agent, matched in the lower-cased string
# with ``in`` (a C substring search each; one regular expression with this many alternatives
# is ten times slower, because ``re`` tries every alternative at every position).
_BOT_TOKENS = (
    "crawl",
    "spider",
    "slurp",
    "scrap",
    "archiver",
    "fetcher",
    "headless",
    "phantomjs",
    "lighthouse",
    "pingdom",
    "monitor",
    "validator",
    "facebookexternalhit",
    "mediapartners",
    "inspectiontool",
    "whatsapp/",
    "curl/",
    "wget/",
    "python-",
    "aiohttp",
    "httpx/",
    "go-http-client",
    "okhttp",
    "libwww",
    "httpclient",
    "axios/",
    "node-fetch",
    "postmanruntime",
)
_BOT_PREFIXES = ("java/",)
# "bot" must end a word ("Googlebot/2.1", "AdsBot-Google"), and "Cubot" is a phone brand.
_BOT_WORD_RE = re.compile(r"bot\b")


class BotFilter:
    """A cheap "is this a crawler?" check for the request thread.

    A few substring searches over at most ``max_length`` lower-cased characters, behind a
    per-instance LRU cache of ``cache_size`` entries (a hit costs about as much as a
    dictionary lookup). A missing or empty user agent counts as a bot when
    ``empty_is_bot`` (browsers always send one).
    """

    def __init__(
        self,
        cache_size: int = 1024,
        max_length: int = 512,
        *,
        empty_is_bot: bool = True,
    ) -> None:
        self.max_length = max_length
        self.empty_is_bot = empty_is_bot
        self._cached: Callable[[str], bool] = functools.lru_cache(maxsize=cache_size)(
            _looks_automated
        )

    def __call__(self, raw_ua: str | None) -> bool:
        """True if ``raw_ua`` looks like a crawler, a script or a command-line client."""
        if not raw_ua or not isinstance(raw_ua, str):
            return self.empty_is_bot
        return self._cached(raw_ua[: self.max_length])

    is_bot = __call__


def _looks_automated(ua: str) -> bool:
    low = ua.lower()
    if low.startswith(_BOT_PREFIXES):
        return True
    for token in _BOT_TOKENS:
        if token in low:
            return True
    return any(low[m.start() - 2 : m.start()] != "cu" for m in _BOT_WORD_RE.finditer(low))

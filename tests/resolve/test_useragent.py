from __future__ import annotations

import logging
import threading

import pytest
import ua_parser
import user_agents
from hypothesis import given, settings
from hypothesis import strategies as st

from consentmw.resolve.useragent import (
    BotFilter,
    UAClassifier,
    _user_agent_from_resolver,
    compiled_backend_available,
)

from .ua_corpus import BOTS, CORPUS, DESKTOP, MOBILE, NOT_BROWSERS, TABLET

UNKNOWN = {"browser": None, "os": None, "device": "other", "is_bot": False}


def _parsed(agent: object) -> tuple[object, ...]:
    return (agent.browser, agent.os, agent.device)  # type: ignore[attr-defined]


def _resolvers() -> list[object]:
    """The ua-parser 1.x resolvers installed here: always the pure-Python one, and the
    compiled ones when their packages are present."""
    params = [pytest.param(ua_parser.BasicResolver(ua_parser.load_builtins()), id="basic")]
    if ua_parser.RegexResolver is not None:
        params.append(
            pytest.param(ua_parser.RegexResolver(ua_parser.load_lazy_builtins()), id="regex")
        )
    if ua_parser.Re2Resolver is not None:
        params.append(pytest.param(ua_parser.Re2Resolver(ua_parser.load_lazy_builtins()), id="re2"))
    return params


@pytest.mark.parametrize("resolver", _resolvers())
def test_resolver_feeds_user_agents_the_same_parse_on_the_corpus(resolver: object) -> None:
    # The full parse (browser, OS, device with versions, brand and model), not only the
    # classification derived from it, must match what user_agents.parse finds.
    differences = []
    for raw in CORPUS:
        ua = raw[:512]
        legacy = user_agents.parse(ua)
        fast = _user_agent_from_resolver(resolver, ua)  # type: ignore[arg-type]
        if _parsed(legacy) != _parsed(fast) or [
            legacy.is_mobile,
            legacy.is_tablet,
            legacy.is_pc,
            legacy.is_bot,
            legacy.is_touch_capable,
        ] != [fast.is_mobile, fast.is_tablet, fast.is_pc, fast.is_bot, fast.is_touch_capable]:
            differences.append(ua[:80])
    assert differences == []


def test_both_backends_classify_the_corpus_identically() -> None:
    legacy = UAClassifier(backend="user_agents")
    fast = UAClassifier(backend="ua_parser")
    assert [legacy.classify_uncached(ua) for ua in CORPUS] == [
        fast.classify_uncached(ua) for ua in CORPUS
    ]


def test_auto_uses_the_resolver_only_with_a_compiled_backend() -> None:
    expected = "ua_parser" if compiled_backend_available() else "user_agents"
    assert UAClassifier().backend == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(DESKTOP[0], ("Chrome", "Windows", "pc", False), id="chrome-windows"),
        pytest.param(DESKTOP[3], ("Safari", "Mac OS X", "pc", False), id="safari-mac"),
        pytest.param(MOBILE[0], ("Mobile Safari", "iOS", "mobile", False), id="iphone"),
        pytest.param(MOBILE[3], ("Chrome Mobile", "Android", "mobile", False), id="android"),
        pytest.param(MOBILE[9], ("Chrome Mobile", "Android", "mobile", False), id="cubot-phone"),
        pytest.param(TABLET[0], ("Mobile Safari", "iOS", "tablet", False), id="ipad"),
        pytest.param(TABLET[1], ("Chrome", "Android", "tablet", False), id="android-tablet"),
        pytest.param(BOTS[0], ("Googlebot", None, "bot", True), id="googlebot"),
        pytest.param(BOTS[1], ("Googlebot", "Android", "bot", True), id="googlebot-smartphone"),
        pytest.param(NOT_BROWSERS[0], ("curl", None, "other", False), id="curl"),
        pytest.param("", (None, None, "other", False), id="empty"),
        pytest.param("<script>alert(1)</script>", (None, None, "other", False), id="markup"),
    ],
)
def test_classify(raw: str, expected: tuple[object, ...]) -> None:
    result = UAClassifier().classify(raw)
    assert (result["browser"], result["os"], result["device"], result["is_bot"]) == expected


def test_none_is_unknown() -> None:
    assert UAClassifier().classify(None) == UNKNOWN


def test_the_raw_string_is_cut_before_parsing() -> None:
    classifier = UAClassifier(max_length=512)
    long_ua = DESKTOP[0] + " " + "A" * 10_000
    assert classifier.classify(long_ua) == classifier.classify(long_ua[:512])
    assert classifier.cache_info()["hits"] == 1  # both calls parsed the same 512 characters


def test_cache_is_bounded_per_instance_and_returns_fresh_dicts() -> None:
    classifier = UAClassifier(cache_size=2)
    first = classifier.classify(DESKTOP[0])
    first["browser"] = "changed by a caller"
    assert classifier.classify(DESKTOP[0])["browser"] == "Chrome"
    for ua in DESKTOP[:5]:
        classifier.classify(ua)
    info = classifier.cache_info()
    assert info["size"] == 2
    assert info["max_size"] == 2
    assert UAClassifier().cache_info()["size"] == 0  # another instance shares nothing


def test_classifier_is_safe_to_share_between_threads() -> None:
    classifier = UAClassifier(cache_size=8)
    expected = [UAClassifier(cache_size=0).classify(ua) for ua in CORPUS]
    results: list[list[dict[str, object]]] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [classifier.classify(ua) for ua in CORPUS]
        with lock:
            results.append(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_a_parser_failure_is_unknown_and_logged_without_the_string(
    caplog: pytest.LogCaptureFixture,
) -> None:
    classifier = UAClassifier()

    def explode(ua: str) -> object:
        raise RuntimeError("regex table broke")

    classifier._parse = explode
    with caplog.at_level(logging.WARNING, logger="consentmw.resolve.useragent"):
        assert classifier.classify("secret-looking UA 4111111111111111") == UNKNOWN
    assert "RuntimeError" in caplog.text
    assert "4111" not in caplog.text


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        UAClassifier(backend="fast")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_classify_never_raises(raw: str) -> None:
    result = UAClassifier(cache_size=0).classify(raw)
    assert set(result) == {"browser", "os", "device", "is_bot"}
    assert result["device"] in ("bot", "tablet", "mobile", "pc", "other")
    for key in ("browser", "os"):
        assert result[key] is None or (
            isinstance(result[key], str) and result[key].isprintable() and len(result[key]) <= 64
        )


# -- the request thread's bot filter ------------------------------------------------------


@pytest.mark.parametrize("raw", BOTS + NOT_BROWSERS[:8], ids=lambda s: s[:30])
def test_bot_filter_flags_crawlers_and_scripts(raw: str) -> None:
    assert BotFilter()(raw) is True


@pytest.mark.parametrize("raw", DESKTOP + MOBILE + TABLET, ids=lambda s: s[:30])
def test_bot_filter_passes_browsers(raw: str) -> None:
    assert BotFilter()(raw) is False


def test_bot_filter_covers_every_bot_the_classifier_finds() -> None:
    classifier = UAClassifier()
    bots = [ua for ua in CORPUS if classifier.classify(ua)["is_bot"]]
    assert bots
    assert all(BotFilter()(ua) for ua in bots)


def test_bot_filter_and_missing_user_agents() -> None:
    assert BotFilter()(None) is True
    assert BotFilter()("") is True
    assert BotFilter(empty_is_bot=False)("") is False


@given(st.one_of(st.none(), st.text(max_size=2000)))
def test_bot_filter_never_raises(raw: str | None) -> None:
    assert BotFilter().is_bot(raw) in (True, False)

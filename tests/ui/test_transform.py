"""Injection through the middleware on awkward responses: what is touched, what is not, and
that Content-Length, validators, caching headers and close() are always right."""

from __future__ import annotations

import gc
import gzip
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import PAGE, Site, call, config, header, html_app

BANNER = b'id="cmw-banner"'
LINK = b'class="cmw-settings"'


def body_of(response: Any) -> bytes:
    data: bytes = response.get_data()
    length = response.headers.get("Content-Length")
    if length is not None:
        assert int(length) == len(data), "Content-Length does not match the body"
    return data


def test_banner_and_link_are_injected_before_body_end(make_site: Callable[..., Site]) -> None:
    site = make_site()
    response = site.get("/")
    data = body_of(response)
    assert data.count(BANNER) == 1
    assert data.count(LINK) == 1
    assert data.index(BANNER) < data.index(b"</body>")
    assert data.startswith(PAGE[: PAGE.index(b"</body>")])
    # The banner depends on consent: kept out of shared caches, varies by cookie.
    assert "Cookie" in response.headers["Vary"]
    assert "private" in response.headers["Cache-Control"]


def test_content_length_grows_by_the_inserted_size_when_nothing_is_gated(
    make_site: Callable[..., Site],
) -> None:
    site = make_site(ui={"banner": False})
    site.decide("accept_all")
    response = site.get("/")
    data = body_of(response)
    assert response.headers["Content-Length"] == str(len(data))
    assert LINK in data
    assert BANNER not in data


def test_content_length_is_dropped_when_gating_may_change_the_size(
    make_site: Callable[..., Site],
) -> None:
    page = b'<html><body><script data-consent="analytics" src="/a.js"></script></body></html>'
    site = make_site(html_app(page))
    response = site.get("/")
    assert "Content-Length" not in response.headers
    assert b'data-src="/a.js" type="text/plain"' in response.get_data()


def test_a_generator_body_that_starts_lazily(make_site: Callable[..., Site]) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<html><body><p>one</p>"
        yield b"<p>two</p></bo"
        yield b"dy></html>"

    site = make_site(app)
    data = body_of(site.get("/"))
    assert data.count(BANNER) == 1
    assert data.index(BANNER) < data.index(b"</body>")
    assert data.endswith(b"</body></html>")


def test_chunks_split_inside_tags(make_site: Callable[..., Site]) -> None:
    page = b'<html><head></head><body><p title="a>b">x</p></body></html>'
    chunks = [page[i : i + 3] for i in range(0, len(page), 3)]
    site = make_site(html_app(chunks))
    site.decide("accept_all")
    data = body_of(site.get("/"))
    assert data.count(LINK) == 1
    assert data.index(LINK) > data.index(b"</p>")


def test_no_body_end_appends_at_the_end(make_site: Callable[..., Site]) -> None:
    site = make_site(html_app(b"<p>fragment"))
    data = body_of(site.get("/"))
    assert data.startswith(b"<p>fragment")
    assert data.count(BANNER) == 1


@pytest.mark.parametrize(
    ("kwargs", "path", "method"),
    [
        pytest.param({"content_type": "application/json"}, "/", "GET", id="json"),
        pytest.param({"content_type": "text/plain"}, "/", "GET", id="text"),
        pytest.param({"headers": [("Content-Encoding", "gzip")]}, "/", "GET", id="gzip"),
        pytest.param({"headers": [("Content-Encoding", "br")]}, "/", "GET", id="brotli"),
        pytest.param(
            {"headers": [("Content-Disposition", 'attachment; filename="a.html"')]},
            "/",
            "GET",
            id="download",
        ),
        pytest.param({"status": "404 Not Found"}, "/", "GET", id="404"),
        pytest.param({"status": "500 Internal Server Error"}, "/", "GET", id="500"),
        pytest.param({"status": "206 Partial Content"}, "/", "GET", id="206"),
        pytest.param({"content_type": "text/html; charset=utf-16"}, "/", "GET", id="utf-16"),
        pytest.param({"content_type": "text/html; charset=bogus-9"}, "/", "GET", id="unknown-cs"),
        pytest.param({}, "/", "HEAD", id="head"),
    ],
)
def test_responses_left_alone(
    make_site: Callable[..., Site], kwargs: dict[str, Any], path: str, method: str
) -> None:
    encoded = ("Content-Encoding", "gzip") in kwargs.get("headers", ())
    body = gzip.compress(PAGE) if encoded else PAGE
    inner = html_app(body, **kwargs)
    site = make_site(inner)
    _status, headers, app_iter = call(site.mw, path, method)
    assert header(headers, "Content-Length") == str(len(body))
    # The application's own iterable comes back: not wrapped, not copied.
    assert isinstance(app_iter, list)
    assert b"".join(app_iter) == body


def test_xhtml_and_latin1_pages_are_injected(make_site: Callable[..., Site]) -> None:
    site = make_site(html_app(content_type="application/xhtml+xml; charset=ISO-8859-1"))
    data = body_of(site.get("/", headers={"Accept-Language": "de"}))
    assert BANNER in data
    # Non-ASCII texts go out as character references: right in any ASCII-compatible charset.
    assert data.decode("ascii")
    assert b"&#228;hnliche" in data


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_empty_statuses_are_not_touched(make_site: Callable[..., Site], status: str) -> None:
    site = make_site(html_app(b"", status=status))
    _, _headers, app_iter = call(site.mw)
    assert b"".join(app_iter) == b""


def test_close_is_propagated(make_site: Callable[..., Site]) -> None:
    closed: list[str] = []

    class Body:
        def __init__(self, chunks: Iterable[bytes]) -> None:
            self.chunks = list(chunks)

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.chunks)

        def close(self) -> None:
            closed.append("closed")

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/html")])
        return Body([PAGE])

    site = make_site(app)
    _, _, body = call(site.mw)
    assert BANNER in b"".join(body)
    body.close()
    assert closed == ["closed"]
    _, _, body = call(site.mw)
    body.close()  # never iterated: still closed
    assert closed == ["closed", "closed"]


def test_close_is_propagated_for_lazy_generators(make_site: Callable[..., Site]) -> None:
    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        try:
            start_response("200 OK", [("Content-Type", "text/html")])
            yield b"<html><body>"
            yield b"</body></html>"
        finally:
            closed.append(True)

    site = make_site(app)
    _, _, body = call(site.mw)
    data = b"".join(body)
    body.close()
    assert BANNER in data
    assert closed == [True]


def test_validators_are_dropped_for_consent_dependent_pages(make_site: Callable[..., Site]) -> None:
    site = make_site(
        html_app(headers=[("ETag", '"v1"'), ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT")])
    )
    response = site.get("/")
    assert "ETag" not in response.headers
    assert "Last-Modified" not in response.headers


def test_etag_becomes_weak_when_only_the_link_is_added(make_site: Callable[..., Site]) -> None:
    site = make_site(
        html_app(headers=[("ETag", '"v1"'), ("Content-MD5", "x")]),
        ui={"banner": False, "script_gating": False},
    )
    response = site.get("/")
    assert response.headers["ETag"] == 'W/"v1"'
    assert "Content-MD5" not in response.headers
    # Nothing consent-dependent was added: the page stays cacheable (by language).
    assert response.headers["Vary"] == "Accept-Language"
    assert body_of(response).count(LINK) == 1


def test_nothing_to_do_returns_the_app_iterable(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"banner": False, "settings_link": False})
    site.decide("accept_all")
    prefs = site.client.get_cookie("cmw_prefs")
    assert prefs is not None
    _status, headers, body = call(site.mw, headers={"Cookie": f"cmw_prefs={prefs.value}"})
    assert isinstance(body, list)
    assert header(headers, "Content-Length") == str(len(PAGE))
    # The visitor granted everything, but another state would be gated: vary by cookie.
    assert "Cookie" in (header(headers, "Vary") or "")


def test_ui_entirely_off_leaves_pages_cacheable(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"banner": False, "settings_link": False, "script_gating": False})
    response = site.get("/")
    assert body_of(response) == PAGE
    assert "Vary" not in response.headers


def test_a_page_the_app_writes_in_many_tiny_chunks(make_site: Callable[..., Site]) -> None:
    page = (
        b'<!doctype html><html><head><title>x</title></head><body><script data-consent="analytics"'
        b' src="/a.js"></script><img data-consent=marketing src=/p.gif></body></html>'
    )
    site = make_site(html_app([page[i : i + 1] for i in range(len(page))]))
    data = body_of(site.get("/"))
    assert b'data-src="/a.js" type="text/plain"' in data
    assert b"data-src=/p.gif" in data
    assert data.count(BANNER) == 1


def test_a_20_mb_generator_body_through_the_middleware(make_site: Callable[..., Site]) -> None:
    row = b'<tr><td><a href="/x?a=1" title="t>">x</a></td><td data-consent="analytics">y</td></tr>'
    chunk = row * (64 * 1024 // len(row))
    count = 20 * 1024 * 1024 // len(chunk) + 1

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        yield b"<!doctype html><html><head></head><body><table>"
        for _ in range(count):
            yield chunk
        yield b"</table></body></html>"

    site = make_site(app)
    gc.collect()
    tracemalloc.start()
    try:
        _, headers, body = call(site.mw)
        total = banners = 0
        tail = b""
        for part in body:
            total += len(part)
            banners += part.count(BANNER)
            tail = (tail + part)[-64:]
        body.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 20 * 1024 * 1024
    assert banners == 1
    assert tail.endswith(b"</script></body></html>")
    assert header(headers, "Content-Length") is None
    assert peak < 2 * 1024 * 1024, peak


def test_language_dependent_markup_varies_by_accept_language(
    make_site: Callable[..., Site],
) -> None:
    site = make_site()
    vary = [v.strip() for v in site.get("/").headers["Vary"].split(",")]
    assert "Cookie" in vary
    assert "Accept-Language" in vary
    # One language only: nothing to vary on.
    cfg = config()
    for purpose in cfg["purposes"].values():
        purpose.pop("translations", None)
    english = Site(html_app(), cfg)
    try:
        assert "Accept-Language" not in english.get("/").headers["Vary"]
    finally:
        english.mw.close(timeout=5)


@pytest.mark.parametrize(
    ("content_type", "injected"),
    [
        ("text/html", True),
        ("TEXT/HTML; Charset=UTF-8", True),
        ('text/html; charset="windows-1252"', True),
        ("text/html; charset=utf-16le", False),
        ("text/html; charset=iso-2022-jp", False),
        ("text/html; charset=punycode", False),
        ("text/html; charset=rot13", False),
        ("text/html; charset=\x00", True),  # an invalid parameter is ignored
        ("text/htmlx", False),
        ("", False),
    ],
)
def test_content_types(content_type: str, injected: bool) -> None:
    from consentmw.ui import UI

    ui = UI.__new__(UI)  # only the header logic, no engine
    ui._type_cache = {}
    ui._charset_cache = {}
    environ = {"REQUEST_METHOD": "GET"}
    assert ui._eligible(environ, 200, [("Content-Type", content_type)]) is injected


@given(content_type=st.text(max_size=80), encoding=st.text(max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_response_headers_are_handled(content_type: str, encoding: str) -> None:
    from consentmw.ui import UI

    ui = UI.__new__(UI)
    ui._type_cache = {}
    ui._charset_cache = {}
    headers = [("Content-Type", content_type), ("Content-Encoding", encoding)]
    assert ui._eligible({"REQUEST_METHOD": "GET"}, 200, headers) in (True, False)
    html_like = "text/html; charset=" + content_type
    assert ui._eligible({"REQUEST_METHOD": "GET"}, 200, [("Content-Type", html_like)]) in (
        True,
        False,
    )

"""The streaming injector: where it inserts, what it gates, and that it never corrupts a body,
whatever the chunking, and never holds more than a small tail."""

from __future__ import annotations

import gc
import re
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consentmw.ui.inject import MAX_PENDING, GatedBody, Injector, gate_tag

H = b"\x01HEAD\x01"
B = b"\x02BODY\x02"
NONE: frozenset[str] = frozenset()


def run(
    chunks: list[bytes] | bytes,
    *,
    head: bytes = H,
    body: bytes = B,
    granted: frozenset[str] = NONE,
    gating: bool = False,
    fast: bool = True,
) -> bytes:
    if isinstance(chunks, bytes):
        chunks = [chunks]
    injector = Injector(head=head, body=body, granted=granted, gating=gating, fast=fast)
    out = [injector.feed(c) for c in chunks]
    out.append(injector.finish())
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


# ------------------------------------------------------------------ where things go


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        pytest.param(
            b"<html><head><title>t</title></head><body>x</body></html>",
            b"<html><head>" + H + b"<title>t</title></head><body>x" + B + b"</body></html>",
            id="plain",
        ),
        pytest.param(
            b"<HTML><HEAD lang=en>x</HEAD><BODY>y</BODY></HTML>",
            b"<HTML><HEAD lang=en>" + H + b"x</HEAD><BODY>y" + B + b"</BODY></HTML>",
            id="upper-case",
        ),
        pytest.param(
            b"<html><body>x</Body >",
            b"<html>" + H + b"<body>x" + B + b"</Body >",
            id="no-head",
        ),
        pytest.param(b"just text", b"just text" + H + B, id="no-tags"),
        pytest.param(
            b"<p>no end</p>",
            H + b"<p>no end</p>" + B,
            id="no-body-end",
        ),
        pytest.param(
            b"<html><head></head><body>x</html>",
            b"<html><head>" + H + b"</head><body>x" + B + b"</html>",
            id="html-end-only",
        ),
        pytest.param(
            b"<head></head><body><!-- </body> --><p title='</body>'>a</p>"
            b"<script>if (a </body> b) {}</script><style>p:after{content:'</body>'}</style>"
            b"<textarea></body></textarea><title></body></title></body>",
            b"<head>" + H + b"</head><body><!-- </body> --><p title='</body>'>a</p>"
            b"<script>if (a </body> b) {}</script><style>p:after{content:'</body>'}</style>"
            b"<textarea></body></textarea><title></body></title>" + B + b"</body>",
            id="not-fooled",
        ),
        pytest.param(
            b"<head></head><body><a title=\"x > y\" data-x='>'>a</a></body>",
            b"<head>" + H + b"</head><body><a title=\"x > y\" data-x='>'>a</a>" + B + b"</body>",
            id="gt-in-attributes",
        ),
        pytest.param(
            b"<head></head><!--> <p> </body>",
            b"<head>" + H + b"</head><!--> <p> " + B + b"</body>",
            id="abrupt-comment",
        ),
        pytest.param(
            b"<!doctype html><?xml x?><head></head><body></body>",
            b"<!doctype html><?xml x?><head>" + H + b"</head><body>" + B + b"</body>",
            id="doctype",
        ),
        pytest.param(
            b"<head></head>a < b and c <3 d </ 5> </body>",
            b"<head>" + H + b"</head>a < b and c <3 d </ 5> " + B + b"</body>",
            id="lone-less-than",
        ),
        pytest.param(
            b"<head></head><plaintext></body>",
            b"<head>" + H + b"</head><plaintext></body>" + B,
            id="plaintext",
        ),
    ],
)
def test_insertion_points(page: bytes, expected: bytes) -> None:
    assert run(page) == expected
    assert run(page, fast=False) == expected
    # Byte by byte: every construct split at every possible place.
    assert run([page[i : i + 1] for i in range(len(page))]) == expected


def test_head_goes_before_the_first_script_when_there_is_no_head() -> None:
    page = b"<!doctype html><html><script src=a.js></script><body></body>"
    assert (
        run(page)
        == b"<!doctype html><html>" + H + b"<script src=a.js></script><body>" + B + b"</body>"
    )


@pytest.mark.parametrize(
    ("head", "body", "expected"),
    [
        pytest.param(H, b"", b"<html><head>" + H + b"</head><body></body></html>x", id="head-only"),
        pytest.param(b"", B, b"<html><head></head><body>" + B + b"</body></html>x", id="body-only"),
    ],
)
def test_one_insertion_only(head: bytes, body: bytes, expected: bytes) -> None:
    page = b"<html><head></head><body></body></html>x"
    for size in (1, 2, 7, len(page)):
        chunks = [page[i : i + size] for i in range(0, len(page), size)]
        assert run(chunks, head=head, body=body) == expected


def test_nothing_to_do_copies_through() -> None:
    injector = Injector()
    assert injector.copying
    assert injector.feed(b"<body></body>") == b"<body></body>"
    assert injector.finish() == b""


def test_after_the_body_end_the_rest_is_passed_through() -> None:
    injector = Injector(body=B)
    assert injector.feed(b"<body>x</body>") == b"<body>x" + B + b"</body>"
    assert injector.copying
    assert injector.feed(b"</html>") == b"</html>"
    assert injector.finish() == b""


# ------------------------------------------------------------------ gating


ANALYTICS = frozenset({"analytics"})


@pytest.mark.parametrize(
    ("tag", "gated"),
    [
        pytest.param(
            b'<script data-consent="analytics" src="/a.js"></script>',
            b'<script data-consent="analytics" data-src="/a.js" type="text/plain"></script>',
            id="script-src",
        ),
        pytest.param(
            b"<script type=module data-consent=analytics>go()</script>",
            b'<script data-type=module data-consent=analytics type="text/plain">go()</script>',
            id="script-type-unquoted",
        ),
        pytest.param(
            b"<SCRIPT SRC='/a.js' DATA-CONSENT='analytics' Type='text/javascript' async></SCRIPT>",
            b"<SCRIPT data-SRC='/a.js' DATA-CONSENT='analytics' data-Type='text/javascript' async "
            b'type="text/plain"></SCRIPT>',
            id="script-upper-case",
        ),
        pytest.param(
            b'<script\n  data-consent = "analytics"\n  src="/a.js?x=1&amp;y=>2"\n></script>',
            b'<script\n  data-consent = "analytics"\n  data-src="/a.js?x=1&amp;y=>2"\n'
            b' type="text/plain"></script>',
            id="script-newlines-gt-in-value",
        ),
        pytest.param(
            b'<iframe src="https://v.example/e" data-consent="analytics" '
            b'srcdoc="<b>x</b>"></iframe>',
            b'<iframe data-src="https://v.example/e" data-consent="analytics" '
            b'data-srcdoc="<b>x</b>"></iframe>',
            id="iframe",
        ),
        pytest.param(
            b'<img src=p.gif srcset="p2.gif 2x" data-consent=analytics alt="">',
            b'<img data-src=p.gif data-srcset="p2.gif 2x" data-consent=analytics alt="">',
            id="img",
        ),
        pytest.param(
            b"<img data-consent=analytics src=p.gif/>",
            b"<img data-consent=analytics data-src=p.gif/>",
            id="img-self-closing-unquoted",
        ),
        pytest.param(
            b'<script data-consent="analytics marketing" src="/b.js"></script>',
            b'<script data-consent="analytics marketing" data-src="/b.js" type="text/plain">'
            b"</script>",
            id="needs-all-purposes",
        ),
        pytest.param(
            b'<script data-consent="unknown" src="/c.js"></script>',
            b'<script data-consent="unknown" data-src="/c.js" type="text/plain"></script>',
            id="unknown-purpose-stays-off",
        ),
        pytest.param(
            b'<script data-consent="&#97;nalytics,marketing" src="/d.js"></script>',
            b'<script data-consent="&#97;nalytics,marketing" data-src="/d.js" type="text/plain">'
            b"</script>",
            id="entities-and-commas",
        ),
    ],
)
def test_gating_rewrites_only_what_it_must(tag: bytes, gated: bytes) -> None:
    page = b"<head></head><body>" + tag + b"</body>"
    granted_all = frozenset({"analytics", "marketing", "unknown"})
    assert run(page, head=b"", body=b"", gating=True) == b"<head></head><body>" + gated + b"</body>"
    assert run(page, head=b"", body=b"", gating=True, granted=granted_all) == page
    assert run(page, head=b"", body=b"", gating=False) == page


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param(b'<script src="/a.js"></script>', id="no-data-consent"),
        pytest.param(
            b'<script data-consent="analytics" type="text/plain">x</script>', id="pre-gated"
        ),
        pytest.param(b'<link data-consent="analytics" href="/a.css" rel=stylesheet>', id="link"),
        pytest.param(b'<div data-consent="analytics" src="x"></div>', id="div"),
        pytest.param(
            b"<p title='<script data-consent=\"analytics\" src=x>'></p>", id="in-attribute"
        ),
        pytest.param(b'<!-- <script data-consent="analytics" src=x></script> -->', id="in-comment"),
        pytest.param(
            b'<textarea><img data-consent="analytics" src=x></textarea>', id="in-textarea"
        ),
        pytest.param(b'<script>"<img data-consent=analytics src=x>"</script>', id="in-script"),
    ],
)
def test_gating_leaves_other_tags_alone(tag: bytes) -> None:
    page = b"<body>" + tag + b"</body>"
    assert run(page, head=b"", body=b"", gating=True) == page


def test_granted_purposes_are_granted_case_insensitively() -> None:
    tag = b'<script data-consent="Analytics" src="/a.js"></script>'
    assert run(tag, head=b"", body=b"", gating=True, granted=ANALYTICS) == tag


def test_gate_tag_directly() -> None:
    assert gate_tag(b"script", b' src="a"', NONE) is None
    assert gate_tag(b"img", b" data-consent=x src=a", frozenset({"x"})) is None
    assert gate_tag(b"img", b" data-consent=x src=a", NONE) == b" data-consent=x data-src=a"


# ------------------------------------------------------------------ streaming bounds


def test_an_endless_tag_is_given_up_on_and_copied() -> None:
    injector = Injector(head=H, body=B)
    out = [injector.feed(b'<html><head><a title="')]
    for _ in range(MAX_PENDING // 4096 + 2):
        out.append(injector.feed(b"x" * 4096))
    out.append(injector.feed(b'"></body>'))
    out.append(injector.finish())
    data = b"".join(out)
    assert data.count(H) == 1
    assert data.count(B) == 1
    assert data.replace(H, b"").replace(B, b"") == (
        b'<html><head><a title="' + b"x" * 4096 * (MAX_PENDING // 4096 + 2) + b'"></body>'
    )


def test_hostile_tags_are_rejected_in_linear_time() -> None:
    # Unterminated tags whose regex match would blow up with backtracking.
    for body in (b"<a " + b"b" * 60000, b"<a " + b"b=c " * 15000, b"<a " + b"=/" * 30000):
        injector = Injector(body=B, gating=True)
        injector.feed(body)
        assert injector.finish().endswith(B)


def _html_stream(total: int, chunk: int) -> Iterator[bytes]:
    piece = (
        b'<tr class="r"><td><a href="/i?x=1&amp;y=2" title="Item">Item</a></td>'
        b"<td data-x='1'>text &amp; more</td><td><img data-consent=\"analytics\" src=/p.gif>"
        b"</td></tr>\n"
    )
    block = piece * (chunk // len(piece) + 1)
    yield b"<!doctype html><html><head><title>big</title></head><body><table>"
    sent = 0
    while sent < total:
        # Cut at an odd offset so that tags straddle every chunk boundary.
        part = block[(sent * 7) % 97 : (sent * 7) % 97 + chunk]
        sent += len(part)
        yield part
    yield b"</table></body></html>"


@pytest.mark.parametrize("gating", [False, True], ids=["insert-only", "gating"])
def test_a_20_mb_body_streams_in_bounded_memory(gating: bool) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        injector = Injector(head=H, body=B, gating=gating)
        total = seen_body = 0
        for chunk in _html_stream(20 * 1024 * 1024, 64 * 1024):
            out = injector.feed(chunk)
            total += len(out)
            seen_body += out.count(B)
        tail = injector.finish()
        total += len(tail)
        seen_body += tail.count(B)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 20 * 1024 * 1024
    assert seen_body == 1
    # A few chunks' worth at most: nothing is buffered whole.
    assert peak < 2 * 1024 * 1024, peak


def test_gated_body_closes_the_application_iterable() -> None:
    closed: list[bool] = []

    class AppIter:
        def __iter__(self) -> Iterator[bytes]:
            yield b"<body>"
            yield b"</body>"

        def close(self) -> None:
            closed.append(True)

    body = GatedBody(AppIter(), Injector(body=B))
    assert b"".join(body) == b"<body>" + B + b"</body>"
    body.close()
    assert closed == [True]
    # Closed even when the server never iterates (a client that went away).
    GatedBody(AppIter(), Injector(body=B)).close()
    assert closed == [True, True]


# ------------------------------------------------------------------ properties

# Bytes rich in what matters to the scanner.
_MARKUP = st.lists(
    st.sampled_from(
        [
            b"<",
            b">",
            b"/",
            b"!",
            b"-",
            b"--",
            b"?",
            b"=",
            b'"',
            b"'",
            b" ",
            b"\n",
            b"a",
            b"x",
            b"<body>",
            b"</body>",
            b"</BODY >",
            b"</html>",
            b"<head>",
            b"<HEAD x=1>",
            b"</head>",
            b"<!--",
            b"-->",
            b"--!>",
            b"<script>",
            b"</script>",
            b"<style>",
            b"</style>",
            b"<textarea>",
            b"</textarea>",
            b"<title>",
            b"</title>",
            b'<p title="',
            b"<p title='",
            b"<a href=",
            b"<img ",
            b"<iframe ",
            b"<script ",
            b"data-consent=analytics",
            b"data-consent='marketing'",
            b"src=x",
            b'src="y"',
            b"type=module",
            b"<!doctype html>",
            b"<plaintext>",
            b"\xff\xfe",
            b"\x00",
            b"&amp;",
        ]
    ),
    max_size=60,
).map(b"".join)


@given(
    page=_MARKUP | st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    inserts=st.sampled_from([(H, B), (H, b""), (b"", B)]),
)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_insertion_never_corrupts_the_body(
    page: bytes, cuts: list[int], inserts: tuple[bytes, bytes]
) -> None:
    head, body = inserts
    out = run(split(page, cuts), head=head, body=body)
    assert out.count(H) == (1 if head else 0)
    assert out.count(B) == (1 if body else 0)
    if head and body:
        assert out.index(H) < out.index(B)
    assert out.replace(H, b"", 1).replace(B, b"", 1) == page
    assert out == run(page, head=head, body=body, fast=False)


@given(page=_MARKUP, cuts=st.lists(st.integers(0, 400), max_size=12), granted=st.sampled_from(
    [NONE, ANALYTICS, frozenset({"marketing"}), frozenset({"analytics", "marketing"})]
))  # fmt: skip
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_gating_output_does_not_depend_on_chunking_or_the_fast_path(
    page: bytes, cuts: list[int], granted: frozenset[str]
) -> None:
    whole = run(page, gating=True, granted=granted, fast=False)
    assert run(split(page, cuts), gating=True, granted=granted) == whole
    assert run(split(page, cuts), gating=True, granted=granted, fast=False) == whole
    # Gating only ever adds "data-" prefixes and type="text/plain".
    stripped = whole.replace(H, b"", 1).replace(B, b"", 1).replace(b' type="text/plain"', b"")
    assume(not re.search(rb"data-(?:type|src)", page, flags=re.I))
    assert re.sub(rb"data-(?=(?:type|src|srcset|srcdoc)\b)", b"", stripped, flags=re.I) == page


# A model of well-formed documents, rendered both as the app sends them and as the gated
# output must look: the expected rewrite is computed here, independently of the scanner.
_PURPOSES = st.sampled_from(["analytics", "marketing", "analytics marketing", "necessary", "x"])
_QUOTES = st.sampled_from(['"', "'", ""])


@st.composite
def _attribute(draw: st.DrawFn, name: str, values: st.SearchStrategy[str]) -> tuple[str, str]:
    value = draw(values)
    quote = draw(_QUOTES) if re.fullmatch(r"[^\s\"'=<>`]+", value) else '"'
    spelled = draw(st.sampled_from([name, name.upper(), name.capitalize()]))
    space = draw(st.sampled_from(["", " ", "\n"]))
    return spelled, f"{spelled}{space}={space}{quote}{value}{quote}"


@st.composite
def _gated_tag(draw: st.DrawFn) -> tuple[bytes, bytes, frozenset[str]]:
    kind = draw(st.sampled_from(["script", "iframe", "img"]))
    purposes = draw(_PURPOSES)
    attrs = [draw(_attribute("data-consent", st.just(purposes)))]
    renamed = {"script": ("src", "type"), "iframe": ("src", "srcdoc"), "img": ("src", "srcset")}
    urls = st.sampled_from(["/a.js", "https://x.example/p?a=1&amp;b=2", "a b>c", "x=y"])
    for name in draw(st.lists(st.sampled_from([*renamed[kind], "class", "async", "alt"]),
                              unique=True, max_size=4)):  # fmt: skip
        if name == "async":
            attrs.append(("async", "async"))
        elif name == "type":
            attrs.append(draw(_attribute("type", st.sampled_from(["module", "text/javascript"]))))
        else:
            attrs.append(draw(_attribute(name, urls)))
    order = draw(st.permutations(attrs))
    opening = f"<{draw(st.sampled_from([kind, kind.upper()]))}"
    original = opening + "".join(" " + text for _, text in order)
    rewritten = opening + "".join(
        " " + ("data-" + text if spelled.lower() in renamed[kind] else text)
        for spelled, text in order
    )
    if kind == "script":
        rewritten += ' type="text/plain"'
    close = {"script": "></script>", "iframe": "></iframe>", "img": ">"}[kind]
    return (original + close).encode(), (rewritten + close).encode(), frozenset(purposes.split())


_OTHER = st.sampled_from(
    [
        b"text ", b"<p class=\"a>b\">", b"</p>", b"<!-- <img data-consent=x src=y> </body> -->",
        b"<script>var s = '</body>';</script>", b"<a href='/x?a=1'>link</a>", b"<br/>", b"&lt;",
        b"<style>a{}</style>", b"<textarea><script data-consent=x src=y></textarea>",
    ]
)  # fmt: skip


@given(
    parts=st.lists(st.one_of(_gated_tag(), _OTHER.map(lambda b: (b, b, None))), max_size=12),
    granted=st.sampled_from([NONE, ANALYTICS, frozenset({"analytics", "marketing"})]),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
    end=st.sampled_from([b"</body></html>", b"</BODY>", b""]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_gating_matches_an_independent_model(
    parts: list[tuple[bytes, bytes, frozenset[str] | None]],
    granted: frozenset[str],
    cuts: list[int],
    end: bytes,
) -> None:
    start = b"<!doctype html><html><head><title>t</title></head><body>"
    page = start + b"".join(p[0] for p in parts) + end
    expected_body = b"".join(
        gated if needs is not None and not needs <= granted else original
        for original, gated, needs in parts
    )
    expected = b"<!doctype html><html><head>" + H + b"<title>t</title></head><body>" + expected_body
    expected += (B + end) if end else B
    assert run(split(page, cuts), gating=True, granted=granted) == expected

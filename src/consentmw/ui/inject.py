"""Streaming HTML rewriting: insert the banner and Consent Mode, neutralise gated tags.

:class:`Injector` is fed the chunks of a response body and returns the rewritten chunks as
they come. It never holds more than a short tail (a tag or a comment opener cut by a chunk
boundary, at most :data:`MAX_PENDING` bytes), so a 20 MB page costs no more memory than a
small one. It does three things, each at most once per document:

- after ``<head…>`` (or before the first other tag, when the document has no ``<head>``) it
  inserts ``head`` (the Consent Mode default);
- before ``</body>`` (or ``</html>``, or at the very end) it inserts ``body`` (the settings
  link and the banner);
- every ``<script>``, ``<iframe>`` and ``<img>`` start tag with a ``data-consent`` attribute
  naming a purpose outside ``granted`` is neutralised: ``type`` becomes ``data-type`` and
  ``type="text/plain"`` is added (scripts), ``src``/``srcset``/``srcdoc`` become
  ``data-src``/``data-srcset``/``data-srcdoc``. Nothing else in the tag changes, byte for
  byte, so the banner script can undo exactly this.

The tokenising follows the HTML standard where it matters for finding those places: quoted
attribute values (``>`` inside them does not end a tag), comments, and the raw-text elements
(``<script>``, ``<style>``, ``<textarea>``, ``<title>``…) whose content is not markup. The input
is bytes in an ASCII-compatible encoding (UTF-8, Latin-1, Windows-125x); the caller skips
others.

Not a sanitiser and not a general HTML parser: it rewrites the few tags above and copies
everything else through untouched.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator

__all__ = ["MAX_PENDING", "GatedBody", "Injector", "gate_tag"]

#: Longest tag (or comment opener) kept back while waiting for its end. A longer one is
#: hostile or broken; the rest of the body is then copied through unchanged.
MAX_PENDING = 64 * 1024

_WS = b"\t\n\f\r "
# The HTML tokenizer's attribute syntax, written so that every input has at most one way to
# match: a name ends only at a delimiter, an unquoted value only at whitespace or ">", and a
# name followed by "=" must take a value. So a tag whose end has not arrived yet is rejected
# in linear time (no backtracking blow-up), and a value whose closing quote is still to come
# makes the whole tag incomplete, never a shorter attribute.
_VALUE = rb"""(?:"[^"]*"|'[^']*'|[^\t\n\f\r >"'][^\t\n\f\r >]*(?=[\t\n\f\r >])|(?=>))"""
_ATTR_NAME = rb"[^\t\n\f\r />][^\t\n\f\r />=]*(?=[\t\n\f\r />=])"
_ATTR = (
    rb"(?P<name>" + _ATTR_NAME + rb")"
    rb"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?P<value>" + _VALUE + rb")|(?![\t\n\f\r ]*=))"
)
#: A start or end tag: "/" (end tag), the name, the attribute text.
_TAG = re.compile(
    rb"<(/?)([A-Za-z][^\t\n\f\r />]*)(?=[\t\n\f\r />])"
    rb"((?:[\t\n\f\r /]+(?![\t\n\f\r /])|"
    + _ATTR.replace(b"?P<name>", b"").replace(b"?P<value>", b"")
    + rb")*)>"
)
_ATTR_RE = re.compile(_ATTR)
# The rest of a tag after "<" or "</", for the run regex below. Faster than _TAG, and it
# matches a subset: a quote must follow "name=" directly; anything unusual (a "<" or a quote
# in a name or an unquoted value's first character, "name =") makes it fail, and the exact
# scanner takes over.
_PLAIN = rb"""[^<>"'=]*"""
_TAG_REST = (
    rb"[A-Za-z]" + _PLAIN + rb"(?:(?<=[^\t\n\f\r /<>\"'=])=[\t\n\f\r ]*"
    rb"""(?:"[^"]*"|'[^']*'|[^\t\n\f\r "'<>][^\t\n\f\r <>]*(?=[\t\n\f\r >]))""" + _PLAIN + rb")*>"
)
_COMMENT_END = re.compile(rb"--!?>")
#: How far one call of the run regex may look: the regex engine's stack grows with the length
#: it matches (tens of bytes per byte), so long chunks are walked in windows.
_WINDOW = 8 * 1024
_RAW_TEXT = frozenset(
    (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")
)
_GATED = frozenset((b"script", b"iframe", b"img"))
_RENAMED = {
    b"script": frozenset((b"type", b"src")),
    b"iframe": frozenset((b"src", b"srcdoc")),
    b"img": frozenset((b"src", b"srcset")),
}
_PURPOSE_SPLIT = re.compile(r"[\s,]+")


def _anycase(name: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 0x20) if 0x61 <= c <= 0x7A else bytes((c,)) for c in name)


def _run_regex(start_names: frozenset[bytes], end_names: frozenset[bytes]) -> re.Pattern[bytes]:
    """A regex matching a run of markup the scanner would copy unchanged: text, complete
    comments, doctypes, and tags other than ``start_names`` / ``end_names``.

    It is an accelerator only: one C-level match instead of a Python step per tag. It stops
    at anything else (an interesting tag, something unusual, or a construct cut by the end
    of the data), which the exact step-by-step scanner then handles.
    """
    starts = b"|".join(_anycase(n) for n in sorted(start_names))
    ends = b"|".join(_anycase(n) for n in sorted(end_names)) or b"(?!)"
    # The most frequent alternatives first: text, end tags, start tags.
    run = (
        rb"(?:[^<]+"
        rb"|</(?!(?:" + ends + rb")[\t\n\f\r />])" + _TAG_REST
        + rb"|<(?!(?:" + starts + rb")[\t\n\f\r />])" + _TAG_REST
        + rb"|<!--(?:-?>|[\s\S]*?--!?>)"  # a comment
        rb"|<!(?!--)[^>]*>|<\?[^>]*>|</>|</(?=[^A-Za-z>])[^>]*>"  # bogus comments
        rb"|<(?=[^A-Za-z!/?])"  # a "<" that starts nothing
        rb")*"
    )  # fmt: skip
    # Case-insensitive names by character classes: re.IGNORECASE slows every class down.
    return re.compile(run)


_RUNS = {
    # (gating, body still to insert) -> the run regex
    (False, True): _run_regex(_RAW_TEXT | {b"plaintext"}, frozenset((b"body", b"html"))),
    (True, True): _run_regex(_RAW_TEXT | _GATED | {b"plaintext"}, frozenset((b"body", b"html"))),
    (True, False): _run_regex(_RAW_TEXT | _GATED | {b"plaintext"}, frozenset()),
}


#: Where each raw-text element ends: "</name" followed by whitespace, "/" or ">".
_RAW_END = {
    name: re.compile(b"</" + re.escape(name) + rb"[\t\n\f\r />]", re.IGNORECASE)
    for name in _RAW_TEXT
}


def _attr_value(raw: bytes | None) -> str:
    if raw is None:
        return ""
    if raw[:1] in (b'"', b"'"):
        raw = raw[1:-1]
    return html.unescape(raw.decode("latin-1"))


def gate_tag(name: bytes, attrs: bytes, granted: frozenset[str]) -> bytes | None:
    """The rewritten attribute text of a gated start tag, or ``None`` when the tag is not
    gated or its purposes are all granted.

    ``name`` is the lower-case tag name, ``attrs`` everything between the name and the
    closing ``>``. The purposes are the ``data-consent`` value split on spaces and commas; a
    purpose that is not granted (or unknown) keeps the tag neutralised.
    """
    if b"data-consent" not in attrs.lower():
        return None
    # The attribute regex needs to see what ends the last value: give it the tag's ">".
    probe = attrs + b">"
    found: list[tuple[int, int, bytes, bytes | None]] = []
    consent: str | None = None
    has_type = False
    pos = 0
    end = len(attrs)
    while pos < end:
        if attrs[pos] in _WS or attrs[pos] == 0x2F:  # whitespace or "/"
            pos += 1
            continue
        m = _ATTR_RE.match(probe, pos)
        if m is None:  # pragma: no cover - the tag regex already accepted these bytes
            return None
        lname = m.group("name").lower()
        value = m.group("value")
        if lname == b"data-consent" and consent is None:
            consent = _attr_value(value)
        elif lname == b"type":
            if not has_type and _attr_value(value).strip().lower() == "text/plain":
                return None  # already inert: the page gates it itself
            has_type = True
        found.append((m.start(), m.end(), lname, value))
        pos = m.end()
    if consent is None:
        return None
    wanted = {p for p in _PURPOSE_SPLIT.split(consent.strip().lower()) if p}
    if wanted and wanted <= granted:
        return None
    renamed = _RENAMED[name]
    out = bytearray()
    last = 0
    for start, _, lname, _ in found:
        if lname in renamed:
            out += attrs[last:start]
            out += b"data-"
            last = start
    out += attrs[last:]
    if name == b"script":
        out += b' type="text/plain"'
    return bytes(out)


class Injector:
    """Rewrites one HTML body, chunk by chunk. See the module docstring.

    ``head`` and ``body`` are inserted exactly once each (so the output is longer by exactly
    ``len(head) + len(body)`` when ``gating`` is off); ``granted`` is the set of purposes
    whose gated tags stay as they are; ``gating`` turns the tag rewriting on.
    """

    __slots__ = (
        "_body",
        "_done",
        "_fast",
        "_granted",
        "_head",
        "_pending",
        "_raw",
        "_retry",
        "_state",
        "gating",
    )

    def __init__(
        self,
        *,
        head: bytes = b"",
        body: bytes = b"",
        granted: frozenset[str] = frozenset(),
        gating: bool = False,
        fast: bool = True,
    ) -> None:
        self._head: bytes | None = head or None
        self._body: bytes | None = body or None
        self._granted = granted
        self.gating = gating
        self._fast = fast  # use the run regex (off only to test it against the slow path)
        self._pending = bytearray()
        self._state = "text"  # text | comment | raw | copy
        self._raw = b""  # the raw-text element we are in
        self._retry = True  # is it worth re-scanning the pending tail (did a ">" arrive)?
        self._done = False
        if self._head is None and self._body is None and not gating:
            self._state = "copy"

    @property
    def copying(self) -> bool:
        """Nothing is left to do: the rest of the body passes through unchanged."""
        return self._state == "copy" and not self._pending

    def feed(self, chunk: bytes) -> bytes:
        """The rewritten output for one more chunk (possibly empty: a tail is held back)."""
        pending = self._pending
        if not pending:
            if self._state == "copy" or not chunk:
                return chunk
            data = chunk
        else:
            if not self._retry and b">" not in chunk and len(pending) + len(chunk) <= MAX_PENDING:
                pending += chunk  # an unfinished tag cannot end without a ">"
                return b""
            data = bytes(pending) + chunk
            pending.clear()
        out: list[bytes | memoryview] = []
        keep = self._scan(data, out, final=False)
        if keep < len(data):
            if len(data) - keep > MAX_PENDING:
                # A tag that never ends (broken or hostile): stop rewriting, copy the rest.
                out.append(memoryview(data)[keep:])
                self._state = "copy"
            else:
                pending += memoryview(data)[keep:]
        return b"".join(out)

    def finish(self) -> bytes:
        """The rest: a held-back tail (as text) and whatever was not inserted yet."""
        if self._done:
            return b""
        self._done = True
        out: list[bytes | memoryview] = []
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._scan(data, out, final=True)
        if self._head is not None:
            out.append(self._head)
            self._head = None
        if self._body is not None:
            out.append(self._body)
            self._body = None
        self._state = "copy"
        return b"".join(out)

    # -- the scanner

    def _scan(self, data: bytes, out: list[bytes | memoryview], *, final: bool) -> int:
        """Process ``data``, appending the output to ``out``. Returns the index from which
        bytes were held back (an unfinished construct; ``len(data)`` when ``final``)."""
        view = memoryview(data)
        emitted = 0  # data[:emitted] is in ``out``
        pos = 0
        n = len(data)
        keep = n
        self._retry = True
        while pos < n:
            state = self._state
            if state == "copy":
                break
            if self._head is None and self._body is None and not self.gating:
                self._state = "copy"  # everything inserted, nothing to gate
                break
            if state == "comment":
                m = _COMMENT_END.search(data, pos)
                if m is None:
                    # The last bytes may be the start of "--!>": hold them back.
                    keep = max(emitted, pos, n - 3)
                    break
                pos = m.end()
                self._state = "text"
                continue
            if state == "raw":
                m = _RAW_END[self._raw].search(data, pos)
                if m is None:
                    keep = max(emitted, pos, n - len(self._raw) - 2)
                    break
                pos = m.start()
                self._state = "text"
            if self._head is None and self._fast:
                run = _RUNS[self.gating, self._body is not None].match(
                    data, pos, min(n, pos + _WINDOW)
                )
                if run is not None:  # always: the run regex may match nothing
                    pos = run.end()
            lt = data.find(b"<", pos)
            if lt < 0:
                break
            if lt + 1 >= n:
                keep = lt
                break
            c = data[lt + 1]
            if c == 0x21:  # "!"
                if data.startswith(b"<!--", lt):
                    after = lt + 4
                    if n - after < 2:
                        keep = lt
                        break
                    if data[after] == 0x3E:  # "<!-->"
                        pos = after + 1
                    elif data.startswith(b"->", after):  # "<!--->"
                        pos = after + 2
                    else:
                        self._state = "comment"
                        pos = after
                    continue
                if n - lt < 4 and b"<!--".startswith(data[lt:]):
                    keep = lt
                    break
                gt = data.find(b">", lt + 2)  # a bogus comment: doctype, CDATA...
                if gt < 0:
                    keep = lt
                    self._retry = False
                    break
                pos = gt + 1
                continue
            if c == 0x3F:  # "<?": a bogus comment
                gt = data.find(b">", lt + 2)
                if gt < 0:
                    keep = lt
                    self._retry = False
                    break
                pos = gt + 1
                continue
            if c == 0x2F:  # "/"
                if lt + 2 >= n:
                    keep = lt
                    break
                c2 = data[lt + 2]
                if c2 == 0x3E:  # "</>" is dropped by browsers
                    pos = lt + 3
                    continue
                if not (0x41 <= c2 <= 0x5A or 0x61 <= c2 <= 0x7A):
                    gt = data.find(b">", lt + 2)
                    if gt < 0:
                        keep = lt
                        self._retry = False
                        break
                    pos = gt + 1
                    continue
            elif not (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A):
                pos = lt + 1  # a "<" that starts no tag is text
                continue
            m = _TAG.match(data, lt)
            if m is None:
                keep = lt
                self._retry = False
                break
            pos = m.end()
            name = m.group(2).lower()
            if m.group(1):  # an end tag
                if self._head is not None:
                    out.append(view[emitted:lt])
                    out.append(self._head)
                    self._head = None
                    emitted = lt
                if self._body is not None and name in (b"body", b"html"):
                    out.append(view[emitted:lt])
                    out.append(self._body)
                    self._body = None
                    emitted = lt
                    if not self.gating:
                        self._state = "copy"
                        break
                continue
            if self._head is not None and name != b"html":
                if name == b"head":
                    out.append(view[emitted:pos])
                    out.append(self._head)
                    self._head = None
                    emitted = pos
                    continue
                out.append(view[emitted:lt])
                out.append(self._head)
                self._head = None
                emitted = lt
            if self.gating and name in _GATED:
                rewritten = gate_tag(name, m.group(3), self._granted)
                if rewritten is not None:
                    out.append(view[emitted : m.start(3)])
                    out.append(rewritten)
                    emitted = m.end(3)
            if name in _RAW_TEXT:
                self._state = "raw"
                self._raw = name
            elif name == b"plaintext":  # everything after it is text
                self._state = "copy"
                break
        if final:
            keep = n
        out.append(view[emitted:keep])
        return keep


class GatedBody:
    """The WSGI body iterable around an application's: rewrites it through an
    :class:`Injector` and closes the application's iterable when closed (PEP 3333)."""

    __slots__ = ("_app_iter", "_injector")

    def __init__(self, app_iter: Iterable[bytes], injector: Injector) -> None:
        self._app_iter = app_iter
        self._injector = injector

    def __iter__(self) -> Iterator[bytes]:
        """One output chunk per input chunk (possibly empty), then the rest."""
        injector = self._injector
        for chunk in self._app_iter:
            if injector.copying:
                yield chunk
            else:
                yield injector.feed(chunk)
        yield injector.finish()

    def close(self) -> None:
        """Close the application's iterable, iterated or not."""
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()

"""Streaming HTML rewriting: insert the banner and Consent Mode, neutralise gated tags.

:class:`Injector` is fed the chunks of a response body and returns the rewritten chunks as
they come. It never holds more than a short tail (a tag or a comment opener cut by a chunk
boundary, at most :data:`MAX_PENDING` bytes), so a 20 MB page costs no more memory than a
small one. A tag longer than that (an ``<img>`` with a ``data:`` URI, a ``data-props`` JSON
attribute) is streamed through a small tokenizer instead of being held: its bytes go out as
they come, and scanning resumes after its ``>``. It does three things, each at most once per
document:

- after ``<head…>`` (or before the first other tag, when the document has no ``<head>``) it
  inserts ``head`` (the Consent Mode default);
- before ``</body>`` (or ``</html>``, or at the very end) it inserts ``body`` (the settings
  link and the banner);
- every ``<script>``, ``<iframe>`` and ``<img>`` start tag with a ``data-consent`` attribute
  naming a purpose outside ``granted`` is neutralised: ``type`` becomes ``data-type`` and
  ``type="text/plain"`` is added (scripts), ``src``/``srcset``/``srcdoc`` become
  ``data-src``/``data-srcset``/``data-srcdoc``. Nothing else in the tag changes, byte for
  byte, so the banner script can undo exactly this. A gated tag longer than
  :data:`MAX_PENDING` is rewritten as it streams, attribute by attribute, and fails closed:
  an attribute to rename that comes before the ``data-consent`` deciding it is renamed
  anyway (except an ``<img>`` ``src`` that is a ``data:`` URI, which fetches nothing).

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
#: streamed through :class:`_LongTag` instead, so memory stays bounded and gating goes on.
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
_INERT = b' type="text/plain"'


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


def _allowed(consent: str, granted: frozenset[str]) -> bool:
    """Whether a ``data-consent`` value names only granted purposes (and at least one)."""
    wanted = {p for p in _PURPOSE_SPLIT.split(consent.strip().lower()) if p}
    return bool(wanted) and wanted <= granted


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
        elif lname == b"type" and name == b"script":
            if not has_type and _attr_value(value).strip().lower() == "text/plain":
                return None  # already inert: the page gates it itself
            has_type = True
        found.append((m.start(), m.end(), lname, value))
        pos = m.end()
    if consent is None or _allowed(consent, granted):
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
        if found[-1][3] == b"":
            # "<script … a=>": a browser would read the next attribute as a's value.
            out += b'""'
        out += _INERT
    return bytes(out)


# Where the tokenizer can be inside a long tag (HTML standard, "tag name state" to "after
# attribute value (quoted) state"), keeping only what decides where the tag ends and which
# attribute a byte belongs to: "self-closing start tag" and "after attribute value (quoted)"
# act like "before attribute name" on every byte that matters here.
_IN_TAG_NAME = 0
_IN_BEFORE_ATTR = 1
_IN_ATTR_NAME = 2
_IN_AFTER_ATTR = 3
_IN_BEFORE_VALUE = 4
_IN_DOUBLE = 5
_IN_SINGLE = 6
_IN_UNQUOTED = 7
_IN_BOGUS = 8  # "<!…", "<?…", "</" and no letter: a bogus comment, which ends at the first ">"
#: The byte ending a run in the states that consume runs.
_STOP = {
    _IN_TAG_NAME: re.compile(rb"[\t\n\f\r />]"),
    _IN_ATTR_NAME: re.compile(rb"[\t\n\f\r />=]"),
    _IN_DOUBLE: re.compile(rb'"'),
    _IN_SINGLE: re.compile(rb"'"),
    _IN_UNQUOTED: re.compile(rb"[\t\n\f\r >]"),
    _IN_BOGUS: re.compile(rb">"),
}
#: The next byte that is not skipped in the states that skip whitespace (and "/").
_SKIP = {
    _IN_BEFORE_ATTR: re.compile(rb"[^\t\n\f\r /]"),
    _IN_AFTER_ATTR: re.compile(rb"[^\t\n\f\r ]"),
    _IN_BEFORE_VALUE: re.compile(rb"[^\t\n\f\r ]"),
}
#: The start of a start or end tag: "/" (end tag) and the name.
_OPEN = re.compile(rb"<(/?)([A-Za-z][^\t\n\f\r />]*)")
# A long gated tag is decided attribute by attribute; whether it is gated at all depends on
# its data-consent, which may come after the attributes to rename. _UNDECIDED: not seen yet.
_PASS = 0
_UNDECIDED = 1
_GATE = 2
#: How far after the start of an attribute to rename we may hold bytes back before deciding
#: (to read an <img> src's first bytes: is it a data: URI?). Past it, it is renamed.
_LOOKAHEAD = 256
#: Longest data-consent value read; a longer one is treated as naming ungranted purposes.
_CONSENT_MAX = 1024
_NAME_MAX = 16  # longer attribute names are none of those we look for


class _LongTag:
    """One tag longer than the injector holds back, tokenized as it streams through.

    For a tag that is not gated this only finds the tag's end; its bytes are copied as they
    come. For a gated tag (``watch``) it also applies the rewrite of :func:`gate_tag`, one
    attribute at a time: the bytes of an attribute to rename (``src``, ``type``…) are held
    until its name is complete, then go out with or without ``data-``. When the tag's
    ``data-consent`` has not been seen yet at that moment, the tag is gated (fail closed:
    its data-consent may well follow), except for an ``<img src>`` whose value is a
    ``data:`` URI, which fetches nothing and is let through. A gated ``<script>`` gets
    ``type="text/plain"`` before its ``>``.

    The decisions depend on the tag's bytes only, never on where chunks were cut.
    """

    __slots__ = (
        "_attr",
        "_emitted",
        "_granted",
        "_mark",
        "_out",
        "_renamed",
        "_src",
        "_value",
        "_view",
        "end_tag",
        "name",
        "state",
        "status",
    )

    def __init__(
        self,
        name: bytes | None,
        *,
        end_tag: bool = False,
        bogus: bool = False,
        watch: bool = False,
        granted: frozenset[str] = frozenset(),
    ) -> None:
        self.name = name  # lower case; None for a bogus comment or a name cut by the limit
        self.end_tag = end_tag
        self.state = _IN_BOGUS if bogus else _IN_TAG_NAME
        self.status = _UNDECIDED if watch and name in _RENAMED else _PASS
        self._granted = granted
        self._renamed = _RENAMED[name] if self.status == _UNDECIDED and name else frozenset()
        self._attr = bytearray()  # the current attribute's name, lower case, capped
        self._value: bytearray | None = None  # the current value, when it decides something
        self._src = False  # an <img src> waiting for the first bytes of its value
        self._mark = -1  # where the attribute being held starts in the current data
        self._out: list[bytes | memoryview] = []
        self._view = memoryview(b"")
        self._emitted = 0

    def scan(
        self, data: bytes, pos: int, out: list[bytes | memoryview], emitted: int, *, final: bool
    ) -> tuple[int, int, bool]:
        """Tokenize ``data[pos:]``, appending output up to ``emitted`` to ``out``.

        Returns ``(pos, emitted, done)``: ``done`` with ``pos`` just after the tag's ``>``,
        or not done with ``pos`` where bytes are held back (``len(data)`` when none are).
        """
        self._out = out
        self._view = memoryview(data)
        self._emitted = emitted
        try:
            pos, done = self._run(data, pos, final=final)
            return pos, self._emitted, done
        finally:
            self._out = []
            self._view = memoryview(b"")

    def _run(self, data: bytes, pos: int, *, final: bool) -> tuple[int, bool]:
        n = len(data)
        while pos < n:
            state = self.state
            skip = _SKIP.get(state)
            if skip is not None:
                found = skip.search(data, pos)
                if found is None:
                    pos = n
                    break
                pos = found.start()
                c = data[pos]
                if c == 0x3E:  # ">"
                    if state != _IN_BEFORE_ATTR:
                        self._attr_done()  # "name >" (no value) or "name=>" (an empty one)
                    return self._close(pos), True
                if state == _IN_BEFORE_VALUE:
                    if c == 0x22:
                        self.state = _IN_DOUBLE
                        pos += 1
                    elif c == 0x27:
                        self.state = _IN_SINGLE
                        pos += 1
                    else:
                        self.state = _IN_UNQUOTED
                    continue
                if state == _IN_AFTER_ATTR:
                    if c == 0x3D:  # "="
                        self.state = _IN_BEFORE_VALUE
                        pos += 1
                        continue
                    self._attr_done()  # the attribute had no value
                    if c == 0x2F:  # "/"
                        self.state = _IN_BEFORE_ATTR
                        pos += 1
                        continue
                # A new attribute name starts here; its first byte may be "=".
                self._name_start(pos)
                self._attr.append(c | 0x20 if 0x41 <= c <= 0x5A else c)
                self.state = _IN_ATTR_NAME
                pos += 1
                continue
            m = _STOP[state].search(data, pos)
            stop = n if m is None else m.start()
            if state == _IN_ATTR_NAME:
                if len(self._attr) <= _NAME_MAX:
                    self._attr += data[pos : min(stop, pos + _NAME_MAX + 1)].lower()
            elif state in (_IN_DOUBLE, _IN_SINGLE, _IN_UNQUOTED):
                self._read_value(data, pos, stop)
            if m is None:
                pos = n
                break
            c = data[stop]
            pos = stop + 1
            if state in (_IN_DOUBLE, _IN_SINGLE):
                self._attr_done()
                self.state = _IN_BEFORE_ATTR
                continue
            if state == _IN_ATTR_NAME:
                self._name_end()
                if c == 0x3D:
                    self.state = _IN_BEFORE_VALUE
                    continue
                if c != 0x2F and c != 0x3E:  # whitespace
                    self.state = _IN_AFTER_ATTR
                    continue
                self._attr_done()
            elif state == _IN_UNQUOTED:
                self._attr_done()
            if c == 0x3E:
                return self._close(stop), True
            self.state = _IN_BEFORE_ATTR  # whitespace or "/"
        return self._hold(n, final=final), False

    # -- attributes

    def _name_start(self, pos: int) -> None:
        self._attr.clear()
        if self.status != _PASS:
            self._mark = pos  # held until we know whether it is renamed

    def _name_end(self) -> None:
        name = bytes(self._attr)
        if self.status == _UNDECIDED and name == b"data-consent":
            self._value = bytearray()
        if self._mark < 0:
            return
        if name not in self._renamed:
            self._mark = -1
        elif self.status == _UNDECIDED and self.name == b"img" and name == b"src":
            self._src = True  # a data: URI fetches nothing: look at the value first
            self._value = bytearray()
        else:
            self._rename()

    def _read_value(self, data: bytes, start: int, stop: int) -> None:
        value = self._value
        if value is None:
            return
        if self._src:
            old = len(value)
            value += data[start : min(stop, start + 5 - old)]
            if len(value) == 5:
                self._decide_src(start + 5 - old)
        elif len(value) <= _CONSENT_MAX:
            value += data[start : min(stop, start + _CONSENT_MAX + 1 - len(value))]

    def _attr_done(self) -> None:
        """The current attribute is complete (with its value, or with none)."""
        if self._src:
            self._decide_src(None)
        elif self._value is not None:  # the first data-consent
            value = self._value
            self._value = None
            consent = html.unescape(value.decode("latin-1"))
            allowed = len(value) <= _CONSENT_MAX and _allowed(consent, self._granted)
            self.status = _PASS if allowed else _GATE

    def _decide_src(self, end: int | None) -> None:
        """``end``: where the value's first five bytes end (``None``: it has fewer)."""
        value = self._value
        self._src = False
        self._value = None
        if (
            end is not None
            and end - self._mark <= _LOOKAHEAD
            and value is not None
            and value.lower() == b"data:"
        ):
            self._mark = -1
        else:
            self._rename()

    def _rename(self) -> None:
        """Prefix the held attribute with ``data-``; the tag is gated from now on."""
        self.status = _GATE
        self._out.append(self._view[self._emitted : self._mark])
        self._out.append(b"data-")
        self._emitted = self._mark
        self._mark = -1

    def _close(self, gt: int) -> int:
        if self.status == _GATE and self.name == b"script":
            self._out.append(self._view[self._emitted : gt])
            self._out.append(b'""' + _INERT if self.state == _IN_BEFORE_VALUE else _INERT)
            self._emitted = gt
        return gt + 1

    def _hold(self, n: int, *, final: bool) -> int:
        """The data ended inside the tag: where to hold back from (``n``: nothing held)."""
        mark = self._mark
        if mark < 0:
            return n
        attr = bytes(self._attr)
        if self.state == _IN_ATTR_NAME and not any(r.startswith(attr) for r in self._renamed):
            self._mark = -1  # it cannot become a name we rename
            return n
        if not final and n - mark < _LOOKAHEAD:
            # Start again at this attribute with the next chunk.
            self.state = _IN_BEFORE_ATTR
            self._mark = -1
            self._src = False
            self._value = None
            return mark
        self._rename()  # it waited too long: fail closed
        self._src = False
        self._value = None
        return n


class Injector:
    """Rewrites one HTML body, chunk by chunk. See the module docstring.

    ``head`` and ``body`` are inserted exactly once each (so the output is longer by exactly
    ``len(head) + len(body)`` when ``gating`` is off); ``granted`` is the set of purposes
    whose gated tags stay as they are; ``gating`` turns the tag rewriting on;
    ``max_pending`` (at least 64) is the longest tail held back, see :data:`MAX_PENDING`.
    """

    __slots__ = (
        "_body",
        "_done",
        "_fast",
        "_granted",
        "_head",
        "_max_pending",
        "_pending",
        "_raw",
        "_retry",
        "_state",
        "_tag",
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
        max_pending: int = MAX_PENDING,
    ) -> None:
        if max_pending < 64:
            raise ValueError(f"max_pending must be at least 64, not {max_pending}")
        self._head: bytes | None = head or None
        self._body: bytes | None = body or None
        self._granted = granted
        self.gating = gating
        self._fast = fast  # use the run regex (off only to test it against the slow path)
        self._max_pending = max_pending
        self._pending = bytearray()
        self._state = "text"  # text | comment | raw | tag | copy
        self._raw = b""  # the raw-text element we are in
        self._tag: _LongTag | None = None  # the long tag we are in (state "tag")
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
            if (
                not self._retry
                and b">" not in chunk
                and len(pending) + len(chunk) <= self._max_pending
            ):
                pending += chunk  # an unfinished tag cannot end without a ">"
                return b""
            data = bytes(pending) + chunk
            pending.clear()
        out: list[bytes | memoryview] = []
        keep = self._scan(data, out, final=False)
        while len(data) - keep > self._max_pending and self._state != "tag":
            # A tag too long to hold (a data: URI, a JSON attribute, or broken): send what
            # we have and follow the rest of it as it streams (bytes held in state "tag"
            # stay under _LOOKAHEAD).
            self._enter(data, keep, out, keep)
            keep = self._scan(data, out, final=False, start=keep)
        if keep < len(data):
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
        self._tag = None
        return b"".join(out)

    # -- the scanner

    def _scan(
        self, data: bytes, out: list[bytes | memoryview], *, final: bool, start: int = 0
    ) -> int:
        """Process ``data[start:]``, appending the output to ``out``. Returns the index from
        which bytes were held back (an unfinished construct; ``len(data)`` when ``final``)."""
        view = memoryview(data)
        emitted = start  # data[start:emitted] is in ``out``
        pos = start
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
            if state == "tag":
                tag = self._tag
                assert tag is not None
                pos, emitted, done = tag.scan(data, pos, out, emitted, final=final)
                if not done:
                    keep = pos
                    break
                self._tag = None
                self._state = "text"
                if not tag.end_tag and tag.name is not None:
                    if tag.name == b"head" and self._head is not None:
                        out.append(view[emitted:pos])
                        out.append(self._head)
                        self._head = None
                        emitted = pos
                    if tag.name in _RAW_TEXT:
                        self._state = "raw"
                        self._raw = tag.name
                    elif tag.name == b"plaintext":
                        self._state = "copy"
                continue
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
            if m.end() - lt > self._max_pending:
                # Long tags take the streaming path whole or cut: the same output either way.
                emitted = self._enter(data, lt, out, emitted)
                pos = lt
                continue
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

    def _enter(self, data: bytes, lt: int, out: list[bytes | memoryview], emitted: int) -> int:
        """Start following the long tag (or bogus comment) at ``data[lt]`` in state "tag",
        inserting ``head`` or ``body`` before it where a short one would get them. Returns
        the new ``emitted``."""
        m = _OPEN.match(data, lt)
        if m is None:  # "<!…", "<?…", "</" and no letter
            self._tag = _LongTag(None, bogus=True)
        else:
            end_tag = bool(m.group(1))
            # A name reaching the end of the data may go on: it is too long to be one we know.
            name = m.group(2).lower() if m.end() < len(data) else None
            head, body = self._head, self._body
            if end_tag or (head is not None and name not in (b"html", b"head")):
                if head is not None:
                    out.append(memoryview(data)[emitted:lt])
                    out.append(head)
                    self._head = None
                    emitted = lt
                if end_tag and body is not None and name in (b"body", b"html"):
                    out.append(memoryview(data)[emitted:lt])
                    out.append(body)
                    self._body = None
                    emitted = lt
            self._tag = _LongTag(
                name,
                end_tag=end_tag,
                watch=self.gating and not end_tag and name in _GATED,
                granted=self._granted,
            )
        self._state = "tag"
        return emitted


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

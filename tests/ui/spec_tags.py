"""The start tags a browser sees in a document, written from the HTML standard's tokenizer
(13.2.5) one state at a time, independently of the injector's regexes and of its long-tag
tokenizer, so that tests can check what a browser would run.

Only what finding start tags and their attributes needs: tags, attributes and their quoting,
comments and bogus comments, the raw-text and RCDATA elements and ``<plaintext>``. A tag cut
by the end of the document is dropped, as browsers drop it. Values are decoded with
:func:`html.unescape`, near enough for the tests' values.
"""

from __future__ import annotations

import html
import re

WS = "\t\n\f\r "
RAW_TEXT = {"script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title"}
_COMMENT_END = re.compile("--!?>")

Attrs = dict[str, str | None]


def start_tags(document: bytes) -> list[tuple[str, Attrs]]:
    """Every start tag with its attributes (the first of duplicates, as browsers keep)."""
    s = document.decode("latin-1")
    n = len(s)
    tags: list[tuple[str, Attrs]] = []
    i = 0
    while True:
        lt = s.find("<", i)
        if lt < 0 or lt + 1 >= n:
            return tags
        i = lt + 1
        c = s[i]
        if c == "!" and s.startswith("<!--", lt):
            i = _comment(s, lt + 4)
        elif c in "!?":
            i = _bogus(s, i)
        elif c == "/":
            if i + 1 >= n:
                return tags
            c2 = s[i + 1]
            if c2 == ">":
                i += 2
            elif not _letter(c2):
                i = _bogus(s, i)
            else:
                end = _tag(s, i + 1)
                if end is None:
                    return tags
                i = end[2]
        elif _letter(c):
            tag = _tag(s, i)
            if tag is None:
                return tags
            name, attrs, i = tag
            tags.append((name, attrs))
            if name == "plaintext":
                return tags
            if name in RAW_TEXT:
                m = re.compile("</" + name + "[" + WS + "/>]", re.IGNORECASE).search(s, i)
                if m is None:
                    return tags
                i = m.start()


def _letter(c: str) -> bool:
    return "a" <= c <= "z" or "A" <= c <= "Z"


def _lower(c: str) -> str:
    return c.lower() if "A" <= c <= "Z" else c


def _bogus(s: str, i: int) -> int:
    gt = s.find(">", i)
    return len(s) if gt < 0 else gt + 1


def _comment(s: str, i: int) -> int:
    """``i`` is just after ``<!--``: where the comment ends."""
    if s.startswith(">", i):  # "<!-->"
        return i + 1
    if s.startswith("->", i):  # "<!--->"
        return i + 2
    m = _COMMENT_END.search(s, i)
    return len(s) if m is None else m.end()


def _tag(s: str, i: int) -> tuple[str, Attrs, int] | None:
    """The tag whose name starts at ``s[i]``: name, attributes, index after its ``>``;
    ``None`` when the document ends inside it."""
    n = len(s)
    name = ""
    attrs: list[list[str | None]] = []  # [name, value]
    state = "tag name"
    while i < n:
        c = s[i]
        i += 1
        if state == "tag name":
            if c in WS:
                state = "before attribute name"
            elif c == "/":
                state = "self-closing start tag"
            elif c == ">":
                return name, _first(attrs), i
            else:
                name += _lower(c)
        elif state == "before attribute name":
            if c in WS:
                pass
            elif c in "/>":
                i -= 1
                state = "after attribute name"
            else:  # "=" too starts a name here
                attrs.append([_lower(c), None])
                state = "attribute name"
        elif state == "attribute name":
            if c in WS or c in "/>":
                i -= 1
                state = "after attribute name"
            elif c == "=":
                state = "before attribute value"
            else:
                attrs[-1][0] = (attrs[-1][0] or "") + _lower(c)
        elif state == "after attribute name":
            if c in WS:
                pass
            elif c == "/":
                state = "self-closing start tag"
            elif c == "=":
                state = "before attribute value"
            elif c == ">":
                return name, _first(attrs), i
            else:
                attrs.append(["", None])
                i -= 1
                state = "attribute name"
        elif state == "before attribute value":
            if c in WS:
                pass
            elif c in "\"'":
                close = s.find(c, i)
                if close < 0:
                    return None
                attrs[-1][1] = s[i:close]
                i = close + 1
                state = "after attribute value (quoted)"
            elif c == ">":
                attrs[-1][1] = ""
                return name, _first(attrs), i
            else:
                attrs[-1][1] = c
                state = "attribute value (unquoted)"
        elif state == "attribute value (unquoted)":
            if c in WS:
                state = "before attribute name"
            elif c == ">":
                return name, _first(attrs), i
            else:
                attrs[-1][1] = (attrs[-1][1] or "") + c
        elif state == "after attribute value (quoted)":
            if c in WS:
                state = "before attribute name"
            elif c == "/":
                state = "self-closing start tag"
            elif c == ">":
                return name, _first(attrs), i
            else:
                i -= 1
                state = "before attribute name"
        else:  # self-closing start tag
            if c == ">":
                return name, _first(attrs), i
            i -= 1
            state = "before attribute name"
    return None


def _first(attrs: list[list[str | None]]) -> Attrs:
    out: Attrs = {}
    for name, value in attrs:
        assert name is not None
        if name not in out:
            out[name] = None if value is None else html.unescape(value)
    return out


def gated(consent: str | None, granted: frozenset[str]) -> bool:
    """Whether a ``data-consent`` value asks for a purpose outside ``granted`` (an empty one
    asks for nothing that can be granted)."""
    if consent is None:
        return False
    wanted = {p for p in re.split(r"[\s,]+", consent.strip().lower()) if p}
    return not (wanted and wanted <= granted)


def active(name: str, attrs: Attrs) -> bool:
    """Whether a browser would run or fetch something for this tag: a script whose type is
    not ``text/plain``, an iframe with a ``src`` or ``srcdoc``, an image with a ``srcset``
    or a ``src`` other than a ``data:`` URI (which fetches nothing)."""
    if name == "script":
        return (attrs.get("type") or "").strip().lower() != "text/plain"
    if name == "iframe":
        return "src" in attrs or "srcdoc" in attrs
    if name == "img":
        src = attrs.get("src")
        fetches = src is not None and not src.strip().lower().startswith("data:")
        return fetches or "srcset" in attrs
    return False


def live_gated_tags(document: bytes, granted: frozenset[str]) -> list[tuple[str, Attrs]]:
    """The script, iframe and img tags of ungranted purposes that would still run or fetch."""
    return [
        (name, attrs)
        for name, attrs in start_tags(document)
        if name in ("script", "iframe", "img")
        and gated(attrs.get("data-consent"), granted)
        and active(name, attrs)
    ]

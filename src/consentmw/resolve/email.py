"""Strict e-mail address validation and normalisation, and form-field capture.

An e-mail address is an identifier here: the rights layer finds a subject's events by it, the
opt-out lists match on it. So :func:`normalize_email` accepts only the plain ``local@domain``
form a person types into a field, and returns one canonical spelling of it (lower case, the
domain as IDNA A-labels), so that the same person always gets the same key. Anything
ambiguous is rejected rather than guessed at.

The standard library's :func:`email.utils.parseaddr` is deliberately not used: it is lenient
by design (display names, comments, quoted strings, obsolete syntax) and has had parsing bugs
that split one address into another (CVE-2023-27043). Do not use this module to parse
mail headers in general; use :mod:`email.headerregistry` for that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "MAX_ADDRESS_LENGTH",
    "MAX_LOCAL_LENGTH",
    "capture_fields",
    "claimed_email_from_header",
    "normalize_email",
]

#: RFC 5321 limits: 64 octets of local part, 254 octets of address (a 256-octet path minus
#: the angle brackets).
MAX_LOCAL_LENGTH = 64
MAX_ADDRESS_LENGTH = 254

# RFC 5322 dot-atom over ASCII atext: no quoted strings, no comments, no spaces, no dots at
# either end or doubled.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# One LDH label of a host name (RFC 1123): letters, digits, hyphens, not at either end.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none of them has
# a place in an address and several split log lines or headers.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalize_email(text: str | None) -> str | None:
    """Return the canonical form of an e-mail address, or ``None`` if it is not one.

    Accepted: ``local@domain`` where the local part is an RFC 5322 dot-atom of ASCII
    characters (at most 64) and the domain has at least two labels, each a valid host name
    label after IDNA encoding. Surrounding spaces are removed. Rejected: control characters
    (CR, LF, NUL …), display names (``Name <a@b>``), comments, quoted local parts, more than
    one ``@``, empty parts, domain literals, a trailing dot, an all-numeric top-level label,
    addresses over 254 characters.

    The result is lower-cased as a whole (consentmw matches subjects case-insensitively, which
    is what people expect even though RFC 5321 lets a server treat the local part as case
    sensitive), with the domain in IDNA A-label form (``bücher.example`` becomes
    ``xn--bcher-kva.example``). Never raises.
    """
    if not isinstance(text, str):
        return None
    # Bound the work before any scanning: a real address with an IDN domain can be longer in
    # Unicode than in A-labels only by a little, so this never rejects a valid address.
    if len(text) > 4 * MAX_ADDRESS_LENGTH:
        return None
    text = text.strip(" ")
    if _CONTROL_RE.search(text):
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or "@" in local:
        return None
    if len(local) > MAX_LOCAL_LENGTH or not _LOCAL_RE.fullmatch(local):
        return None
    ascii_domain = _normalize_domain(domain)
    if ascii_domain is None:
        return None
    address = f"{local.lower()}@{ascii_domain}"
    if len(address) > MAX_ADDRESS_LENGTH:
        return None
    return address


def _normalize_domain(domain: str) -> str | None:
    """The domain in lower-case A-labels, or ``None`` if it is not a valid host name."""
    labels = domain.split(".")
    if len(labels) < 2:
        return None
    out = []
    for label in labels:
        if not label:
            return None
        if label.isascii():
            ascii_label = label.lower()
            if ascii_label.startswith("xn--") and not _decodes(ascii_label):
                return None
        else:
            try:
                # IDNA 2003 from the standard library (nameprep, then punycode); the ``idna``
                # package (IDNA 2008) is not a dependency of consentmw.
                ascii_label = label.encode("idna").decode("ascii").lower()
            except UnicodeError:
                return None
        if not _LABEL_RE.fullmatch(ascii_label):
            return None
        out.append(ascii_label)
    if out[-1].isdigit():
        return None
    return ".".join(out)


def _decodes(ascii_label: str) -> bool:
    """True if an ``xn--`` label is valid punycode that round-trips through IDNA."""
    try:
        ascii_label.encode("ascii").decode("idna")
    except UnicodeError:
        return False
    return True


def claimed_email_from_header(from_header: str | None) -> str | None:
    """The address in an HTTP ``From`` header (RFC 9110, section 10.1.2), or ``None``.

    The same strict parser as :func:`normalize_email`, so only a bare ``local@domain`` is
    accepted (a ``Name <addr>`` form is rejected). The header is sent by crawlers and
    by nobody else, and nothing checks it: the result is only ever a *claimed* address,
    stored in the event's ``claimed_email`` field and never in ``email``.
    """
    return normalize_email(from_header)


def capture_fields(
    form: Mapping[str, Sequence[str]],
    fields: Sequence[str],
    *,
    max_length: int = 1000,
) -> dict[str, str]:
    """Keep only the configured ``fields`` of a parsed form, as plain strings.

    ``form`` maps each field name to its values (a werkzeug ``MultiDict`` converted with
    ``to_dict(flat=False)``, or :func:`urllib.parse.parse_qs` output); the first value of each
    configured field is kept, cut to ``max_length`` characters. Fields that are absent,
    empty or not text are left out. The values are not redacted here: the redactor does that
    on the dispatcher, before any sink sees them.
    """
    captured: dict[str, str] = {}
    for name in fields:
        values = form.get(name)
        if values is None:
            continue
        # A bare string is a sequence of characters: take it whole, not its first letter.
        try:
            first = values if isinstance(values, str) else next(iter(values), None)
        except TypeError:  # not a sequence at all
            continue
        if isinstance(first, str) and first:
            captured[name] = first[:max_length]
    return captured

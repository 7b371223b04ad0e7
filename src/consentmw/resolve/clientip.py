"""Which address the visitor connected from, behind the operator's own proxies.

:func:`client_ip` is the one place that decides which hop of ``X-Forwarded-For`` to believe.
It follows werkzeug's ``ProxyFix`` rule: with ``trusted_proxies = N`` the address the
outermost trusted proxy saw is the *N*-th element from the right of the header, and anything
to the left of it was written by the client and may be forged. It runs on the request thread
(the visitor's address is needed before the event is queued), so it is a pure function with
bounded work: it walks the header from the right only as far as it needs to.

Do not use it to parse ``Forwarded`` (RFC 7239) headers, and do not set ``trusted_proxies``
higher than the number of proxies that *always* sit in front of the application: one too many
and the client chooses its own address.
"""

from __future__ import annotations

import ipaddress

__all__ = ["MAX_HOP_LENGTH", "client_ip", "parse_address"]

#: The longest single hop :func:`client_ip` looks at. The longest valid element is a
#: bracketed IPv6 address with a zone id and a port (about 70 characters); anything longer
#: is junk, and capping it bounds the work an attacker can cause with a huge header.
MAX_HOP_LENGTH = 256

# Whitespace proxies and clients put around list elements (RFC 9110 OWS is space and tab).
_OWS = " \t"


def client_ip(
    remote_addr: str | None,
    forwarded_for: str | None,
    trusted_proxies: int = 0,
) -> str | None:
    """Return the visitor's address as a normalised string, or ``None``.

    With ``trusted_proxies`` 0 (the default) this is ``remote_addr``. With *N* > 0 it is the
    *N*-th element from the right of ``forwarded_for`` (the raw ``X-Forwarded-For`` value),
    which is the address the outermost of the *N* trusted proxies saw. When the header has
    fewer than *N* elements, or that element is not an address, it falls back to
    ``remote_addr`` (the nearest proxy), never to an element further left, which the client
    could have written.

    Addresses are accepted as ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]``, ``[::1]:80``,
    with IPv6 zone ids (dropped) and surrounding whitespace; an IPv4-mapped IPv6 address is
    returned as the IPv4 address. The result is :mod:`ipaddress`'s compressed text form.
    Never raises: junk gives ``None``.
    """
    if trusted_proxies > 0 and isinstance(forwarded_for, str):
        hop = _nth_from_right(forwarded_for, trusted_proxies)
        if hop is not None:
            parsed = parse_address(hop)
            if parsed is not None:
                return parsed
    return parse_address(remote_addr)


def _nth_from_right(header: str, n: int) -> str | None:
    """The ``n``-th comma-separated element from the right, or ``None`` if there are fewer.

    Elements are counted as werkzeug counts them (empty elements included), so a client
    cannot shift the count by sending ``,,``: it can only add elements to the left.
    """
    end = len(header)
    for index in range(n):
        # Look for the separating comma only within one element's maximum length: an element
        # longer than that is junk anyway, and this keeps the scan proportional to n.
        start = header.rfind(",", max(0, end - MAX_HOP_LENGTH - 1), end)
        if start == -1:
            # No comma within reach: either the remaining text is the leftmost element, or an
            # element is too long to be an address.
            if index == n - 1 and end <= MAX_HOP_LENGTH:
                return header[:end]
            return None
        if index == n - 1:
            return header[start + 1 : end]
        end = start
    return None  # pragma: no cover - the loop always returns when n >= 1


def parse_address(text: str | None) -> str | None:
    """Parse one address as found in ``REMOTE_ADDR`` or an ``X-Forwarded-For`` element.

    Returns the normalised address (compressed IPv6, IPv4-mapped IPv6 as IPv4, zone id
    removed) or ``None`` when ``text`` is not an address in one of the forms
    :func:`client_ip` accepts. Never raises.
    """
    if not isinstance(text, str) or len(text) > MAX_HOP_LENGTH:
        return None
    text = text.strip(_OWS)
    # ipaddress accepts only ASCII digits itself, but checking first keeps every branch
    # below on ASCII text (no fullwidth digits, no case-mapping surprises).
    if not text or not text.isascii():
        return None
    if text[0] == "[":
        close = text.find("]")
        if close == -1:
            return None
        rest = text[close + 1 :]
        if rest and not _is_port_suffix(rest):
            return None
        host = text[1:close]
        if ":" not in host:  # brackets are for IPv6 only
            return None
    elif text.count(":") == 1:
        # One colon: IPv4 with a port. (Bare IPv6 has at least two colons.)
        host, _, port = text.partition(":")
        if not _is_port_suffix(":" + port) or "." not in host:
            return None
    else:
        host = text
    host, percent, zone = host.partition("%")
    # A zone id names an interface of the machine that wrote it: meaningless here, so it is
    # dropped, but only from an IPv6 address and only when it looks like one.
    if percent and not (zone and ":" in host and zone.replace("-", "").replace(".", "").isalnum()):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
    return str(address)


def _is_port_suffix(text: str) -> bool:
    port = text[1:]
    return text[:1] == ":" and 0 < len(port) <= 5 and port.isdigit() and int(port) <= 65535

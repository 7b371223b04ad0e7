from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentmw.resolve.clientip import MAX_HOP_LENGTH, client_ip, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("203.0.113.7", "203.0.113.7", id="ipv4"),
        pytest.param("203.0.113.7:8080", "203.0.113.7", id="ipv4-port"),
        pytest.param("  203.0.113.7\t", "203.0.113.7", id="whitespace"),
        pytest.param("2001:DB8::1", "2001:db8::1", id="ipv6-normalised"),
        pytest.param("2001:db8:0:0:0:0:0:1", "2001:db8::1", id="ipv6-compressed"),
        pytest.param("[2001:db8::1]", "2001:db8::1", id="ipv6-brackets"),
        pytest.param("[2001:db8::1]:443", "2001:db8::1", id="ipv6-brackets-port"),
        pytest.param("::ffff:198.51.100.2", "198.51.100.2", id="ipv4-mapped"),
        pytest.param("[::ffff:198.51.100.2]:80", "198.51.100.2", id="ipv4-mapped-brackets"),
        pytest.param("fe80::1%eth0", "fe80::1", id="zone-id-dropped"),
        pytest.param("[fe80::1%en0]:443", "fe80::1", id="zone-id-brackets-port"),
        pytest.param("fe80::1%", None, id="empty-zone"),
        pytest.param("203.0.113.7%eth0", None, id="zone-on-ipv4"),
        pytest.param("fe80::1%a%b", None, id="two-zones"),
        pytest.param("unknown", None, id="rfc7239-unknown"),
        pytest.param("_hidden", None, id="obfuscated-identifier"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("[203.0.113.7]", None, id="ipv4-in-brackets"),
        pytest.param("[2001:db8::1", None, id="unclosed-bracket"),
        pytest.param("[2001:db8::1]x", None, id="junk-after-bracket"),
        pytest.param("203.0.113.7:", None, id="empty-port"),
        pytest.param("203.0.113.7:65536", None, id="port-out-of-range"),
        pytest.param("203.0.113.7:http", None, id="port-not-numeric"),
        pytest.param("203.0.113.07", None, id="leading-zero-octet"),
        pytest.param("203.0.113", None, id="three-octets"),
        pytest.param("\uff12\uff10\uff13.0.113.7", None, id="fullwidth-digits"),
        pytest.param("203.0.113.7\r\nX-Evil: 1", None, id="crlf"),
        pytest.param("<script>", None, id="markup"),
        pytest.param("1" * 300, None, id="too-long"),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        pytest.param("10.0.0.1", "198.51.100.2", 0, "10.0.0.1", id="untrusted-header-ignored"),
        pytest.param("10.0.0.1", None, 1, "10.0.0.1", id="no-header"),
        pytest.param("10.0.0.1", "198.51.100.2", 1, "198.51.100.2", id="one-proxy"),
        pytest.param(
            "10.0.0.1", "6.6.6.6, 198.51.100.2", 1, "198.51.100.2", id="spoofed-prefix-ignored"
        ),
        pytest.param(
            "10.0.0.2", "6.6.6.6, 198.51.100.2, 10.0.0.1", 2, "198.51.100.2", id="two-proxies"
        ),
        pytest.param("10.0.0.2", "198.51.100.2", 2, "10.0.0.2", id="fewer-hops-than-trusted"),
        pytest.param("10.0.0.2", "198.51.100.2,10.0.0.1", 2, "198.51.100.2", id="leftmost-is-nth"),
        pytest.param("10.0.0.1", "junk", 1, "10.0.0.1", id="junk-hop-falls-back"),
        pytest.param("10.0.0.1", "198.51.100.2, ", 1, "10.0.0.1", id="empty-last-element"),
        pytest.param("10.0.0.2", ",10.0.0.1", 2, "10.0.0.2", id="empty-nth-element"),
        pytest.param("10.0.0.2", "6.6.6.6,,10.0.0.1", 2, "10.0.0.2", id="empty-element-counted"),
        pytest.param(
            "10.0.0.1", "[2001:db8::7]:1234", 1, "2001:db8::7", id="bracketed-v6-with-port"
        ),
        pytest.param("::ffff:10.0.0.1", None, 0, "10.0.0.1", id="mapped-remote-addr"),
        pytest.param(None, None, 0, None, id="nothing"),
        pytest.param("junk", "198.51.100.2", 0, None, id="junk-remote-addr"),
        pytest.param("10.0.0.1", "x" * 100_000 + ",198.51.100.2", 1, "198.51.100.2", id="huge"),
        pytest.param("10.0.0.1", "198.51.100.2" + " " * 300, 1, "10.0.0.1", id="overlong-hop"),
        pytest.param(
            "10.0.0.1", "198.51.100.2," + "x" * 100_000, 2, "10.0.0.1", id="huge-junk-hop"
        ),
    ],
)
def test_client_ip(
    remote: str | None, forwarded: str | None, trusted: int, expected: str | None
) -> None:
    assert client_ip(remote, forwarded, trusted) == expected


# -- properties ------------------------------------------------------------------------------

addresses = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
)


@st.composite
def written_hop(draw: st.DrawFn, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """One address as a proxy might write it: with or without port, brackets, spaces."""
    text = str(address)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    if address.version == 6 and (port is not None or draw(st.booleans())):
        text = f"[{text}]"
    if port is not None:
        text = f"{text}:{port}"
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " "]))


def expected_form(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


junk_element = st.text(max_size=40).filter(lambda s: "," not in s)


@given(
    client=addresses,
    proxies=st.lists(addresses, min_size=1, max_size=5),
    junk=st.lists(st.one_of(junk_element, addresses.map(str)), max_size=6),
    data=st.data(),
)
def test_picks_exactly_the_address_the_outermost_trusted_proxy_saw(
    client: ipaddress.IPv4Address | ipaddress.IPv6Address,
    proxies: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    junk: list[str],
    data: st.DataObject,
) -> None:
    # The client sends junk (anything, even addresses); the first trusted proxy appends the
    # client's address, each further proxy the previous one's; the last is REMOTE_ADDR.
    trusted = len(proxies)
    hops = [data.draw(written_hop(client))]
    hops += [data.draw(written_hop(p)) for p in proxies[:-1]]
    header = ",".join([*junk, *hops])
    remote = str(proxies[-1])
    assert client_ip(remote, header, trusted) == expected_form(client)


@given(
    remote=addresses,
    header=st.text(max_size=200),
    trusted=st.integers(0, 6),
)
def test_never_returns_an_untrusted_hop(
    remote: ipaddress.IPv4Address | ipaddress.IPv6Address, header: str, trusted: int
) -> None:
    result = client_ip(str(remote), header, trusted)
    elements = header.split(",")
    allowed = {expected_form(remote)}
    if trusted and len(elements) >= trusted:
        allowed.add(parse_address(elements[-trusted]))
    assert result in allowed


@given(remote=st.one_of(st.none(), st.text()), header=st.one_of(st.none(), st.text()))
def test_never_raises(remote: str | None, header: str | None) -> None:
    for trusted in (0, 1, 3):
        result = client_ip(remote, header, trusted)
        assert result is None or ipaddress.ip_address(result)


def _best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_work_is_bounded_by_the_hops_needed() -> None:
    # A header of megabytes costs a scan of the last two elements, not of the header:
    # splitting it would take milliseconds, the bounded scan takes about what a short
    # header takes.
    huge = "1.1.1.1," * 500_000 + "198.51.100.2, 10.0.0.9"
    short = "1.1.1.1, 198.51.100.2, 10.0.0.9"
    assert client_ip("10.0.0.1", huge, 2) == "198.51.100.2"
    ratio = _best_of(20, lambda: client_ip("10.0.0.1", huge, 2)) / _best_of(
        20, lambda: client_ip("10.0.0.1", short, 2)
    )
    assert ratio < 50


def test_a_hop_longer_than_any_address_is_not_scanned_for_a_comma() -> None:
    junk = "9" * (MAX_HOP_LENGTH + 1)
    assert client_ip("10.0.0.1", f"198.51.100.2,{junk}", 1) == "10.0.0.1"
    assert client_ip("10.0.0.1", f"198.51.100.2,{junk},10.0.0.3", 2) == "10.0.0.1"

"""A small DNS server on 127.0.0.1 for the reverse-DNS tests and the enrichment benchmark.

It answers PTR, A and AAAA queries from a table, NXDOMAIN for names it does not know, and can
misbehave on purpose: names it never answers, a mode that holds every query until released
(to watch concurrency), and raw answers that dnspython itself could not build (a PTR name
over 255 octets). It binds an ephemeral UDP port on the loopback interface only.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterable

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.PTR
import dns.reversename
import dns.rrset


class StubDNSServer:
    """A UDP DNS server for tests. Use as a context manager; ``port`` is where it listens."""

    def __init__(self) -> None:
        self._records: dict[tuple[dns.name.Name, int], list[object]] = {}
        self._raw_ptr: dict[dns.name.Name, bytes] = {}
        self._silent: set[dns.name.Name] = set()
        self._rcodes: dict[dns.name.Name, dns.rcode.Rcode] = {}
        self._lock = threading.Lock()
        self._holding = False
        self._held: list[tuple[bytes, tuple[str, int]]] = []
        self.max_held = 0
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="stub-dns", daemon=True)

    # -- the table ----------------------------------------------------------------------------

    def ptr(self, ip: str, *targets: str | dns.name.Name) -> None:
        """Answer the PTR query of ``ip`` with ``targets`` (text names or raw ``Name`` objects,
        which may hold any bytes in their labels)."""
        rev = dns.reversename.from_address(ip)
        names = [t if isinstance(t, dns.name.Name) else dns.name.from_text(t) for t in targets]
        self._records[(rev, dns.rdatatype.PTR)] = list(names)

    def raw_ptr(self, ip: str, target_labels: Iterable[bytes]) -> None:
        """Answer the PTR query of ``ip`` with a name encoded by hand, bypassing dnspython's
        checks (for names longer than DNS allows)."""
        wire = b"".join(bytes([len(label)]) + label for label in target_labels) + b"\x00"
        self._raw_ptr[dns.reversename.from_address(ip)] = wire

    def address(self, name: str, *addresses: str) -> None:
        """Answer A / AAAA queries for ``name`` with ``addresses``."""
        qname = dns.name.from_text(name)
        for addr in addresses:
            rdtype = dns.rdatatype.AAAA if ":" in addr else dns.rdatatype.A
            self._records.setdefault((qname, rdtype), []).append(addr)

    def fail(self, ip: str, rcode: dns.rcode.Rcode = dns.rcode.SERVFAIL) -> None:
        """Answer the PTR query of ``ip`` with an error code."""
        self._rcodes[dns.reversename.from_address(ip)] = rcode

    def silence(self, ip: str) -> None:
        """Never answer the PTR query of ``ip``."""
        self._silent.add(dns.reversename.from_address(ip))

    def hold(self) -> None:
        """Hold every query from now on, unanswered, until :meth:`release`."""
        with self._lock:
            self._holding = True

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def release(self) -> None:
        """Stop holding and answer the held queries."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, []
        for data, addr in held:
            self._answer(data, addr)

    def count(self, rdtype: str) -> int:
        with self._lock:
            return sum(1 for _, t in self.queries if t == rdtype)

    # -- serving --------------------------------------------------------------------------

    def __enter__(self) -> StubDNSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop_w.send(b"x")
        self._thread.join(5)
        self._sock.close()
        self._stop_r.close()
        self._stop_w.close()

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self._sock, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            data, addr = self._sock.recvfrom(4096)
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            with self._lock:
                self.queries.append(
                    (question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
                )
                if question.name in self._silent:
                    continue
                if self._holding:
                    self._held.append((data, addr))
                    self.max_held = max(self.max_held, len(self._held))
                    continue
            self._answer(data, addr)

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        raw = self._raw_ptr.get(question.name)
        if raw is not None and question.rdtype == dns.rdatatype.PTR:
            self._sock.sendto(_raw_ptr_response(data, raw), addr)
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        rcode = self._rcodes.get(question.name)
        if rcode is not None:
            response.set_rcode(rcode)
            self._sock.sendto(response.to_wire(), addr)
            return
        values = self._records.get((question.name, question.rdtype))
        if values is None:
            known = any(name == question.name for name, _ in self._records)
            if not known:
                response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.PTR:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.PTR)
            for target in values:
                assert isinstance(target, dns.name.Name)
                rrset.add(dns.rdtypes.ANY.PTR.PTR(dns.rdataclass.IN, dns.rdatatype.PTR, target), 60)
            response.answer.append(rrset)
        else:
            rdtype = dns.rdatatype.to_text(question.rdtype)
            response.answer.append(
                dns.rrset.from_text(question.name, 60, "IN", rdtype, *[str(v) for v in values])
            )
        self._sock.sendto(response.to_wire(), addr)


def _raw_ptr_response(query_wire: bytes, target_wire: bytes) -> bytes:
    """A response with one PTR answer whose target is ``target_wire`` as given."""
    (query_id,) = struct.unpack("!H", query_wire[:2])
    question = query_wire[12:]  # the query holds exactly one question (and maybe an OPT)
    qname_end = question.index(b"\x00") + 1
    question = question[: qname_end + 4]
    header = struct.pack("!HHHHHH", query_id, 0x8580, 1, 1, 0, 0)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 60, len(target_wire)) + target_wire
    return header + question + answer

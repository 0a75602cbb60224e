"""``output``: replies made while a read is handled leave in one write; nothing waits
across reads; transports other than plain TCP get ``transport.write``."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.testing import StringTransport

from vtwist.protocols.mysql.output import FLUSH_BYTES, OutputBuffer, reading, write_through


class CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)  # type: ignore[no-untyped-call]  # Twisted: unannotated


def test_outside_a_read_every_write_goes_out_at_once() -> None:
    t = CountingTransport()
    out = OutputBuffer(t)
    out.write(b"a", False)
    out.write(b"b", True)
    assert t.writes == [b"a", b"b"]
    assert out.pending == 0


def test_inside_a_read_a_reply_leaves_in_one_write_when_complete() -> None:
    t = CountingTransport()
    out = OutputBuffer(t)
    reading.enter()
    try:
        out.write(b"columns", False)
        out.write(b"row", False)
        assert t.writes == [] and out.pending == 10
        out.write(b"end", True)
        assert t.writes == [b"columnsrowend"]
    finally:
        reading.leave()
    assert t.writes == [b"columnsrowend"]


def test_an_unfinished_reply_leaves_when_the_outermost_read_returns() -> None:
    t = CountingTransport()
    out = OutputBuffer(t)
    reading.enter()
    reading.enter()  # a read handled inside another (e.g. TLS delivering bytes)
    out.write(b"rows...", False)
    reading.leave()
    assert t.writes == []
    reading.leave()
    assert t.writes == [b"rows..."]
    assert reading.depth == 0 and not reading.dirty


def test_a_large_reply_is_written_in_bounded_pieces() -> None:
    t = CountingTransport()
    out = OutputBuffer(t)
    row = b"x" * 1000
    reading.enter()
    try:
        for _ in range(3 * FLUSH_BYTES // len(row)):
            out.write(row, False)
            assert out.pending <= FLUSH_BYTES
        assert len(t.writes) >= 2
    finally:
        reading.leave()
    assert b"".join(t.writes) == row * (3 * FLUSH_BYTES // len(row))


def test_discard_drops_what_waits() -> None:
    t = CountingTransport()
    out = OutputBuffer(t)
    reading.enter()
    try:
        out.write(b"lost", False)
        out.discard()
    finally:
        reading.leave()
    assert t.writes == []


def test_write_through_hands_other_transports_to_write() -> None:
    t = CountingTransport()
    write_through(t, b"hello")
    assert t.writes == [b"hello"]


def test_write_through_sends_on_a_plain_tcp_transport_with_nothing_queued() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        # A tcp.Server with only what write_through looks at (no reactor needed).
        t: Any = object.__new__(tcp.Server)
        t.socket, t.TLS, t.connected, t.disconnecting = a, False, True, False
        t.dataBuffer, t._tempDataBuffer = b"", []
        written: list[bytes] = []
        t.write = written.append
        write_through(t, b"direct")
        assert b.recv(100) == b"direct"
        assert written == []
        t._tempDataBuffer = [b"queued"]
        write_through(t, b"after")  # behind queued bytes: Twisted keeps the order
        t._tempDataBuffer = []
        t.TLS = True
        write_through(t, b"tls")
        assert written == [b"after", b"tls"]
        t.TLS = False
        big = bytes(range(256)) * 40_000  # more than the socket takes at once
        write_through(t, big)
        rest = written[-1]
        assert 0 < len(rest) < len(big) and big.endswith(rest)
    finally:
        a.close()
        b.close()


def test_write_through_sends_on_a_unix_transport_unless_descriptors_are_queued() -> None:
    a, b = socket.socketpair()  # AF_UNIX
    a.setblocking(False)
    b.settimeout(2)  # fails, not hangs, when nothing was sent
    try:
        t: Any = object.__new__(unix.Server)
        t.socket, t.TLS, t.connected, t.disconnecting = a, False, True, False
        t.dataBuffer, t._tempDataBuffer, t._sendmsgQueue = b"", [], []
        written: list[bytes] = []
        t.write = written.append
        write_through(t, b"direct")
        assert b.recv(100) == b"direct"
        assert written == []
        t._sendmsgQueue = [5]  # a descriptor waits: Twisted sends it with the next bytes
        write_through(t, b"later")
        assert written == [b"later"]
    finally:
        a.close()
        b.close()

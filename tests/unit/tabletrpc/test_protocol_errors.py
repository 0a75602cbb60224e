"""Peers that break the protocol: error replies or a clean close, never a crash."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test.iosim import connectedServerAndClient

from tests.unit.tabletrpc.fakes import FakeTabletService, Pair, result_of
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.protocols.tabletrpc_codec import (
    DEFAULT_MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    Cancel,
    Error,
    FrameDecoder,
    Hello,
    Message,
    Reply,
    Request,
    decode_message,
    encode_frame,
    encode_message,
    encode_reply,
    encode_request,
)
from vtwist.protocols.tabletrpc_server import TabletRPCServer, TabletRPCServerFactory


def failure_of(d: Deferred[Any]) -> MySQLError:
    with pytest.raises(MySQLError) as info:
        result_of(d)
    return info.value


class RawPeer(Protocol):
    """A hand-driven gate: sends whatever the test says, decodes what comes back."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.decoder = FrameDecoder()
        self.received: list[Message] = []
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.first)

    def dataReceived(self, data: bytes) -> None:
        self.received.extend(decode_message(p) for p in self.decoder.feed(data))

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def raw_session(first: bytes, *more: bytes) -> tuple[RawPeer, TabletRPCServer, FakeTabletService]:
    clock = Clock()
    service = FakeTabletService(clock)
    factory = TabletRPCServerFactory(service, clock)
    peer, server, pump = connectedServerAndClient(
        lambda: factory.buildProtocol(None), lambda: RawPeer(first), clock=clock
    )
    for data in more:
        assert peer.transport is not None
        peer.transport.write(data)
        pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    return peer, server, service


HELLO = encode_message(Hello(PROTOCOL_VERSION, {}))


def errors(peer: RawPeer) -> list[tuple[int, int]]:
    return [(m.request_id, m.code) for m in peer.received if isinstance(m, Error)]


def test_garbage_gets_a_connection_error_and_a_close() -> None:
    peer, _, _ = raw_session(HELLO, encode_frame(b"\xc1\xc1"))
    assert errors(peer) == [(0, ErrorCode.MALFORMED_PACKET)]
    assert peer.lost


def test_oversized_frame_gets_1153_and_a_close_without_buffering() -> None:
    peer, server, _ = raw_session(HELLO, struct.pack(">I", 2**31) + b"x" * 1000)
    assert errors(peer) == [(0, ErrorCode.NET_PACKET_TOO_LARGE)]
    assert peer.lost
    assert server._decoder.buffered == 0


def test_other_protocol_version_is_refused() -> None:
    peer, _, _ = raw_session(encode_message(Hello(PROTOCOL_VERSION + 1, {})))
    [err] = [m for m in peer.received if isinstance(m, Error)]
    assert err.request_id == 0 and err.code == ErrorCode.HANDSHAKE_ERROR
    assert "same vtwist version" in err.message
    assert peer.lost


def test_request_before_hello_is_refused() -> None:
    peer, _, service = raw_session(encode_request(1, "execute", {"sql": "rows 1"}, 0))
    assert errors(peer) == [(0, ErrorCode.MALFORMED_PACKET)]
    assert peer.lost and service.calls == []


def test_duplicate_request_id_closes_and_cancels() -> None:
    req = encode_request(1, "execute", {"sql": "sleep 5 a"}, 0)
    peer, _, service = raw_session(HELLO, req, req)
    assert errors(peer) == [(0, ErrorCode.MALFORMED_PACKET)]
    assert peer.lost
    assert service.cancel_hooks == [(1, "connection lost")]


def test_gate_may_not_send_replies() -> None:
    peer, _, _ = raw_session(HELLO, encode_reply(1, None))
    assert errors(peer) == [(0, ErrorCode.MALFORMED_PACKET)]
    assert peer.lost


def test_malformed_request_fails_only_that_request() -> None:
    bad = encode_frame(b"\x95\x01\x05\xa7execute\x80\xff")  # timeout -1
    good = encode_request(6, "execute", {"sql": "rows 1"}, 0)
    peer, _, _ = raw_session(HELLO, bad, good)
    assert errors(peer) == [(5, ErrorCode.MALFORMED_PACKET)]
    assert any(isinstance(m, Reply) and m.request_id == 6 for m in peer.received)
    assert not peer.lost


def test_request_larger_than_the_tablet_accepts_fails_locally() -> None:
    p = Pair(server_kw={"max_frame_size": 1024, "stream_chunk_bytes": 512})
    assert p.client.peer_max_frame_size == 1024
    e = failure_of(p.client.execute("select '" + "x" * 2000 + "'"))
    assert e.code == ErrorCode.NET_PACKET_TOO_LARGE
    assert "(1024)" in e.message and "raise the tablets' rpc.max_frame_size" in e.message
    ok = p.client.execute("rows 1")
    p.flush()
    assert result_of(ok).rows


def test_request_over_the_largest_frame_only_says_to_send_less() -> None:
    p = Pair()
    e = failure_of(p.client.execute("x" * DEFAULT_MAX_FRAME_SIZE))
    assert e.code == ErrorCode.NET_PACKET_TOO_LARGE
    assert "send a smaller statement" in e.message and "raise" not in e.message


def test_result_larger_than_the_gate_accepts_fails_that_call() -> None:
    p = Pair(client_kw={"max_frame_size": 1024})
    big = p.client.execute("rows 500")
    small = p.client.execute("rows 1")
    p.flush()
    e = failure_of(big)
    assert e.code == ErrorCode.NET_PACKET_TOO_LARGE and "max_frame_size" in e.message
    assert result_of(small).rows


def test_client_closes_on_garbage_from_the_tablet() -> None:
    p = Pair()
    d = p.client.execute("sleep 5 x")
    p.flush()
    p.server.transport.write(encode_frame(b"\xc1"))  # type: ignore[union-attr]
    p.flush()
    e = failure_of(d)
    assert e.code == ErrorCode.CR_MALFORMED_PACKET and "broke the RPC protocol" in e.message
    assert p.client.closed
    assert p.service.cancel_hooks == [(1, "connection lost")]


def test_connection_error_from_the_tablet_is_what_pending_calls_see() -> None:
    p = Pair()
    d = p.client.execute("sleep 5 x")
    p.flush()
    p.client.transport.write(encode_frame(b"\xc1"))  # type: ignore[union-attr]
    p.flush()
    e = failure_of(d)
    assert e.code == ErrorCode.MALFORMED_PACKET and "malformed" in e.message


def test_malformed_result_fails_one_call_and_the_connection_survives() -> None:
    p = Pair()
    victim = p.client.execute("sleep 5 v")
    p.flush()
    [rid] = p.client.pending
    p.server.transport.write(encode_reply(rid, "not a result"))  # type: ignore[union-attr]
    p.server.transport.write(encode_reply(rid + 100, None))  # type: ignore[union-attr]
    p.flush()
    assert failure_of(victim).code == ErrorCode.CR_MALFORMED_PACKET
    ok = p.client.execute("rows 2")
    p.flush()
    assert len(result_of(ok).rows) == 2
    p.advance(6)  # the real answer to the failed call comes late and is ignored
    assert not p.client.closed


def test_malformed_chunk_fails_one_call_and_cancels_it() -> None:
    p = Pair()
    victim = p.client.execute("sleep 5 v")
    p.flush()
    [rid] = p.client.pending
    bad_chunk = encode_frame(b"\x94\x06" + bytes([rid]) + b"\xc0\x91\xa1x")  # a str row
    p.server.transport.write(bad_chunk)  # type: ignore[union-attr]
    p.flush()
    assert failure_of(victim).code == ErrorCode.CR_MALFORMED_PACKET
    assert p.service.cancel_hooks == [(rid, "cancelled")]
    assert not p.client.closed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_server_survives_any_bytes(chunks: list[bytes]) -> None:
    clock = Clock()
    server = TabletRPCServerFactory(FakeTabletService(clock), clock).buildProtocol(None)
    transport = StringTransport()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    server.makeConnection(transport)  # type: ignore[no-untyped-call]  # Twisted: unannotated
    server.dataReceived(HELLO)
    for chunk in chunks:
        server.dataReceived(chunk)
        clock.advance(0)
    # Whatever came in, the server answered with well-formed frames only.
    for payload in FrameDecoder().feed(transport.value()):  # type: ignore[no-untyped-call]  # Twisted: unannotated
        decode_message(payload)
    assert server._decoder.buffered <= 64 * 8


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_client_survives_any_bytes(chunks: list[bytes]) -> None:
    p = Pair()
    d = p.client.execute("sleep 5 x")
    p.flush()
    for chunk in chunks:
        p.client.dataReceived(chunk)
    p.flush()
    if p.client.closed:
        assert isinstance(failure_of(d), MySQLError)


def test_request_messages_are_what_the_server_decodes() -> None:
    # Guard for the fast path: encode_request is a REQUEST as the codec defines it.
    frame = encode_request(3, "begin", {}, 5)
    [payload] = FrameDecoder().feed(frame)
    assert decode_message(payload) == Request(3, "begin", {}, 5)


class SilentTablet(Protocol):
    """Says HELLO, records what the gate sends, never answers."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.received: list[Message] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(HELLO)

    def dataReceived(self, data: bytes) -> None:
        self.received.extend(decode_message(p) for p in self.decoder.feed(data))


def test_client_deadline_fires_even_if_the_tablet_never_answers() -> None:
    clock = Clock()
    client, tablet, pump = connectedServerAndClient(
        SilentTablet, lambda: TabletRPCClient(clock), clock=clock
    )
    d = client.execute("select 1", deadline=clock.seconds() + 2)
    pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.1)
    pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    e = failure_of(d)
    assert e.code == 1317 and "deadline (2 s)" in e.message
    request = next(m for m in tablet.received if isinstance(m, Request))
    assert 1900 <= request.timeout_ms <= 2000
    assert Cancel(request.request_id) in tablet.received
    assert client.inflight == 0

"""Streamed LOAD DATA LOCAL INFILE files over the tablet RPC (INFILE_MORE / INFILE_DATA).

End to end over iosim (a gate ``IInfileReader`` -> the tablet service's ``read_infile``),
then each side against a hand-driven peer for the protocol's edge cases.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import IOPump, connectedServerAndClient

from tests.unit.tabletrpc.fakes import FakeInfileReader, FakeTabletService, Pair, result_of
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.protocols.tabletrpc_codec import (
    INFILE_DATA_OVERHEAD,
    PROTOCOL_VERSION,
    Cancel,
    Error,
    FrameDecoder,
    Hello,
    InfileData,
    InfileError,
    InfileMore,
    Message,
    Reply,
    Request,
    decode_message,
    encode_frame,
    encode_infile_data,
    encode_message,
    encode_reply,
    encode_request,
)
from vtwist.protocols.tabletrpc_ops import ExecuteArgs
from vtwist.protocols.tabletrpc_requests import InfilePull, RequestContext
from vtwist.protocols.tabletrpc_server import TabletRPCServer, TabletRPCServerFactory

LOAD_SQL = "load 3000"


def failure_of(d: Deferred[Any]) -> MySQLError:
    with pytest.raises(MySQLError) as info:
        result_of(d)
    return info.value


def digest_info(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def last_args(service: FakeTabletService) -> ExecuteArgs:
    op, args = service.calls[-1]
    assert op == "execute"
    assert isinstance(args, ExecuteArgs)
    return args


# --- negotiation --------------------------------------------------------------------------


def test_the_tablet_announces_streamed_files_and_the_gate_sees_it() -> None:
    p = Pair()
    assert p.server.hello_info()["infile_stream"] is True
    assert p.client.peer_hello is not None
    assert p.client.peer_hello.info["infile_stream"] is True
    assert p.client.infile_stream
    # The gate announces nothing of the kind: it never pulls.
    assert p.server.peer_hello is not None
    assert "infile_stream" not in p.server.peer_hello.info


class OldTablet(TabletRPCServer):
    """A v3 tablet from before streamed files: no ``infile_stream`` in its HELLO."""

    def hello_info(self) -> dict[str, Any]:
        info = super().hello_info()
        del info["infile_stream"]
        return info


def old_tablet_pair() -> tuple[TabletRPCClient, FakeTabletService, IOPump]:
    clock = Clock()
    service = FakeTabletService(clock)
    factory = TabletRPCServerFactory(service, clock)
    client, _, pump = connectedServerAndClient(
        lambda: OldTablet(service, clock, factory.config),
        lambda: TabletRPCClient(clock),
        clock=clock,
    )
    return client, service, pump


def test_a_reader_for_a_tablet_without_streamed_files_fails_at_once_with_1235() -> None:
    client, service, pump = old_tablet_pair()
    assert client.ready and not client.infile_stream
    reader = FakeInfileReader([b"data"])
    d = client.execute(LOAD_SQL, infile=reader)
    e = failure_of(d)  # before any byte moved
    assert (e.code, e.sqlstate) == (1235, "42000")
    assert "does not take a streamed LOAD DATA LOCAL file" in e.message
    assert "upgrade it" in e.message
    assert client.inflight == 0
    pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    assert service.calls == [] and reader.asked == []
    # The whole file in the request still works with it.
    ok = client.execute("insert", infile=b"a,b\n")
    pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    assert result_of(ok).affected_rows == 1
    assert last_args(service).infile == b"a,b\n"


def test_a_file_in_the_request_still_travels_whole() -> None:
    p = Pair()
    d = p.client.execute("insert", infile=b"1,2\n3,4\n")
    empty = p.client.execute("insert", infile=b"")
    p.flush()
    assert result_of(d).affected_rows == 1 and result_of(empty).affected_rows == 1
    first, second = (a for _, a in p.service.calls)
    assert first.infile == b"1,2\n3,4\n" and not first.infile_stream
    assert second.infile == b"" and not second.infile_stream


def test_read_infile_of_a_request_without_a_streamed_file_fails_with_1105() -> None:
    p = Pair()
    d = p.client.execute(LOAD_SQL, infile=b"whole")
    p.flush()
    e = failure_of(d)
    assert e.code == ErrorCode.UNKNOWN_ERROR and "infile_stream" in e.message
    assert p.service.infile_errors[0] is not None


# --- end to end ---------------------------------------------------------------------------


def test_the_file_streams_in_pieces_one_at_a_time() -> None:
    pieces = [b"a" * 1000, b"b" * 5000, b"", b"c" * 10]  # an empty piece is skipped below
    data = b"".join(pieces)
    reader = FakeInfileReader([x for x in pieces if x])
    p = Pair()
    d = p.client.execute(LOAD_SQL, infile=reader)
    p.flush()
    assert result_of(d).info == digest_info(data)
    args = last_args(p.service)
    assert args.infile_stream and args.infile is None
    # The service's 3000-byte reads reach the reader as they are.
    assert reader.asked == [3000] * len(reader.asked)
    assert p.service.infile_pieces == [1000, 3000, 2000, 10, 0]
    assert reader.most_outstanding == 1
    assert p.client.inflight == 0 and p.server.inflight == {}


def test_a_slow_reader_holds_the_next_request_for_a_piece() -> None:
    reader = FakeInfileReader([b"x" * 10, b"y" * 10], manual=True)
    p = Pair()
    d = p.client.execute("load 100", infile=reader)
    p.flush()
    for _ in range(3):  # two pieces and the end
        assert reader.waiting is not None and not d.called
        asked = len(reader.asked)
        p.advance(1)
        assert len(reader.asked) == asked  # nothing more is asked while one is out
        reader.fire()
        p.flush()
    assert result_of(d).info == digest_info(b"x" * 10 + b"y" * 10)
    assert reader.most_outstanding == 1


@pytest.mark.parametrize(
    ("server_frame", "client_frame"),
    [(1024, 65 * 1024 * 1024), (65 * 1024 * 1024, 1024)],
)
def test_pieces_fit_in_the_receivers_frames(server_frame: int, client_frame: int) -> None:
    data = bytes(range(256)) * 40
    reader = FakeInfileReader([data])
    p = Pair(
        server_kw={"max_frame_size": server_frame, "stream_chunk_bytes": 512},
        client_kw={"max_frame_size": client_frame},
    )
    d = p.client.execute("load 1000000", infile=reader)
    p.flush()
    assert result_of(d).info == digest_info(data)
    limit = 1024 - INFILE_DATA_OVERHEAD
    assert max(reader.asked) == limit
    assert max(p.service.infile_pieces) == limit


def test_a_failed_reader_fails_the_services_read_with_its_error() -> None:
    # (Not 1153's usual SQLSTATE, to see that it travels.)
    error = MySQLError(1153, "Got a packet bigger than 'max_allowed_packet' bytes", "HY000")
    reader = FakeInfileReader([b"x" * 10], error=error)
    p = Pair()
    d = p.client.execute(LOAD_SQL, infile=reader)
    p.flush()
    [seen] = p.service.infile_errors
    assert isinstance(seen, MySQLError)
    assert (seen.code, seen.sqlstate, seen.message) == (error.code, "HY000", error.message)
    e = failure_of(d)
    assert (e.code, e.sqlstate, e.message) == (error.code, "HY000", error.message)
    assert p.service.infile_pieces == [10]


def test_a_reader_that_breaks_gives_1105() -> None:
    reader = FakeInfileReader([], error=RuntimeError("disk on fire"))
    p = Pair()
    d = p.client.execute(LOAD_SQL, infile=reader)
    p.flush()
    e = failure_of(d)
    assert e.code == ErrorCode.UNKNOWN_ERROR
    assert "RuntimeError" in e.message and "gate log" in e.message
    assert "disk on fire" not in e.message  # details stay in the gate's log


def test_cancel_during_a_pending_read() -> None:
    reader = FakeInfileReader([b"late"], manual=True)
    p = Pair()
    d = p.client.execute("load 100", infile=reader)
    p.flush()
    assert reader.waiting is not None
    [rid] = p.server.inflight
    d.cancel()
    p.flush()
    assert failure_of(d).code == ErrorCode.QUERY_INTERRUPTED
    [seen] = p.service.infile_errors
    assert isinstance(seen, MySQLError) and seen.code == ErrorCode.QUERY_INTERRUPTED
    assert "cancelled by the gate" in seen.message
    assert p.service.cancel_hooks == [(rid, "cancelled")]
    assert p.server.inflight == {}
    reader.fire()  # the piece comes too late: dropped, nothing breaks
    p.flush()
    assert not p.client.closed
    ok = p.client.execute("rows 1")
    p.flush()
    assert result_of(ok).rows


def test_the_tablets_deadline_during_a_pending_read_is_what_the_read_fails_with() -> None:
    reader = FakeInfileReader([b"late"], manual=True)
    p = Pair(server_kw={"max_timeout": 1.0})
    d = p.client.execute("load 100", infile=reader, deadline=p.clock.seconds() + 10)
    p.flush()
    p.advance(1)
    e = failure_of(d)
    [seen] = p.service.infile_errors
    assert isinstance(seen, MySQLError)
    assert (seen.code, seen.message) == (e.code, e.message)
    assert e.code == ErrorCode.QUERY_INTERRUPTED and "deadline (1 s)" in e.message


def test_connection_lost_during_a_pending_read() -> None:
    reader = FakeInfileReader([b"late"], manual=True)
    p = Pair()
    d = p.client.execute("load 100", infile=reader)
    p.flush()
    [rid] = p.server.inflight
    assert p.client.transport is not None
    p.client.transport.loseConnection()
    p.flush()
    assert failure_of(d).code == ErrorCode.CR_SERVER_LOST
    [seen] = p.service.infile_errors
    assert isinstance(seen, MySQLError) and seen.code == ErrorCode.QUERY_INTERRUPTED
    assert "connection lost" in seen.message
    assert p.service.cancel_hooks == [(rid, "connection lost")]
    reader.fire()  # nowhere to go
    p.flush()


# --- the tablet's side: RequestContext / InfilePull -----------------------------------------


def make_context() -> tuple[RequestContext, list[int]]:
    asked: list[int] = []

    def ask(max_bytes: int) -> int:
        asked.append(max_bytes)
        return min(max_bytes, 100)  # the frame bound of a pretend gate

    return RequestContext(7, "execute", None, "gate", InfilePull(ask)), asked


def test_reads_ask_once_each_and_end_for_good() -> None:
    ctx, asked = make_context()
    d = ctx.read_infile(1000)
    assert asked == [1000] and ctx.infile is not None and ctx.infile.asked == 100
    assert ctx.infile.received(InfileData(7, b"x" * 100)) is None
    assert result_of(d) == b"x" * 100
    d = ctx.read_infile(5)
    assert ctx.infile.received(InfileData(7, b"")) is None
    assert result_of(d) == b""
    assert result_of(ctx.read_infile(5)) == b""  # after the end: no more asking
    assert asked == [1000, 5]
    ctx._finish()
    assert result_of(ctx.read_infile(5)) == b""


def test_one_read_at_a_time_and_max_bytes_must_be_positive() -> None:
    ctx, asked = make_context()
    first = ctx.read_infile(10)
    e = failure_of(ctx.read_infile(10))
    assert e.code == ErrorCode.UNKNOWN_ERROR and "one read at a time" in e.message
    assert asked == [10] and not first.called
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_bytes"):
            ctx.read_infile(bad)


def test_data_not_asked_for_or_longer_than_asked_is_refused() -> None:
    ctx, _ = make_context()
    assert ctx.infile is not None
    assert "did not ask" in (ctx.infile.received(InfileData(7, b"x")) or "")
    d = ctx.read_infile(3)
    assert "asked for 3" in (ctx.infile.received(InfileData(7, b"four")) or "")
    assert not d.called


def test_the_gates_error_fails_this_read_and_later_ones() -> None:
    ctx, asked = make_context()
    assert ctx.infile is not None
    d = ctx.read_infile(10)
    ctx.infile.received(InfileData(7, b"", InfileError(1159, "HY000", "client stalled")))
    e = failure_of(d)
    assert (e.code, e.sqlstate, e.message) == (1159, "HY000", "client stalled")
    assert failure_of(ctx.read_infile(10)).code == 1159
    assert asked == [10]


def test_a_cancelled_read_drops_its_piece_and_poisons_the_file() -> None:
    ctx, asked = make_context()
    assert ctx.infile is not None
    d = ctx.read_infile(10)
    d.cancel()
    d.addErrback(lambda _: None)
    assert ctx.infile.received(InfileData(7, b"piece")) is None  # asked for: not an error
    assert failure_of(ctx.read_infile(10)).code == ErrorCode.QUERY_INTERRUPTED
    assert asked == [10]


def test_cancel_and_finish_fail_a_pending_read() -> None:
    ctx, _ = make_context()
    d = ctx.read_infile(10)
    ctx._cancel("killed", MySQLError(1317, "killed by the gate", "70100"))
    assert failure_of(d).message == "killed by the gate"
    ctx, _ = make_context()
    d = ctx.read_infile(10)
    ctx._cancel("connection lost")
    e = failure_of(d)
    assert e.code == ErrorCode.QUERY_INTERRUPTED and "connection lost" in e.message
    ctx, _ = make_context()
    d = ctx.read_infile(10)
    ctx._finish()
    assert failure_of(d).code == ErrorCode.QUERY_INTERRUPTED


# --- the gate's side, against a hand-driven tablet --------------------------------------------


class RawTablet(Protocol):
    """A hand-driven tablet: says HELLO (with ``infile_stream``), records what comes."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.decoder = FrameDecoder(max(64, info.get("max_frame", 1024)))
        self.received: list[Message] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(encode_message(Hello(PROTOCOL_VERSION, self.info)))

    def dataReceived(self, data: bytes) -> None:
        self.received.extend(decode_message(p) for p in self.decoder.feed(data))

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.received if isinstance(m, kind)]


class GateSession:
    def __init__(self, max_frame: int = 1024) -> None:
        self.clock = Clock()
        info = {"max_frame": max_frame, "role": "tablet", "infile_stream": True}
        self.client, self.tablet, self.pump = connectedServerAndClient(
            lambda: RawTablet(info), lambda: TabletRPCClient(self.clock), clock=self.clock
        )

    def flush(self) -> None:
        self.pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated

    def tell(self, msg: Message) -> None:
        self.tablet.send(encode_message(msg))
        self.flush()

    def start(self, reader: FakeInfileReader | None) -> tuple[Deferred[Any], int]:
        d = self.client.execute(LOAD_SQL, infile=reader) if reader else self.client.execute("x")
        self.flush()
        request = self.tablet.of(Request)[-1]
        return d, request.request_id


def test_the_gate_answers_each_ask_with_a_piece_that_fits() -> None:
    g = GateSession(max_frame=1024)
    reader = FakeInfileReader([b"a" * 1500, b"b" * 5])
    d, rid = g.start(reader)
    request = g.tablet.of(Request)[0]
    assert request.args["infile_stream"] is True and "infile" not in request.args
    g.tell(InfileMore(rid, 10**6))
    g.tell(InfileMore(rid, 10**6))
    g.tell(InfileMore(rid, 100))
    g.tell(InfileMore(rid, 100))
    limit = 1024 - INFILE_DATA_OVERHEAD
    assert reader.asked == [limit, limit, 100, 100]
    assert g.tablet.of(InfileData) == [
        InfileData(rid, b"a" * limit),
        InfileData(rid, b"a" * (1500 - limit)),
        InfileData(rid, b"b" * 5),
        InfileData(rid, b""),
    ]
    g.tell(InfileMore(rid, 100))  # after the end: the end again, without reading
    assert g.tablet.of(InfileData)[-1] == InfileData(rid, b"")
    assert len(reader.asked) == 4
    g.tablet.send(encode_reply(rid, [[], [], 3, 0, 0, 0, "", [], []]))
    g.flush()
    assert result_of(d).affected_rows == 3
    assert not g.client.closed


def test_a_reader_error_is_sent_once_and_repeated() -> None:
    g = GateSession()
    reader = FakeInfileReader([], error=MySQLError(1159, "client stalled", "08S01"))
    _, rid = g.start(reader)
    g.tell(InfileMore(rid, 10))
    g.tell(InfileMore(rid, 10))
    error = InfileError(1159, "08S01", "client stalled")
    assert g.tablet.of(InfileData) == [InfileData(rid, b"", error)] * 2
    assert len(reader.asked) == 1


def test_an_error_is_cut_to_fit_a_tiny_frame() -> None:
    g = GateSession(max_frame=64)
    reader = FakeInfileReader([], error=MySQLError(1159, "x" * 500, "08S01"))
    _, rid = g.start(reader)
    g.tell(InfileMore(rid, 10))
    [data] = g.tablet.of(InfileData)  # decoded by a 64-byte FrameDecoder
    assert data.error is not None and data.error.code == 1159
    assert 0 < len(data.error.message) < 64


def test_a_reader_giving_more_than_asked_fails_the_file() -> None:
    g = GateSession()

    class Greedy(FakeInfileReader):
        def read(self, max_bytes: int) -> Deferred[bytes]:
            d = super().read(max_bytes)
            d.addCallback(lambda data: data * 2)
            return d

    _, rid = g.start(Greedy([b"abcd"]))
    g.tell(InfileMore(rid, 4))
    [data] = g.tablet.of(InfileData)
    assert data.data == b"" and data.error is not None
    assert data.error.code == ErrorCode.UNKNOWN_ERROR and "8 bytes" in data.error.message


def test_an_ask_while_a_piece_is_being_read_fails_that_call() -> None:
    g = GateSession()
    reader = FakeInfileReader([b"x"], manual=True)
    d, rid = g.start(reader)
    g.tell(InfileMore(rid, 10))
    g.tell(InfileMore(rid, 10))
    e = failure_of(d)
    assert e.code == ErrorCode.CR_MALFORMED_PACKET and "being read" in e.message
    assert Cancel(rid) in g.tablet.received
    reader.fire()  # the reader was dropped with the call: nothing is sent
    g.flush()
    assert g.tablet.of(InfileData) == []
    assert reader.most_outstanding == 1 and not g.client.closed


def test_an_ask_for_a_call_without_a_reader_fails_that_call() -> None:
    g = GateSession()
    d, rid = g.start(None)
    g.tell(InfileMore(rid, 10))
    e = failure_of(d)
    assert e.code == ErrorCode.CR_MALFORMED_PACKET and "without a streamed file" in e.message
    assert Cancel(rid) in g.tablet.received and not g.client.closed


def test_a_malformed_ask_fails_that_call() -> None:
    g = GateSession()
    reader = FakeInfileReader([b"x"])
    d, rid = g.start(reader)
    g.tablet.send(encode_frame(bytes([0x93, 8, rid, 0])))  # max_bytes 0
    g.flush()
    assert failure_of(d).code == ErrorCode.CR_MALFORMED_PACKET
    assert reader.asked == [] and not g.client.closed


def test_an_ask_for_an_unknown_call_is_ignored() -> None:
    g = GateSession()
    reader = FakeInfileReader([b"x"])
    d, rid = g.start(reader)
    g.tell(InfileMore(rid + 1, 10))
    assert not d.called and not g.client.closed and reader.asked == []
    assert g.tablet.of(InfileData) == []


def test_the_reader_goes_with_the_calls_end() -> None:
    g = GateSession()
    reader = FakeInfileReader([b"x"], manual=True)
    d, rid = g.start(reader)
    g.tell(InfileMore(rid, 10))
    g.tablet.send(encode_reply(rid, [[], [], 0, 0, 0, 0, "", [], []]))
    g.flush()
    assert result_of(d).affected_rows == 0
    reader.fire()
    g.tell(InfileMore(rid, 10))  # crossed the end: ignored
    assert g.tablet.of(InfileData) == [] and len(reader.asked) == 1


def test_a_tablet_may_not_send_file_data() -> None:
    g = GateSession()
    d, _ = g.start(FakeInfileReader([]))
    g.tablet.send(encode_infile_data(1, b"x"))
    g.flush()
    assert g.client.closed
    assert failure_of(d).code == ErrorCode.CR_MALFORMED_PACKET


# --- the tablet's side, against a hand-driven gate --------------------------------------------


class RawGate(Protocol):
    """A hand-driven gate: sends HELLO, records what comes back."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.decoder = FrameDecoder()
        self.received: list[Message] = []
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        hello = Hello(PROTOCOL_VERSION, {"max_frame": self.max_frame, "role": "gate"})
        self.transport.write(encode_message(hello))

    def dataReceived(self, data: bytes) -> None:
        self.received.extend(decode_message(p) for p in self.decoder.feed(data))

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


class TabletSession:
    def __init__(self, max_frame: int = 65 * 1024 * 1024) -> None:
        clock = Clock()
        self.service = FakeTabletService(clock)
        factory = TabletRPCServerFactory(self.service, clock)
        self.gate, self.server, self.pump = connectedServerAndClient(
            lambda: factory.buildProtocol(None), lambda: RawGate(max_frame), clock=clock
        )

    def send(self, *frames: bytes) -> None:
        assert self.gate.transport is not None
        for frame in frames:
            self.gate.transport.write(frame)
            self.pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.gate.received if isinstance(m, kind)]


def load_request(rid: int, piece: int) -> bytes:
    return encode_request(rid, "execute", {"sql": f"load {piece}", "infile_stream": True}, 0)


def test_the_tablet_asks_at_most_what_fits_in_the_gates_frames() -> None:
    t = TabletSession(max_frame=100)
    t.send(load_request(1, 1000))
    assert t.of(InfileMore) == [InfileMore(1, 100 - INFILE_DATA_OVERHEAD)]
    t.send(encode_infile_data(1, b"x" * 68), encode_infile_data(1, b""))
    assert t.of(InfileMore) == [InfileMore(1, 68)] * 2
    [reply] = t.of(Reply)
    assert reply.request_id == 1 and reply.result[6] == digest_info(b"x" * 68)


def test_data_the_tablet_did_not_ask_for_fails_that_request_only() -> None:
    t = TabletSession()
    t.send(encode_request(1, "execute", {"sql": "sleep 5 a"}, 0), encode_infile_data(1, b"x"))
    assert [(e.request_id, e.code) for e in t.of(Error)] == [(1, ErrorCode.MALFORMED_PACKET)]
    assert "without a streamed file" in t.of(Error)[0].message
    assert t.service.cancel_hooks == [(1, "malformed message")]
    t.send(load_request(2, 10))
    t.send(encode_infile_data(2, b"x" * 11))  # more than asked
    assert [(e.request_id, e.code) for e in t.of(Error)][-1] == (2, ErrorCode.MALFORMED_PACKET)
    [seen] = t.service.infile_errors
    assert isinstance(seen, MySQLError) and seen.code == ErrorCode.MALFORMED_PACKET
    assert "asked for 10" in seen.message
    assert not t.gate.lost and t.server.inflight == {}


def test_data_for_an_unknown_request_is_ignored() -> None:
    t = TabletSession()
    t.send(encode_infile_data(9, b"x"), encode_infile_data(9, b"", MySQLError(1105, "late")))
    assert t.gate.received == [m for m in t.gate.received if isinstance(m, Hello)]
    assert not t.gate.lost


def test_malformed_data_fails_the_pending_read() -> None:
    t = TabletSession()
    t.send(load_request(1, 10))
    t.send(encode_frame(msgpack.packb([9, 1, b"x", [1105, "HY000", "m"]])))  # error and data
    assert [(e.request_id, e.code) for e in t.of(Error)] == [(1, ErrorCode.MALFORMED_PACKET)]
    [seen] = t.service.infile_errors
    assert isinstance(seen, MySQLError) and seen.code == ErrorCode.MALFORMED_PACKET
    assert not t.gate.lost


def test_a_gate_may_not_ask_for_file_data() -> None:
    t = TabletSession()
    t.send(encode_message(InfileMore(1, 10)))
    assert [(e.request_id, e.code) for e in t.of(Error)] == [(0, ErrorCode.MALFORMED_PACKET)]
    assert t.gate.lost

"""Back-pressure from the client's socket to the handler's producer, and the interfaces."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from zope.interface.verify import verifyObject

from tests.unit.server.harness import (
    AUTOCOMMIT,
    COL_ECHO,
    Client,
    FakeHandler,
    FakeHandlerFactory,
    Harness,
    RecordingProducer,
    drain,
    text_row,
)
from vtwist.interfaces import IQueryHandler, IQueryHandlerFactory, IResultSink
from vtwist.protocols.mysql.events import ResultSetDone, Row
from vtwist.protocols.mysql.messages import ComQuery, Err
from vtwist.protocols.mysql.server_cursor import CursorSink
from vtwist.protocols.mysql.server_sink import ResultSink, SinkLimits
from vtwist.protocols.mysql.server_types import ClientInfo


class CongestingTransport(StringTransport):
    """Pauses its registered producer past ``limit`` unread bytes, like a real socket."""

    limit = 200

    def write(self, data: bytes) -> None:
        super().write(data)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        if self.producer is not None and len(self.value()) > self.limit:  # type: ignore[no-untyped-call]  # Twisted: unannotated
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = bytes(self.value())  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.clear()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


def streaming_client(**kw: Any) -> tuple[Client, RecordingProducer, list[IResultSink]]:
    c = Harness(**kw).connect().logged_in()
    producer = RecordingProducer()
    sinks: list[IResultSink] = []

    def stream(sink: IResultSink) -> Deferred[None]:
        sink.register_producer(producer)
        sink.start([COL_ECHO])
        sinks.append(sink)
        return Deferred()

    c.handler.scripts[b"stream"] = stream
    c.send(ComQuery(b"stream"))
    return c, producer, sinks


def test_congestion_pauses_and_resumes_the_handlers_producer() -> None:
    c, producer, (sink,) = streaming_client()
    sink.row(text_row(b"a"))
    c.proto.pauseProducing()  # what the transport does when its buffer is full
    assert producer.calls == ["pause"] and sink.paused
    c.proto.resumeProducing()
    assert producer.calls == ["pause", "resume"] and not sink.paused
    c.proto.pauseProducing()
    sink.done(AUTOCOMMIT)  # the end of the reply resumes what the sink paused
    assert producer.calls == ["pause", "resume", "pause", "resume"]
    c.proto.resumeProducing()
    assert producer.calls == ["pause", "resume", "pause", "resume"]  # forgotten


def test_a_producer_registered_while_congested_is_paused_at_once() -> None:
    c = Harness().connect().logged_in()
    c.proto.pauseProducing()
    producer = RecordingProducer()

    def stream(sink: IResultSink) -> None:
        sink.register_producer(producer)
        sink.start([COL_ECHO])
        sink.done()

    c.handler.scripts[b"stream"] = stream
    c.send(ComQuery(b"stream"))
    assert producer.calls == ["pause", "resume"]


def test_socket_congestion_reaches_the_handler_through_the_transport() -> None:
    transport = CongestingTransport()  # type: ignore[no-untyped-call]  # Twisted: StringTransport.__init__ unannotated
    c = Harness().connect(transport=transport).logged_in()
    assert transport.producer is c.proto  # the protocol is its transport's producer
    producer = RecordingProducer()
    sinks: list[IResultSink] = []

    def stream(sink: IResultSink) -> Deferred[None]:
        sink.register_producer(producer)
        sink.start([COL_ECHO])
        sinks.append(sink)
        return Deferred()

    c.handler.scripts[b"stream"] = stream
    c.send(ComQuery(b"stream"))
    sink = sinks[0]
    received: list[bytes] = []
    sent = 0
    for i in range(50):
        if producer.paused:
            received.append(transport.drain())  # the client reads: the socket drains
        else:
            sink.row(text_row(b"row %d" % i + b"." * 20))
            sent += 1
    assert producer.calls.count("pause") >= 3
    assert producer.calls.count("resume") >= 3
    sink.done()
    received.append(transport.drain())
    c.conn.receive_data(b"".join(received))
    evs = drain(c.conn)
    assert evs[-1] == ResultSetDone()
    assert sum(isinstance(e, Row) for e in evs) == sent


def test_a_handler_ignoring_back_pressure_is_stopped() -> None:
    h = Harness(max_overrun_bytes=100)
    c = h.connect().logged_in()
    pending: list[Deferred[None]] = []
    written: list[int] = []

    def flood(sink: IResultSink) -> Deferred[None]:
        sink.start([COL_ECHO])
        c.proto.pauseProducing()  # the client stops reading
        for i in range(100):
            if sink.closed:
                break
            sink.row(text_row(b"x" * 30))
            written.append(i)
        d: Deferred[None] = Deferred()
        pending.append(d)
        return d

    c.handler.scripts[b"flood"] = flood
    evs = c.query(b"flood")
    assert isinstance(evs[-1], Err) and evs[-1].code == 1105
    assert "slow client" in evs[-1].message
    assert len(written) < 10
    h.clock.advance(0)
    assert pending[0].called  # cancelled
    c.proto.resumeProducing()
    assert len(c.query(b"SELECT 1")) == 4


def test_verify_interfaces() -> None:
    c = Harness().connect()
    limits = SinkLimits(1, 1, 1)
    verifyObject(IResultSink, ResultSink(c.proto, limits, binary=False))
    verifyObject(IResultSink, CursorSink(c.proto, limits))
    verifyObject(IQueryHandler, FakeHandler(ClientInfo(1, "app", "127.0.0.1")))
    verifyObject(IQueryHandlerFactory, FakeHandlerFactory())
    verifyObject(IPushProducer, c.proto)

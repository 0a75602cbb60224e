"""Streaming over iosim: chunking, credit back-pressure, transport pauses, stream failures."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.unit.tabletrpc.fakes import FIELD, FakeTabletService, Pair, result_of, text_row
from vtwist.interfaces import IRowSink, ITabletRPCRequest
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_codec import (
    Chunk,
)
from vtwist.protocols.tabletrpc_ops import (
    ExecuteArgs,
    QueryResult,
)


def rows(n: int) -> list[bytes]:
    return [text_row(str(i)) for i in range(n)]


def failure_of(d: Deferred[Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        result_of(d)
    return info.value


class SlowConsumer:
    """Keeps each chunk's Deferred until the test releases it."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.waiting: list[Deferred[None]] = []

    def __call__(self, chunk: Chunk) -> Deferred[None]:
        self.chunks.append(chunk)
        d: Deferred[None] = Deferred()
        self.waiting.append(d)
        return d

    def release_all(self) -> None:
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    @property
    def rows(self) -> list[bytes]:
        return [r for c in self.chunks for r in c.rows]


class EagerService(FakeTabletService):
    """Writes every row at once and returns: no producer, so chunks pile up."""

    def stream_execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink
    ) -> QueryResult:
        sink.send_fields([FIELD])
        sink.send_rows(rows(int(args.sql.split()[1])))
        return QueryResult([], [], affected_rows=0, info="eager")


def test_stream_delivers_fields_then_all_rows_in_order() -> None:
    p = Pair(server_kw={"stream_chunk_rows": 64})
    chunks: list[Chunk] = []
    d = p.client.stream_execute("rows 3000", chunks.append)
    p.flush()
    assert result_of(d) == QueryResult([], [], info="streamed")
    assert chunks[0].fields == [FIELD]
    assert all(c.fields is None for c in chunks[1:])
    assert [r for c in chunks for r in c.rows] == rows(3000)
    assert max(len(c.rows) for c in chunks) <= 64
    assert p.server.inflight == {}


def test_slow_consumer_pauses_the_producer_then_everything_arrives() -> None:
    clock = Clock()
    p = Pair(
        FakeTabletService(clock, stream_batch=10),
        clock=clock,
        server_kw={"stream_chunk_rows": 50},
        client_kw={"stream_window": 4},
    )
    consumer = SlowConsumer()
    d = p.client.stream_execute("rows 2000", consumer)
    p.flush()
    producer = p.service.producers[0]
    assert len(consumer.chunks) == 4  # the whole window, then nothing without credit
    assert producer.paused and producer.pauses == 1
    # Rows produced while paused are bounded: at most one more chunk being built.
    assert producer.sent <= 4 * 50 + 50 + 10
    p.advance(5)
    assert len(consumer.chunks) == 4 and producer.paused
    for _ in range(1000):
        if d.called:
            break
        consumer.release_all()
        p.flush()
    assert result_of(d).info == "streamed"
    assert consumer.rows == rows(2000)
    assert producer.pauses > 1 and producer.resumes == producer.pauses


def test_congested_transport_pauses_every_stream() -> None:
    p = Pair(server_kw={"stream_chunk_rows": 20})
    chunks: list[Chunk] = []
    d = p.client.stream_execute("rows 400", chunks.append)
    p.server.pauseProducing()  # what a full TCP send buffer does
    p.flush()
    producer = p.service.producers[0]
    assert producer.paused
    received = len(chunks)
    p.flush()
    assert len(chunks) == received
    p.server.resumeProducing()
    p.flush()
    assert result_of(d).info == "streamed"
    assert [r for c in chunks for r in c.rows] == rows(400)


def test_final_reply_waits_for_pending_chunks() -> None:
    clock = Clock()
    p = Pair(
        EagerService(clock),
        clock=clock,
        server_kw={"stream_chunk_rows": 50},
        client_kw={"stream_window": 2},
    )
    consumer = SlowConsumer()
    d = p.client.stream_execute("rows 300", consumer)
    p.flush()
    assert len(consumer.chunks) == 2
    assert not d.called
    for _ in range(20):
        consumer.release_all()
        p.flush()
    assert result_of(d).info == "eager"
    assert consumer.rows == rows(300)


def test_producer_ignoring_pause_fails_the_stream_cleanly() -> None:
    class FloodService(FakeTabletService):
        def stream_execute(
            self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink
        ) -> Deferred[QueryResult]:
            sink.send_rows([b"x" * 100] * 5000)
            return Deferred()

    clock = Clock()
    p = Pair(
        FloodService(clock),
        clock=clock,
        server_kw={"stream_chunk_rows": 10, "max_stream_buffer_bytes": 20_000},
        client_kw={"stream_window": 1},
    )
    consumer = SlowConsumer()
    d = p.client.stream_execute("flood", consumer)
    p.flush()
    e = failure_of(d)
    assert isinstance(e, MySQLError) and e.code == ErrorCode.UNKNOWN_ERROR
    assert "max_stream_buffer_bytes" in e.message
    assert p.server.inflight == {}
    ok = p.client.execute("rows 1")
    p.flush()
    assert result_of(ok).rows == rows(1)


def test_cancelled_stream_stops_its_producer() -> None:
    p = Pair(client_kw={"stream_window": 2})
    consumer = SlowConsumer()
    d = p.client.stream_execute("rows 1000", consumer)
    p.flush()
    d.cancel()
    p.flush()
    e = failure_of(d)
    assert isinstance(e, MySQLError) and e.code == 1317
    producer = p.service.producers[0]
    assert producer.stopped
    assert p.service.cancel_hooks == [(1, "cancelled")]
    consumer.release_all()  # late credit for a finished stream is harmless
    p.flush()
    assert p.server.inflight == {}


def test_stream_deadline_stops_the_producer() -> None:
    p = Pair(client_kw={"stream_window": 1})
    d = p.client.stream_execute("rows 1000", SlowConsumer(), deadline=p.clock.seconds() + 2)
    p.flush()
    p.advance(1.5)
    assert not d.called
    p.advance(0.6)
    e = failure_of(d)
    assert isinstance(e, MySQLError) and e.code == 1317
    assert p.service.producers[0].stopped


def test_consumer_exception_cancels_the_stream() -> None:
    p = Pair()

    def explode(chunk: Chunk) -> None:
        raise ValueError("client went away")

    d = p.client.stream_execute("rows 500", explode)
    p.flush()
    e = failure_of(d)
    assert isinstance(e, ValueError)
    assert p.service.producers[0].stopped
    assert p.server.inflight == {}


def test_failed_consumer_deferred_cancels_the_stream() -> None:
    p = Pair()
    consumer = SlowConsumer()
    d = p.client.stream_execute("rows 500", consumer)
    p.flush()
    consumer.waiting[0].errback(ConnectionError("client socket closed"))
    p.flush()
    assert isinstance(failure_of(d), ConnectionError)
    assert p.service.producers[0].stopped


def test_chunk_larger_than_the_gate_accepts_fails_the_stream() -> None:
    clock = Clock()
    p = Pair(EagerService(clock), clock=clock, client_kw={"max_frame_size": 1024})
    d = p.client.stream_execute("rows 500", lambda c: None)
    p.flush()
    e = failure_of(d)
    assert isinstance(e, MySQLError) and e.code == ErrorCode.NET_PACKET_TOO_LARGE
    assert "stream_chunk_bytes" in e.message
    assert p.server.inflight == {}


def test_sink_rejects_bad_input() -> None:
    p = Pair(client_kw={"stream_window": 1})
    d = p.client.stream_execute("rows 1000", SlowConsumer())
    p.flush()
    sink = p.service.producers[0].sink
    with pytest.raises(ValueError):
        sink.send_fields([FIELD])  # already given by the fake
    with pytest.raises(TypeError):
        sink.send_rows(["text, not bytes"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        sink.registerProducer(object(), False)  # type: ignore[arg-type]
    d.cancel()
    assert isinstance(failure_of(d), MySQLError)

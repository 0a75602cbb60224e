"""LOAD DATA LOCAL INFILE fed from an ``IInfileReader`` against a scripted mysqld: the pieces
as packets, one read at a time, back-pressure from the transport, the read timeout
suspended while feeding, and no end-of-file packet when the feed fails or is cut short."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from tests.unit.client.scripted import Scripted, error_of, result_of
from vtwist.interfaces import IInfileReader
from vtwist.protocols.mysql import client_protocol
from vtwist.protocols.mysql.client_commands import INFILE_CHUNK, ResultHandler
from vtwist.protocols.mysql.client_protocol import INFILE_PIECE
from vtwist.protocols.mysql.commands import ComQuery
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.messages import LocalInfileData, LocalInfileRequest, Ok

LOAD = "LOAD DATA LOCAL INFILE 'f' INTO TABLE t"
END = LocalInfileData(b"")


@implementer(IInfileReader)
class Reader:
    """A reader whose reads the test answers (``give``/``fail``), in order."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, Deferred[bytes]]] = []

    def read(self, max_bytes: int) -> Deferred[bytes]:
        assert not self.pending(), "a second read while one is in flight"
        d: Deferred[bytes] = Deferred()
        self.reads.append((max_bytes, d))
        return d

    def pending(self) -> Deferred[bytes] | None:
        if self.reads and not self.reads[-1][1].called:
            return self.reads[-1][1]
        return None

    def give(self, data: bytes) -> None:
        d = self.pending()
        assert d is not None, "no read in flight"
        d.callback(data)

    def fail(self, error: BaseException) -> None:
        d = self.pending()
        assert d is not None, "no read in flight"
        d.errback(error)


@implementer(IInfileReader)
class Ready:
    """A reader answering at once from a list (a piece, or an exception to fail with)."""

    def __init__(self, *pieces: bytes | BaseException) -> None:
        self.pieces = list(pieces)
        self.asked: list[int] = []

    def read(self, max_bytes: int) -> Deferred[bytes]:
        self.asked.append(max_bytes)
        piece = self.pieces.pop(0) if self.pieces else b""
        if isinstance(piece, BaseException):
            return fail(piece)
        return succeed(piece)


def loading(reader: Any, **config: Any) -> tuple[Scripted, list[Any]]:
    """A logged-in client that sent LOAD with ``reader``; mysqld has asked for the file."""
    s = Scripted(local_files=True, **config)
    s.login()
    done: list[Any] = []
    s.client.stream_query_notify(LOAD, lambda ev: None, done.append, infile=reader)
    s.received()
    s.send(LocalInfileRequest("f"))
    return s, done


def written(s: Scripted) -> bytes:
    """What the client wrote and ``received`` has not taken yet."""
    return s.transport.value()  # type: ignore[no-untyped-call,no-any-return]  # Twisted


def producer(s: Scripted) -> IPushProducer:
    p = s.transport.producer
    assert p is not None and s.transport.streaming, "no streaming producer registered"
    return p  # type: ignore[no-any-return]


def test_pieces_are_sent_in_order_then_the_end_packet() -> None:
    reader = Reader()
    s, done = loading(reader)
    assert s.received() == [] and producer(s) is not None
    for piece in (b"1,a\n", b"2,b\n3,", b"c\n"):
        assert s.received() == []
        reader.give(piece)
        assert s.received() == [LocalInfileData(piece)]
    reader.give(b"")
    assert s.received() == [END]
    assert [m for m, _ in reader.reads] == [INFILE_PIECE] * 4
    assert s.transport.producer is None  # unregistered once the file was sent
    s.send(Ok(affected_rows=3))
    assert done[0].affected_rows == 3 and not s.client.is_broken and not s.client.busy


def test_a_reader_that_answers_at_once() -> None:
    s, done = loading(Ready(b"x" * 10, b"y" * 20, b"z"))
    assert s.received() == [
        LocalInfileData(b"x" * 10),
        LocalInfileData(b"y" * 20),
        LocalInfileData(b"z"),
        END,
    ]
    s.send(Ok(affected_rows=3))
    assert done[0].affected_rows == 3 and s.transport.producer is None


def test_a_piece_larger_than_a_packet_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_protocol, "INFILE_PIECE", 3 * INFILE_CHUNK)
    piece = bytes(range(256)) * ((2 * INFILE_CHUNK + 5) // 256) + b"tail"
    reader = Ready(piece)
    s, done = loading(reader)
    assert reader.asked[0] == 3 * INFILE_CHUNK
    assert s.received() == [
        LocalInfileData(piece[:INFILE_CHUNK]),
        LocalInfileData(piece[INFILE_CHUNK : 2 * INFILE_CHUNK]),
        LocalInfileData(piece[2 * INFILE_CHUNK :]),
        END,
    ]
    s.send(Ok())
    assert done and not isinstance(done[0], Exception)


def test_nothing_is_written_while_a_read_is_pending() -> None:
    reader = Reader()
    s, _ = loading(reader)
    assert len(reader.reads) == 1 and s.received() == []
    s.clock.advance(1)
    assert s.received() == [] and len(reader.reads) == 1  # one read at a time
    reader.give(b"late but fine\n")
    assert s.received() == [LocalInfileData(b"late but fine\n")]


@pytest.mark.parametrize(
    "error",
    [
        MySQLError(1153, "Got a packet bigger than 'max_allowed_packet' bytes", "08S01"),
        MySQLError(1159, "Got timeout reading communication packets", "08S01"),
        MySQLError(2013, "Lost connection to MySQL server during query"),
    ],
    ids=["1153", "1159", "2013"],
)
def test_a_failed_read_breaks_the_connection_without_the_end_packet(error: MySQLError) -> None:
    reader = Reader()
    s, done = loading(reader)
    queued = s.client.query("SELECT 1")
    reader.give(b"1,a\n")
    assert s.received() == [LocalInfileData(b"1,a\n")]
    reader.fail(error)
    assert s.transport.aborted and s.client.is_broken
    assert written(s) == b""  # no end packet: mysqld rolls the statement back
    err = done[0].value
    assert isinstance(err, MySQLError)
    assert (err.code, err.message) == (error.code, error.message)
    assert error_of(queued, MySQLError).code == 2006
    assert s.transport.producer is None
    assert len(reader.reads) == 2  # no read after the failure


def test_a_reader_failing_otherwise_breaks_with_a_client_error() -> None:
    s, done = loading(Ready(b"1,a\n", ValueError("disk on fire")))
    assert s.received() == [LocalInfileData(b"1,a\n")]
    assert s.transport.aborted
    err = done[0].value
    assert isinstance(err, MySQLError) and err.code == 2000 and "disk on fire" in err.message


def test_a_reader_raising_breaks_the_connection() -> None:
    @implementer(IInfileReader)
    class Raising:
        def read(self, max_bytes: int) -> Deferred[bytes]:
            raise MySQLError(1317, "Query execution was interrupted", "70100")

    s, done = loading(Raising())
    assert written(s) == b"" and s.transport.aborted
    assert done[0].value.code == 1317


def test_the_read_timeout_waits_during_the_feed_then_runs_again() -> None:
    reader = Reader()
    s, done = loading(reader, read_timeout=10.0)
    s.clock.advance(60)  # the file comes slowly: not mysqld's silence
    reader.give(b"1,a\n")
    s.clock.advance(60)
    s.client.pause_reading()  # resuming the reads from mysqld does not arm it either
    s.client.resume_reading()
    s.clock.advance(60)
    assert not s.client.is_broken and not done
    reader.give(b"")
    assert s.received() == [LocalInfileData(b"1,a\n"), END]
    s.clock.advance(9)
    assert not s.client.is_broken
    s.clock.advance(2)  # mysqld is silent after the end of the file
    err = done[0].value
    assert err.code == 2013 and "read_timeout" in err.message and s.transport.aborted


def test_the_read_timeout_runs_again_after_a_feed_then_a_reply() -> None:
    reader = Ready(b"1,a\n")
    s, done = loading(reader, read_timeout=10.0)
    assert s.received()[-1] == END
    s.clock.advance(5)
    s.send(Ok(affected_rows=1))
    assert done[0].affected_rows == 1
    s.clock.advance(60)  # idle: no timer
    assert not s.client.is_broken


def test_a_paused_producer_reads_no_further_piece_until_resumed() -> None:
    reader = Reader()
    s, _ = loading(reader)
    feeder = producer(s)
    feeder.pauseProducing()  # the transport's buffer is full
    reader.give(b"in flight\n")  # the read in flight is still written...
    assert s.received() == [LocalInfileData(b"in flight\n")]
    assert len(reader.reads) == 1  # ...but no next one is asked for
    feeder.resumeProducing()
    assert len(reader.reads) == 2
    feeder.pauseProducing()
    feeder.resumeProducing()
    assert len(reader.reads) == 2  # still one read at a time
    reader.give(b"")
    assert s.received() == [END]


def test_pause_reading_is_not_the_write_side() -> None:
    reader = Reader()
    s, done = loading(reader)
    s.client.pause_reading()
    reader.give(b"1,a\n")
    reader.give(b"")  # the feed goes on while reading from mysqld is paused
    assert s.received() == [LocalInfileData(b"1,a\n"), END]
    s.send(Ok(affected_rows=1))
    assert not done
    s.client.resume_reading()
    assert done[0].affected_rows == 1


def test_a_connection_lost_during_a_read_fails_with_2013_and_drops_the_late_piece() -> None:
    reader = Reader()
    s, done = loading(reader)
    queued = s.client.query("SELECT 1")
    pending = reader.pending()
    assert pending is not None
    s.lose()
    assert done[0].value.code == 2013
    assert error_of(queued, MySQLError).code == 2006
    assert pending.called  # the read was cancelled
    pending.callback(b"late\n")  # (ignored by the cancelled Deferred)
    assert written(s) == b"" and len(reader.reads) == 1


def test_cancelling_the_command_during_the_feed_closes_the_connection() -> None:
    s = Scripted(local_files=True)
    s.login()
    reader = Reader()
    handler = ResultHandler(ComQuery(LOAD.encode()), False, False, 1 << 20, infile=reader)
    d = s.proto.submit(handler)
    s.received()
    s.send(LocalInfileRequest("f"))
    reader.give(b"1,a\n")
    assert s.received() == [LocalInfileData(b"1,a\n")]
    pending = reader.pending()
    assert pending is not None
    d.cancel()
    error_of(d, CancelledError)
    assert s.transport.aborted and s.client.is_broken and pending.called
    assert written(s) == b"" and s.transport.producer is None


def test_close_during_the_feed_fails_with_2013_without_the_end_packet() -> None:
    reader = Reader()
    s, done = loading(reader)
    s.client.close()
    assert done[0].value.code == 2013 and s.transport.aborted
    assert written(s) == b""


def test_a_query_queued_behind_the_load_runs_after_it() -> None:
    reader = Reader()
    s, done = loading(reader)
    then = s.client.query("SELECT 1")
    reader.give(b"1,a\n")
    reader.give(b"")
    assert s.received() == [LocalInfileData(b"1,a\n"), END]
    s.send(Ok(affected_rows=1))
    assert done[0].affected_rows == 1
    assert [type(m).__name__ for m in s.received()] == ["ComQuery"]
    s.send(Ok())
    assert result_of(then).affected_rows == 0


def test_the_handler_leaves_a_reader_to_the_glue() -> None:
    reader = Reader()
    h = ResultHandler(ComQuery(LOAD.encode()), False, False, 1 << 20, infile=reader)
    assert h.event(LocalInfileRequest("f")) is None
    assert h.take_infile_stream() is reader and h.take_infile_stream() is None
    assert h.error is None and not reader.reads  # the handler never reads
    whole = ResultHandler(ComQuery(LOAD.encode()), False, False, 1 << 20, infile=b"1,a\n")
    assert whole.event(LocalInfileRequest("f")) == [LocalInfileData(b"1,a\n"), END]
    assert whole.take_infile_stream() is None


def test_client_commands_imports_no_twisted() -> None:
    code = (
        "import sys, vtwist.protocols.mysql.client_commands\n"
        "bad = [m for m in sys.modules if m.startswith(('twisted', 'vtwist.interfaces'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""LOAD DATA LOCAL INFILE on the server side: ``IResultSink.local_infile`` asks the client
for the file and hands the handler a ``ClientFile`` (``IClientFile``) it reads in pieces
while the command is in progress, bounded in memory, size and time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from tests.unit.server.harness import COL_ONE, Client, Harness, drain, text_row
from vtwist.interfaces import IClientFile, IResultSink
from vtwist.protocols.mysql.errors import LocalProtocolError, MySQLError
from vtwist.protocols.mysql.events import ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ComQuery,
    Err,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
)
from vtwist.protocols.mysql.packets import encode_packets
from vtwist.protocols.mysql.server import DEFAULT_MAX_INFILE_BUFFER_BYTES, ClientFile


class Watch:
    """What a Deferred gave, looked at without waiting."""

    def __init__(self, d: Deferred[Any]) -> None:
        self.results: list[object] = []
        d.addBoth(self._got)

    def _got(self, result: object) -> None:
        self.results.append(result)

    @property
    def fired(self) -> bool:
        return bool(self.results)

    @property
    def value(self) -> Any:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert not isinstance(result, Failure), result
        return result

    @property
    def error(self) -> BaseException:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, Failure), result
        assert result.value is not None
        return result.value


def value(d: Deferred[Any]) -> Any:
    return Watch(d).value


def error(d: Deferred[Any]) -> BaseException:
    return Watch(d).error


class Holder:
    """A handler script that asks for ``f.csv`` and leaves the file to the test; the
    command is over when ``end`` is called."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.sink: IResultSink | None = None
        self.file: IClientFile | None = None
        self.done: Deferred[None] = Deferred()

    def __call__(self, sink: IResultSink) -> Deferred[None]:
        self.sink = sink
        self.file = sink.local_infile("f.csv", self.limit)
        return self.done

    @property
    def f(self) -> IClientFile:
        assert self.file is not None
        return self.file

    def ok(self) -> None:
        assert self.sink is not None
        self.sink.ok(self.f.consumed, 0, 2)
        self.done.callback(None)

    def error(self, e: MySQLError) -> None:
        assert self.sink is not None
        self.sink.error(e)
        self.done.callback(None)


class Loader:
    """A handler script: reads ``f.csv`` (at most ``limit`` bytes) in reads of ``chunk``
    bytes, finishes it, then answers OK with its length, or ERR with the error it got."""

    def __init__(self, limit: int = 1000, chunk: int = 5) -> None:
        self.limit = limit
        self.chunk = chunk
        self.files: list[bytes] = []
        self.pieces: list[bytes] = []
        self.errors: list[MySQLError] = []

    async def __call__(self, sink: IResultSink) -> None:
        f = sink.local_infile("f.csv", self.limit)
        try:
            while data := await f.read(self.chunk):
                assert 0 < len(data) <= self.chunk
                self.pieces.append(data)
            await f.finish()
        except MySQLError as e:
            self.errors.append(e)
            try:
                await f.finish()
            except MySQLError:
                return  # the connection is closed
            sink.error(e)
            return
        self.files.append(b"".join(self.pieces))
        sink.ok(f.consumed, 0, 2)


def started(script: Any, **kw: Any) -> tuple[Harness, Client]:
    h = Harness(**kw)
    c = h.connect().logged_in()
    c.handler.scripts[b"load"] = script
    c.send(ComQuery(b"load"))
    assert c.events() == [LocalInfileRequest("f.csv")]
    return h, c


def holding(limit: int = 1000, **kw: Any) -> tuple[Harness, Client, Holder]:
    holder = Holder(limit)
    h, c = started(holder, **kw)
    return h, c, holder


def select_one_works(c: Client) -> None:
    evs = c.query(b"SELECT 1")
    assert [type(e) for e in evs] == [ResultSetStart, type(evs[1]), Row, ResultSetDone]
    assert evs[2] == Row(text_row(b"1"))
    assert COL_ONE.name == "1"


def reading(c: Client) -> bool:
    return bool(c.transport.producerState == "producing")


# -- reading ---------------------------------------------------------------------------------


def test_pieces_are_read_in_order_joined_and_split_to_max_bytes() -> None:
    _, c, x = holding()
    assert isinstance(x.f, ClientFile) and IClientFile.providedBy(x.f)
    c.send(LocalInfileData(b"1,a\n"), LocalInfileData(b"2,"), LocalInfileData(b"b\n"))
    assert value(x.f.read(3)) == b"1,a"
    assert value(x.f.read(3)) == b"\n2,"  # the end of a piece and a whole one
    assert x.f.consumed == 6
    assert value(x.f.read(100)) == b"b\n"
    c.send(LocalInfileData(b"3,c\n" * 3))
    assert value(x.f.read(2)) == b"3,"
    assert value(x.f.read(2)) == b"c\n"
    assert value(x.f.read(100)) == b"3,c\n3,c\n"
    c.send(LocalInfileData(b""))
    assert value(x.f.read(100)) == b""
    assert value(x.f.read(100)) == b""  # and so on, after the end
    assert value(x.f.finish()) is None
    assert x.f.consumed == 20
    assert c.events() == []  # nothing before the reply
    x.ok()
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 20
    select_one_works(c)


def test_a_read_waits_for_the_clients_bytes() -> None:
    _, c, x = holding()
    w = Watch(x.f.read(10))
    assert not w.fired
    c.send(LocalInfileData(b"abc"))
    assert w.value == b"abc"
    w = Watch(x.f.read(2))
    c.send(LocalInfileData(b"defg"))
    assert w.value == b"de"
    assert value(x.f.read(10)) == b"fg"
    w = Watch(x.f.read(10))
    c.send(LocalInfileData(b""))
    assert w.value == b""  # the end answers a waiting read
    x.ok()
    assert isinstance(c.events()[0], Ok)


def test_the_bytes_still_buffered_at_the_end_can_be_read() -> None:
    _, c, x = holding()
    c.send(LocalInfileData(b"abc"), LocalInfileData(b"def"), LocalInfileData(b""))
    assert value(x.f.read(4)) == b"abcd"
    assert value(x.f.read(4)) == b"ef"
    assert value(x.f.read(4)) == b""
    x.ok()
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 6


def test_one_read_at_a_time() -> None:
    _, c, x = holding()
    first = Watch(x.f.read(10))
    e = error(x.f.read(10))
    assert isinstance(e, LocalProtocolError)
    c.send(LocalInfileData(b"abc"))
    assert first.value == b"abc"
    assert isinstance(error(x.f.read(0)), ValueError)


def test_a_cancelled_read_lets_the_next_one_in() -> None:
    _, c, x = holding()
    d = x.f.read(10)
    d.cancel()
    assert isinstance(error(d), CancelledError)
    w = Watch(x.f.read(10))
    c.send(LocalInfileData(b"abc"))
    assert w.value == b"abc"


def test_an_empty_file_and_a_command_pipelined_after_it() -> None:
    loader = Loader()
    _, c = started(loader)
    c.send_raw(
        c.conn.send(LocalInfileData(b"")) + encode_packets(ComQuery(b"SELECT 1").encode(), 0)[0]
    )
    assert loader.files == [b""]
    assert c.handler.calls[-2:] == [("query", b"load"), ("query", b"SELECT 1")]
    c.conn.receive_data(c.raw_out())
    ok = c.conn.next_event()
    assert isinstance(ok, Ok) and ok.affected_rows == 0
    c.conn.send(ComQuery(b"SELECT 1"))  # (the client side's record of what it sent)
    evs = drain(c.conn)
    assert evs[2] == Row(text_row(b"1"))


def test_the_files_start_sent_before_the_request_is_read_first() -> None:
    # The handler asks for the file later; the client's bytes wait (over the pipeline
    # bound: reading pauses), then are the file's start, and reading resumes.
    later: list[Deferred[None]] = []
    loader = Loader()

    def script(sink: IResultSink) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.addCallback(lambda _: Deferred.fromCoroutine(loader(sink)))
        later.append(d)
        return d

    h = Harness(max_pipeline_bytes=8)
    c = h.connect().logged_in()
    c.handler.scripts[b"load"] = script
    c.send(ComQuery(b"load"))
    early = [LocalInfileData(b"1,a\n2,b\n"), LocalInfileData(b"3,c\n")]
    c.send_raw(b"".join(encode_packets(ev.encode(), seq)[0] for seq, ev in enumerate(early, 2)))
    assert not reading(c)
    later[0].callback(None)
    assert reading(c)
    assert c.events() == [LocalInfileRequest("f.csv")]
    c.conn.send_many(early)  # (the client side's record of what it sent)
    c.send(LocalInfileData(b"4,d\n"), LocalInfileData(b""))
    assert loader.files == [b"1,a\n2,b\n3,c\n4,d\n"]
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 16
    select_one_works(c)


# -- too large -------------------------------------------------------------------------------


def test_a_file_over_the_limit_fails_its_read_and_is_dropped_to_its_end() -> None:
    _, c, x = holding(limit=10)
    c.send(LocalInfileData(b"x" * 8))
    assert value(x.f.read(100)) == b"x" * 8
    w = Watch(x.f.read(100))
    c.send(LocalInfileData(b"y" * 8))  # 16 bytes: over the limit
    e = w.error
    assert isinstance(e, MySQLError) and e.code == 1153
    assert "more than 10 bytes" in e.message and "16" in e.message
    c.send(LocalInfileData(b"z" * 8))  # read and dropped
    again = error(x.f.read(100))
    assert isinstance(again, MySQLError) and again.code == 1153
    fin = Watch(x.f.finish())
    assert not fin.fired
    assert reading(c) and c.events() == []
    c.send(LocalInfileData(b""))
    assert fin.value is None
    x.error(e)
    [err] = c.events()
    assert isinstance(err, Err) and err.code == 1153 and "more than 10 bytes" in err.message
    select_one_works(c)


def test_a_file_over_the_limit_drops_what_was_buffered() -> None:
    _, c, x = holding(limit=10)
    c.send(LocalInfileData(b"x" * 8), LocalInfileData(b"y" * 8), LocalInfileData(b""))
    assert isinstance(x.f, ClientFile) and x.f._buffered == 0
    e = error(x.f.read(1))  # not the 8 bytes that were within the limit
    assert isinstance(e, MySQLError) and e.code == 1153
    assert value(x.f.finish()) is None  # the end already came
    assert x.f.consumed == 0


def test_the_loader_sends_1153_and_the_connection_goes_on() -> None:
    loader = Loader(limit=10)
    _, c = started(loader)
    c.send(LocalInfileData(b"x" * 8), LocalInfileData(b"y" * 8), LocalInfileData(b"z" * 8))
    assert [e.code for e in loader.errors] == [1153]
    assert c.events() == []
    c.send(LocalInfileData(b""))
    [err] = c.events()
    assert isinstance(err, Err) and err.code == 1153
    assert loader.files == []
    select_one_works(c)


def test_a_file_exactly_at_the_limit_is_taken() -> None:
    loader = Loader(limit=10)
    _, c = started(loader)
    c.send(LocalInfileData(b"x" * 6), LocalInfileData(b"y" * 4), LocalInfileData(b""))
    assert loader.errors == [] and loader.files == [b"x" * 6 + b"y" * 4]


# -- finish ----------------------------------------------------------------------------------


def test_finish_drops_the_rest_and_waits_for_the_end() -> None:
    _, c, x = holding()
    c.send(LocalInfileData(b"abcdef"))
    assert value(x.f.read(2)) == b"ab"
    assert value(x.f.read(10)) == b"cdef"
    pending = Watch(x.f.read(10))  # nothing left: after finish() it answers b""
    assert not pending.fired
    fin = Watch(x.f.finish())
    assert pending.value == b""
    assert not fin.fired
    c.send(LocalInfileData(b"ghi"), LocalInfileData(b"jkl"))
    assert not fin.fired
    assert value(x.f.read(10)) == b""  # dropped
    c.send(LocalInfileData(b""))
    assert fin.value is None
    assert x.f.consumed == 6
    x.ok()
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 6
    select_one_works(c)


def test_finish_drops_what_is_buffered_and_fires_at_once_after_the_end() -> None:
    _, c, x = holding()
    c.send(LocalInfileData(b"abcdef"), LocalInfileData(b""))
    assert value(x.f.read(2)) == b"ab"
    assert value(x.f.finish()) is None
    assert value(x.f.read(10)) == b""
    assert x.f.consumed == 2


def test_finish_resumes_a_paused_client() -> None:
    _, c, x = holding(max_infile_buffer_bytes=10)
    c.send(LocalInfileData(b"a" * 8), LocalInfileData(b"b" * 8), LocalInfileData(b"c" * 8))
    assert not reading(c)
    fin = Watch(x.f.finish())
    assert reading(c) and not fin.fired
    c.send(LocalInfileData(b"d" * 8), LocalInfileData(b""))
    assert fin.value is None
    x.ok()
    assert isinstance(c.events()[0], Ok)
    assert reading(c)
    select_one_works(c)


def test_a_reply_before_finish_closes_the_connection() -> None:
    _, c, x = holding()
    c.send(LocalInfileData(b"abc"))
    w = Watch(x.f.read(10))
    assert w.value == b"abc"
    w = Watch(x.f.read(10))
    x.ok()  # the client is still sending: it could not read the reply in step
    assert c.transport.disconnecting
    e = w.error
    assert isinstance(e, MySQLError) and e.code == 2013


# -- back-pressure ---------------------------------------------------------------------------


def test_reading_pauses_over_the_buffer_limit_and_resumes_after_reads() -> None:
    _, c, x = holding(max_infile_buffer_bytes=10)
    c.send(LocalInfileData(b"a" * 6))
    assert reading(c)
    c.send(LocalInfileData(b"b" * 6))  # 12 buffered
    assert not reading(c)
    assert value(x.f.read(1)) == b"a"  # 11: still over
    assert not reading(c)
    assert value(x.f.read(5)) == b"a" * 5  # 6
    assert reading(c)
    c.send(LocalInfileData(b"c" * 6), LocalInfileData(b"d" * 6), LocalInfileData(b""))
    # Only what fits is parsed: the rest waits unparsed until reads make room.
    assert not reading(c)
    assert value(x.f.read(6)) == b"b" * 6
    assert not reading(c)  # "d" came in: 12 again
    assert value(x.f.read(12)) == b"c" * 6 + b"d" * 6
    assert reading(c)
    assert value(x.f.read(12)) == b""
    x.ok()
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 24
    select_one_works(c)


def test_the_buffer_holds_at_most_the_limit_and_one_packet() -> None:
    _, c, x = holding(max_infile_buffer_bytes=10)
    assert isinstance(x.f, ClientFile)
    c.send(*(LocalInfileData(bytes([65 + i]) * 4) for i in range(20)), LocalInfileData(b""))
    assert x.f._buffered == 12  # (three packets: the third went over)
    got = b""
    while data := value(x.f.read(3)):
        assert x.f._buffered <= 10 + 4
        got += data
    assert got == b"".join(bytes([65 + i]) * 4 for i in range(20))
    assert reading(c)


def test_the_factory_option() -> None:
    assert DEFAULT_MAX_INFILE_BUFFER_BYTES == 1 << 20
    assert Harness().factory.max_infile_buffer_bytes == 1 << 20
    with pytest.raises(ValueError, match="max_infile_buffer_bytes"):
        Harness(max_infile_buffer_bytes=0)


# -- time, loss, misuse ----------------------------------------------------------------------


def test_a_client_that_stalls_is_closed_after_idle_timeout() -> None:
    h, c, x = holding(idle_timeout=30)
    c.send(LocalInfileData(b"1,a\n"))
    h.clock.advance(29)
    c.send(LocalInfileData(b"2,b\n"))  # activity re-arms the wait
    h.clock.advance(29)
    assert not c.transport.disconnecting
    w = Watch(x.f.read(100))
    assert w.value == b"1,a\n2,b\n"
    w = Watch(x.f.read(100))
    h.clock.advance(2)
    e = w.error
    assert isinstance(e, MySQLError) and e.code == 1159
    assert c.transport.disconnecting
    again = error(x.f.read(100))
    assert isinstance(again, MySQLError) and again.code == 1159
    fin = error(x.f.finish())
    assert isinstance(fin, MySQLError) and fin.code == 1159


def test_a_client_paused_by_a_full_buffer_is_not_stalling() -> None:
    h, c, x = holding(idle_timeout=30, max_infile_buffer_bytes=10)
    c.send(LocalInfileData(b"a" * 12))
    assert not reading(c)
    h.clock.advance(1000)  # the handler is slow: the client waits for it
    assert not c.transport.disconnecting
    assert value(x.f.read(6)) == b"a" * 6
    assert reading(c)  # the server waits for the client again
    h.clock.advance(29)
    assert not c.transport.disconnecting
    h.clock.advance(2)
    assert c.transport.disconnecting
    e = error(x.f.read(100))
    assert isinstance(e, MySQLError) and e.code == 1159


def test_a_slow_finish_is_timed_too() -> None:
    h, c, x = holding(idle_timeout=30)
    fin = Watch(x.f.finish())
    h.clock.advance(31)
    e = fin.error
    assert isinstance(e, MySQLError) and e.code == 1159
    assert c.transport.disconnecting


def test_no_timer_is_left_after_the_end() -> None:
    h, c, x = holding(idle_timeout=30)
    c.send(LocalInfileData(b"abc"), LocalInfileData(b""))
    h.clock.advance(31)  # the handler takes its time: the client sent everything
    assert not c.transport.disconnecting
    assert value(x.f.read(10)) == b"abc"
    x.ok()
    assert isinstance(c.events()[0], Ok)


def test_a_client_that_leaves_mid_file_fails_the_read_and_finish() -> None:
    _, c, x = holding()
    c.send(LocalInfileData(b"1,a\n"))
    w = Watch(x.f.read(100))
    assert w.value == b"1,a\n"
    w = Watch(x.f.read(100))
    c.lose()
    e = w.error
    assert isinstance(e, MySQLError) and e.code == 2013
    fin = error(x.f.finish())
    assert isinstance(fin, MySQLError) and fin.code == 2013


def test_a_client_that_leaves_fails_a_pending_finish() -> None:
    _, c, x = holding(limit=4)
    c.send(LocalInfileData(b"1,a\n2,b\n"))
    assert isinstance(error(x.f.read(100)), MySQLError)
    fin = Watch(x.f.finish())
    c.lose()
    e = fin.error
    assert isinstance(e, MySQLError) and e.code == 2013


def test_the_loader_learns_when_the_client_leaves() -> None:
    loader = Loader()
    _, c = started(loader)
    c.send(LocalInfileData(b"1,a\n"))
    c.lose()
    assert [e.code for e in loader.errors] == [2013]


def test_a_packet_over_max_packet_size_closes_the_connection() -> None:
    loader = Loader()
    _, c = started(loader, max_packet_size=1024)
    c.send_raw(c.conn.send(LocalInfileData(b"x" * 2000)))
    assert [e.code for e in loader.errors] == [2013]
    assert c.transport.disconnecting
    raw = c.raw_out()  # an ERR 1153 packet (the client side here cannot parse it mid-file)
    assert raw[4] == 0xFF and int.from_bytes(raw[5:7], "little") == 1153
    assert b"max_allowed_packet" in raw


def test_local_infile_comes_before_anything_else_of_the_reply() -> None:
    h = Harness()
    c = h.connect().logged_in()
    seen: list[BaseException] = []

    def script(sink: IResultSink) -> None:
        sink.start([COL_ONE])
        try:
            sink.local_infile("f.csv", 10)
        except LocalProtocolError as e:
            seen.append(e)
        sink.row(text_row(b"1"))
        sink.done()

    c.handler.scripts[b"load"] = script
    evs = c.query(b"load")
    assert len(seen) == 1 and "before anything else" in str(seen[0])
    assert evs[2] == Row(text_row(b"1"))  # no LocalInfileRequest went out
    select_one_works(c)


def test_a_second_file_while_one_is_read_is_refused() -> None:
    _, c, x = holding()
    assert x.sink is not None
    with pytest.raises(LocalProtocolError):
        x.sink.local_infile("g.csv", 10)
    assert c.events() == []


def test_a_closing_connection_gives_a_failed_file() -> None:
    h = Harness()
    c = h.connect().logged_in()
    c.proto.close()
    f = c.proto.request_file("f.csv", 10)
    e = error(f.read(1))
    assert isinstance(e, MySQLError) and e.code == 2013
    assert isinstance(error(f.finish()), MySQLError)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
    st.integers(1, 400),
    st.integers(1, 700),
)
def test_any_file_split_any_way_arrives_whole(
    packets: list[bytes], cuts: list[int], chunk: int, buffer_limit: int
) -> None:
    loader = Loader(limit=6 * 300, chunk=chunk)
    _, c = started(loader, max_infile_buffer_bytes=buffer_limit)
    raw = c.conn.send_many([*(LocalInfileData(p) for p in packets), LocalInfileData(b"")])
    i = 0
    for n in cuts * (len(raw) // max(sum(cuts), 1) + 1):
        if i >= len(raw):
            break
        c.send_raw(raw[i : i + n])
        i += n
    c.send_raw(raw[i:])
    assert loader.files == [b"".join(packets)]
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == len(b"".join(packets))
    assert reading(c)

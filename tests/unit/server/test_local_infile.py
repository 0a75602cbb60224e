"""LOAD DATA LOCAL INFILE on the server side: ``IResultSink.local_infile`` asks the client
for the file and reads it while the command is in progress, bounded in size and time."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from tests.unit.server.harness import COL_ONE, Client, Harness, drain, text_row
from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ComQuery,
    Err,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
)
from vtwist.protocols.mysql.packets import encode_packets


class Loader:
    """A handler script: asks for ``f.csv`` (at most ``limit`` bytes), then answers OK with
    the file's length, or the error it got."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.files: list[bytes] = []
        self.errors: list[MySQLError] = []

    def __call__(self, sink: IResultSink) -> Deferred[None]:
        d = sink.local_infile("f.csv", self.limit)

        def got(data: bytes) -> None:
            self.files.append(data)
            sink.ok(len(data), 0, 2)

        def failed(f: Failure) -> None:
            e = f.value
            assert isinstance(e, MySQLError)
            self.errors.append(e)
            if not sink.closed:
                sink.error(e)

        return d.addCallbacks(got, failed)


def loading(limit: int = 1000, **kw: Any) -> tuple[Harness, Client, Loader]:
    h = Harness(**kw)
    c = h.connect().logged_in()
    loader = Loader(limit)
    c.handler.scripts[b"load"] = loader
    c.send(ComQuery(b"load"))
    assert c.events() == [LocalInfileRequest("f.csv")]
    return h, c, loader


def select_one_works(c: Client) -> None:
    evs = c.query(b"SELECT 1")
    assert [type(e) for e in evs] == [ResultSetStart, type(evs[1]), Row, ResultSetDone]
    assert evs[2] == Row(text_row(b"1"))


def test_the_file_is_read_across_packets_and_reads() -> None:
    _, c, loader = loading()
    c.send(LocalInfileData(b"1,a\n"), LocalInfileData(b"2,"))
    assert c.events() == []  # nothing until the file ends
    c.send(LocalInfileData(b"b\n"))
    c.send(LocalInfileData(b""))
    assert loader.files == [b"1,a\n2,b\n"]
    [ok] = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 8
    select_one_works(c)
    assert COL_ONE.name == "1"


def test_an_empty_file_and_a_command_pipelined_after_it() -> None:
    _, c, loader = loading()
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


def test_a_file_over_the_limit_is_read_to_its_end_then_refused() -> None:
    _, c, loader = loading(limit=10)
    c.send(LocalInfileData(b"x" * 8), LocalInfileData(b"y" * 8), LocalInfileData(b"z" * 8))
    assert loader.errors == []
    c.send(LocalInfileData(b""))
    [err] = c.events()
    assert isinstance(err, Err) and err.code == 1153 and "24 bytes" in err.message
    assert loader.files == []
    select_one_works(c)


def test_a_client_that_stalls_is_closed_after_idle_timeout() -> None:
    h, c, loader = loading(idle_timeout=30)
    c.send(LocalInfileData(b"1,a\n"))
    h.clock.advance(29)
    c.send(LocalInfileData(b"2,b\n"))  # activity re-arms the wait
    h.clock.advance(29)
    assert loader.errors == [] and not c.transport.disconnecting
    h.clock.advance(2)
    assert [e.code for e in loader.errors] == [1159]
    assert c.transport.disconnecting


def test_a_client_that_leaves_mid_file_fails_the_read() -> None:
    _, c, loader = loading()
    c.send(LocalInfileData(b"1,a\n"))
    c.lose()
    assert [e.code for e in loader.errors] == [2013]


def test_a_packet_over_max_packet_size_closes_the_connection() -> None:
    _, c, loader = loading(max_packet_size=1024)
    c.send_raw(c.conn.send(LocalInfileData(b"x" * 2000)))
    assert [e.code for e in loader.errors] == [2013]
    assert c.transport.disconnecting
    raw = c.raw_out()  # an ERR 1153 packet (the client side here cannot parse it mid-file)
    assert raw[4] == 0xFF and int.from_bytes(raw[5:7], "little") == 1153
    assert b"max_allowed_packet" in raw


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
def test_any_file_split_any_way_arrives_whole(packets: list[bytes], cuts: list[int]) -> None:
    _, c, loader = loading(limit=6 * 300)
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

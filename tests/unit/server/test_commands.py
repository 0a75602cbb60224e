"""Text-protocol commands of MySQLServerProtocol, handler errors, ordering and limits."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.server.harness import (
    AUTOCOMMIT,
    CAPS,
    COL_ECHO,
    COL_ONE,
    IN_TRANS,
    MORE,
    NO_EOF_CAPS,
    Client,
    FakeTLSCreator,
    Harness,
    drain,
    text_row,
)
from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.connection import CLOSED
from vtwist.protocols.mysql.constants import Capability, SetOption
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    Err,
    Ok,
    StatisticsResponse,
    UnknownCommand,
)
from vtwist.protocols.mysql.packets import encode_packets

NO_MULTI = CAPS & ~int(Capability.MULTI_STATEMENTS)


def client(caps: int = CAPS, **kw: object) -> Client:
    return Harness(**kw).connect().logged_in(caps=caps)


@pytest.mark.parametrize("caps", [CAPS, NO_EOF_CAPS])
def test_select_1_in_both_eof_modes(caps: int) -> None:
    c = client(caps)
    c.send(ComQuery(b"SELECT 1"))
    wire = c.raw_out()
    c.conn.receive_data(wire)
    assert drain(c.conn) == [
        ResultSetStart(1),
        Column(COL_ONE),
        Row(text_row(b"1")),
        ResultSetDone(AUTOCOMMIT),
    ]
    # classic: count, column, EOF, row, EOF; DEPRECATE_EOF: count, column, row, OK(0xFE)
    headers = []
    pos = 0
    while pos < len(wire):
        n = int.from_bytes(wire[pos : pos + 3], "little")
        headers.append(wire[pos + 4])
        pos += 4 + n
    assert headers == ([1, 3, 0xFE, 1, 0xFE] if caps == NO_EOF_CAPS else [1, 3, 1, 0xFE])
    assert c.handler.calls[-1] == ("query", b"SELECT 1")


def test_ok_result_and_status_from_the_handler() -> None:
    c = client()
    c.handler.status_flags = AUTOCOMMIT | IN_TRANS
    assert c.query(b"insert into t values (1),(2),(3)") == [
        Ok(3, 42, AUTOCOMMIT | IN_TRANS, 1, b"Records: 3")
    ]
    assert c.query(b"SELECT 1")[-1] == ResultSetDone(AUTOCOMMIT | IN_TRANS)


def test_multi_statements_refused_unless_negotiated() -> None:
    c = client(NO_MULTI)
    (err,) = c.query(b"SELECT 1; SELECT 2")
    assert isinstance(err, Err) and err.code == 1064 and err.sqlstate == "42000"
    assert "near 'SELECT 2' at line 1" in err.message
    assert c.handler.calls == []
    # A trailing ';' and ';' in strings are fine.
    assert len(c.query(b"SELECT 'a;b';")) == 4
    # COM_SET_OPTION turns them on (the answer is an EOF in classic mode), and off again.
    c.send(ComSetOption(SetOption.MULTI_STATEMENTS_ON))
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    assert len(c.query(b"SELECT 1; SELECT 2")) == 4
    c.send(ComSetOption(SetOption.MULTI_STATEMENTS_OFF))
    c.events()
    assert isinstance(c.query(b"SELECT 1; SELECT 2")[0], Err)
    assert ("set_multi_statements", True) in c.handler.calls


def test_reset_connection_restores_the_negotiated_multi_statement_option() -> None:
    c = client()
    c.send(ComSetOption(SetOption.MULTI_STATEMENTS_OFF))
    c.events()
    c.send(ComResetConnection())
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    assert c.handler.calls[-1] == ("reset_connection",)
    assert len(c.query(b"SELECT 1; SELECT 2")) == 4


def test_bad_set_option() -> None:
    c = client()
    c.send(ComSetOption(7))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1047


def test_multi_results() -> None:
    c = client()

    def script(sink: IResultSink) -> None:
        sink.ok(1, 0, AUTOCOMMIT | MORE)
        sink.start([COL_ECHO])
        sink.rows([text_row(b"a"), text_row(b"b")])
        sink.done(AUTOCOMMIT | MORE)
        sink.ok(0, 0, AUTOCOMMIT)

    c.handler.scripts[b"multi"] = script
    assert c.query(b"multi") == [
        Ok(1, 0, AUTOCOMMIT | MORE),
        ResultSetStart(1),
        Column(COL_ECHO),
        Row(text_row(b"a")),
        Row(text_row(b"b")),
        ResultSetDone(AUTOCOMMIT | MORE),
        Ok(0, 0, AUTOCOMMIT),
    ]
    assert c.proto.conn.state.name == "IDLE"


def test_handler_errors_become_err_packets_and_the_session_goes_on() -> None:
    c = client()
    assert c.query(b"error") == [Err(1146, "Table 'db.t' doesn't exist", "42S02")]
    (err,) = c.query(b"boom")
    assert err == Err(1105, "internal error: RuntimeError: boom", "HY000")
    assert len(c.query(b"SELECT 1")) == 4


def test_error_mid_result_and_incomplete_replies() -> None:
    c = client()

    def mid(sink: IResultSink) -> None:
        sink.start([COL_ECHO])
        sink.row(text_row(b"a"))
        raise MySQLError(1317, "Query execution was interrupted")

    def silent(sink: IResultSink) -> None:
        sink.start([COL_ECHO])

    c.handler.scripts[b"mid"] = mid
    c.handler.scripts[b"silent"] = silent
    c.handler.scripts[b"nothing"] = lambda sink: None
    evs = c.query(b"mid")
    assert evs[-1] == Err(1317, "Query execution was interrupted", "70100")
    assert evs[2] == Row(text_row(b"a"))
    (_, _, err) = c.query(b"silent")
    assert isinstance(err, Err) and err.code == 1105
    (err,) = c.query(b"nothing")
    assert isinstance(err, Err) and err.code == 1105
    assert len(c.query(b"SELECT 1")) == 4


def test_sink_misuse_raises_to_the_handler() -> None:
    c = client()
    seen: list[Exception] = []

    def bad(sink: IResultSink) -> None:
        try:
            sink.row(b"\x01a")
        except Exception as e:
            seen.append(e)
        try:
            sink.start([COL_ECHO], binary=True)
        except Exception as e:
            seen.append(e)
        sink.ok()
        sink.ok()  # after the end: ignored
        assert sink.closed

    c.handler.scripts[b"bad"] = bad
    assert c.query(b"bad") == [Ok()]
    assert [type(e).__name__ for e in seen] == ["LocalProtocolError", "LocalProtocolError"]


def test_empty_query() -> None:
    (err,) = client().query(b"  ")
    assert isinstance(err, Err) and err.code == 1065


def test_ping_init_db_statistics_field_list() -> None:
    c = client()
    c.handler.status_flags = AUTOCOMMIT | IN_TRANS
    c.send(ComPing())
    assert c.events() == [Ok(status=AUTOCOMMIT | IN_TRANS)]
    c.send(ComInitDB("shop"))
    assert c.events() == [Ok(status=AUTOCOMMIT | IN_TRANS)]
    assert c.proto.info is not None and c.proto.info.database == "shop"
    c.send(ComInitDB("nosuch"))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1049
    assert c.proto.info.database == "shop"
    c.send(ComStatistics())
    assert c.events() == [StatisticsResponse("Uptime: 1  Threads: 1  Questions: 2")]
    c.send(ComFieldList("t", "%"))
    evs = c.events()
    assert [type(e).__name__ for e in evs] == ["Column", "Column", "ResultSetDone"]
    assert all(isinstance(e, Column) and e.definition.has_default for e in evs[:2])
    assert c.handler.calls[-1] == ("field_list", "t", "%")
    c.handler.fail_next = MySQLError(1146, "Table 'db.t' doesn't exist", "42S02")
    c.send(ComFieldList("t"))
    assert c.events() == [Err(1146, "Table 'db.t' doesn't exist", "42S02")]
    c.handler.fail_next = MySQLError(1053, "Server shutdown in progress")
    c.send(ComPing())
    assert c.events() == [Err(1053, "Server shutdown in progress", "08S01")]


def test_unknown_commands() -> None:
    c = client()
    for cmd in (UnknownCommand(0x0C, b"\x05\0\0\0"), UnknownCommand(0x00)):
        c.send(cmd)
        assert c.events() == [Err(1047, "Unknown command", "08S01")]
    # An empty packet reads as COM_SLEEP.
    c.send_raw(encode_packets(b"", 0)[0])
    data = c.raw_out()
    assert data[3] == 1 and Err.decode(data[4:]) == Err(1047, "Unknown command", "08S01")
    assert not c.transport.disconnecting


def test_quit_closes_and_releases_the_handler() -> None:
    c = client()
    c.send(ComQuit())
    assert c.transport.disconnecting
    c.lose()
    assert c.handler.closed == 1


def test_pipelined_commands_are_answered_in_order() -> None:
    c = client()
    c.send_pipelined(ComQuery(b"later"), ComQuery(b"SELECT 1"), ComPing())
    assert c.pipelined_replies() == []  # the first command is still running
    assert c.handler.calls == [("query", b"later")]
    sink = c.handler.sinks[0]
    sink.ok(0, 0, AUTOCOMMIT)
    assert c.pipelined_replies() == [[Ok(0, 0, AUTOCOMMIT)]]
    assert c.handler.calls == [("query", b"later")]  # its Deferred has not fired yet
    c.handler.pending[0].callback(None)
    assert c.pipelined_replies() == [
        [ResultSetStart(1), Column(COL_ONE), Row(text_row(b"1")), ResultSetDone(AUTOCOMMIT)],
        [Ok(status=AUTOCOMMIT)],
    ]
    assert [call[0] for call in c.handler.calls] == ["query", "query", "ping"]


def test_pipelined_bytes_are_bounded_by_pausing_the_socket() -> None:
    c = client(max_pipeline_bytes=100)
    c.send_pipelined(ComQuery(b"later"), *[ComQuery(b"x" * 40) for _ in range(5)])
    assert c.transport.producerState == "producing"  # one write: parsed at once
    c2 = client(max_pipeline_bytes=100)
    c2.send(ComQuery(b"later"))
    for _ in range(5):
        c2.send_raw(encode_packets(ComQuery(b"x" * 40).encode(), 0)[0])
    assert c2.transport.producerState == "paused"
    c2.handler.sinks[0].ok()
    c2.handler.pending[0].callback(None)
    assert c2.transport.producerState == "producing"
    assert len([call for call in c2.handler.calls if call[0] == "query"]) == 6


def test_idle_timeout_sends_an_error_then_closes() -> None:
    h = Harness(idle_timeout=60)
    c = h.connect().logged_in()
    h.clock.advance(59)
    c.query(b"SELECT 1")  # activity restarts the clock
    h.clock.advance(59)
    assert not c.transport.disconnecting
    h.clock.advance(2)
    (err, closed) = c.events()
    assert isinstance(err, Err) and err.code == 4031 and "idle_timeout" in err.message
    assert closed is CLOSED and c.transport.disconnecting


def test_no_idle_timeout_while_a_command_runs() -> None:
    h = Harness(idle_timeout=60)
    c = h.connect().logged_in()
    c.send(ComQuery(b"later"))
    h.clock.advance(120)
    assert not c.transport.disconnecting


def test_idle_time_counts_from_the_end_of_the_last_command() -> None:
    h = Harness(idle_timeout=60)
    c = h.connect().logged_in()
    c.send(ComQuery(b"later"))
    h.clock.advance(100)
    c.handler.sinks[0].ok()
    c.handler.pending[0].callback(None)
    h.clock.advance(59)
    assert not c.transport.disconnecting
    h.clock.advance(2)
    assert c.transport.disconnecting


def test_close_when_idle_waits_for_the_command_and_the_handlers_word() -> None:
    c = client()
    c.send(ComQuery(b"later"))
    allowed = [False]
    c.proto.close_when_idle(lambda: allowed[0])
    assert not c.transport.disconnecting  # a command runs
    c.handler.sinks[0].ok(0, 0, AUTOCOMMIT)
    c.handler.pending[0].callback(None)
    assert not c.transport.disconnecting  # the handler says no (a transaction is open)
    assert c.events() == [Ok(0, 0, AUTOCOMMIT)]
    assert c.query(b"SELECT 1")[-1] == ResultSetDone(AUTOCOMMIT)
    allowed[0] = True
    c.send(ComQuery(b"later"))
    c.handler.sinks[-1].ok(0, 0, AUTOCOMMIT)
    c.handler.pending[-1].callback(None)
    assert c.transport.disconnecting  # closed right after the reply
    assert Ok(0, 0, AUTOCOMMIT) in c.events()
    idle = client()
    idle.proto.close_when_idle(lambda: True)
    assert idle.transport.disconnecting  # no command: at once


def test_close_that_hangs_is_aborted() -> None:
    h = Harness(close_timeout=3)
    c = h.connect().logged_in()
    c.send(ComQuit())
    assert c.transport.disconnecting and not c.transport.disconnected
    h.clock.advance(3)
    assert c.transport.disconnected


def test_packet_too_large() -> None:
    c = client(max_packet_size=1024)
    c.send_raw(encode_packets(b"\x03" + b"x" * 2000, 0)[0])
    (err, closed) = c.events()
    assert isinstance(err, Err) and err.code == 1153 and err.sqlstate == "08S01"
    assert closed is CLOSED
    assert c.transport.disconnecting
    assert c.handler.calls == []


def test_out_of_sequence_packet() -> None:
    c = client()
    c.send_raw(encode_packets(b"\x03SELECT 1", 5)[0])
    (err, _) = c.events()
    assert isinstance(err, Err) and err.code == 1156
    assert c.transport.disconnecting


def test_garbage_before_login() -> None:
    c = Harness().connect()
    c.greeting()
    c.send_raw(encode_packets(b"\x01\x02", 1)[0])
    data = c.raw_out()
    assert data[4] == 0xFF
    assert c.transport.disconnecting


def test_truncated_packet_then_disconnect_releases_everything() -> None:
    c = client()
    c.send_raw(b"\x20\0\0\0\x03SEL")
    assert c.raw_out() == b""
    c.lose()
    assert c.handler.closed == 1


def test_connection_lost_mid_command_cancels_it() -> None:
    c = client()
    c.send(ComQuery(b"later"))
    d = c.handler.pending[0]
    c.lose()
    c.harness.clock.advance(0)  # cancelled in the next turn, outside the handler's stack
    assert d.called
    assert c.handler.sinks[0].closed
    c.handler.sinks[0].row(b"\x01a")  # writes after the client left are ignored
    assert c.handler.closed == 1


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), min_size=1, max_size=6))
def test_random_packets_never_escape(payloads: list[bytes]) -> None:
    c = client(max_packet_size=4096)
    data = b"".join(encode_packets(p, i % 3)[0] for i, p in enumerate(payloads))
    for i in range(0, len(data), 7):
        c.send_raw(data[i : i + 7])  # also exercises partial packets
    c.raw_out()  # whatever was answered is fine; no internal error may be logged
    c.lose()
    assert c.handler.closed == 1


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(min_size=1, max_size=120), st.integers(min_value=1, max_value=50))
def test_random_bytes_before_login_never_escape(data: bytes, chunk: int) -> None:
    h = Harness(max_packet_size=4096, tls=FakeTLSCreator())
    c = h.connect(tls_transport=True)
    c.greeting()
    for i in range(0, len(data), chunk):
        c.send_raw(data[i : i + chunk])
    c.raw_out()
    c.lose()
    assert h.factory.connections == {}

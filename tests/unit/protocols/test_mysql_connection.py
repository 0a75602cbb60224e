"""A client and a server Connection driven through every conversation, in both EOF modes."""

from __future__ import annotations

from typing import cast

import pytest

from tests.unit.protocols.pair import AUTOCOMMIT, SCRAMBLE, ConnectionPair, drain, split_packets
from vtwist.protocols.mysql.connection import CLOSED, NEED_DATA, PAUSED, Connection, Role, State
from vtwist.protocols.mysql.constants import (
    SERVER_CAPABILITIES,
    Capability,
    ColumnType,
    CursorType,
    ServerStatus,
    SetOption,
)
from vtwist.protocols.mysql.errors import ErrorCode, RemoteProtocolError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ColumnDefinition41,
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    Err,
    HandshakeV10,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
    SSLRequest,
    StatisticsResponse,
    StmtPrepareOK,
    UnknownCommand,
)

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
CURSOR = int(ServerStatus.CURSOR_EXISTS)
LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
ID_COL = ColumnDefinition41("id", ColumnType.LONGLONG, 63, 20, 0x21, 0, "shop", "t", "t", "id")
NAME_COL = ColumnDefinition41("name", ColumnType.VAR_STRING, 45, 400, 0, 0, "shop", "t", "t", "n")
PARAM = ColumnDefinition41("?", ColumnType.VAR_STRING, 63)

both_modes = pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate", "classic"])


def logged_in(deprecate_eof: bool) -> ConnectionPair:
    pair = ConnectionPair(deprecate_eof)
    pair.login()
    assert pair.client.deprecate_eof is deprecate_eof
    assert pair.server.deprecate_eof is deprecate_eof
    return pair


def headers(data: bytes) -> list[int]:
    """The first byte of each packet's payload."""
    return [p[0] for _, p in split_packets(data)]


# -- connection phase ----------------------------------------------------------------------


def test_handshake_sequence_ids_and_negotiation() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    assert [s for s, _ in split_packets(pair.last_bytes)] == [0]
    assert pair.client.state is State.LOGIN and pair.server.state is State.LOGIN
    pair.client_sends(pair.response())
    assert [s for s, _ in split_packets(pair.last_bytes)] == [1]
    assert pair.server.capabilities == pair.server_caps & pair.client_caps
    assert pair.client.capabilities == pair.server.capabilities
    assert pair.server.handshake_response == pair.response()
    pair.server_sends(Ok(status=AUTOCOMMIT))
    assert [s for s, _ in split_packets(pair.last_bytes)] == [2]
    assert cast(State, pair.server.state) is State.IDLE  # cast: mypy keeps the narrowing above
    assert cast(State, pair.client.state) is State.IDLE
    assert pair.client.status == AUTOCOMMIT


def test_auth_switch_and_more_data_continue_sequence_ids() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response(auth_plugin_name="caching_sha2_password"))
    assert pair.server_sends(AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\0")) == [
        AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\0")
    ]
    assert split_packets(pair.last_bytes)[0][0] == 2
    assert pair.client_sends(AuthData(b"\x22" * 20)) == [AuthData(b"\x22" * 20)]
    assert split_packets(pair.last_bytes)[0][0] == 3
    # caching_sha2 fast path: more data 0x03 then OK with no client reply in between.
    assert pair.server_sends(AuthMoreData(b"\x03"), Ok()) == [AuthMoreData(b"\x03"), Ok()]
    assert [s for s, _ in split_packets(pair.last_bytes)] == [4, 5]
    assert pair.client.state is State.IDLE


def test_full_auth_round_trips_after_more_data() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response())
    pair.server_sends(AuthMoreData(b"\x04"))
    assert pair.client.our_turn
    pair.client_sends(AuthData(b"\x02"))  # public key request
    assert not pair.client.our_turn
    pair.server_sends(AuthMoreData(b"-----BEGIN PUBLIC KEY-----"))
    pair.client_sends(AuthData(b"\x99" * 256))
    assert pair.server_sends(Ok()) == [Ok()]
    assert pair.server.state is State.IDLE


def test_auth_failure_closes() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response())
    err = Err(1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")
    assert pair.server_sends(err) == [err, CLOSED]
    assert pair.server.state is State.CLOSED
    assert err.sqlstate == "28000"


def test_err_instead_of_greeting() -> None:
    pair = ConnectionPair()
    err = Err(ErrorCode.CON_COUNT_ERROR, "Too many connections")
    assert pair.server_sends(err) == [err, CLOSED]
    assert split_packets(pair.last_bytes)[0][0] == 0


def test_tls_upgrade_pauses_and_hands_over_buffered_bytes() -> None:
    caps = int(SERVER_CAPABILITIES) | int(Capability.SSL)
    pair = ConnectionPair(server_caps=caps, client_caps=caps)
    pair.server_sends(pair.greeting())
    ssl = SSLRequest(caps, 1 << 24, 45)
    data = pair.client.send(ssl)
    assert pair.client.next_event() is PAUSED
    hello = b"\x16\x03\x01\x02\x00TLS client hello"
    pair.server.receive_data(data + hello)
    assert pair.server.next_event() == ssl
    assert pair.server.next_event() is PAUSED
    assert pair.server.take_buffered() == hello
    pair.server.start_tls_done()
    pair.client.start_tls_done()
    assert pair.client_sends(pair.response(capabilities=caps)) == [pair.response(capabilities=caps)]
    assert split_packets(pair.last_bytes)[0][0] == 2
    assert pair.server.tls and pair.client.tls
    assert pair.server_sends(Ok()) == [Ok()]
    assert split_packets(pair.last_bytes)[0][0] == 3


def test_ssl_request_when_not_offered_is_a_remote_error_answered_with_err() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    payload = SSLRequest(pair.client_caps, 1 << 24, 45).encode()
    pair.server.receive_data(len(payload).to_bytes(3, "little") + b"\x01" + payload)
    with pytest.raises(RemoteProtocolError) as e:
        pair.server.next_event()
    assert e.value.error_code == ErrorCode.HANDSHAKE_ERROR
    data = pair.server.send(Err(ErrorCode.HANDSHAKE_ERROR, "Bad handshake"))
    assert split_packets(data)[0][0] == 2
    assert pair.server.state is State.CLOSED


def test_old_client_without_protocol_41_is_refused() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    payload = pair.response(capabilities=pair.client_caps & ~int(Capability.PROTOCOL_41)).encode()
    pair.server.receive_data(len(payload).to_bytes(3, "little") + b"\x01" + payload)
    with pytest.raises(RemoteProtocolError) as e:
        pair.server.next_event()
    assert e.value.error_code == ErrorCode.NOT_SUPPORTED_AUTH_MODE


# -- text protocol ---------------------------------------------------------------------------


@both_modes
def test_query_ok(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    assert pair.client_sends(ComQuery(b"UPDATE t SET a=1")) == [ComQuery(b"UPDATE t SET a=1")]
    assert split_packets(pair.last_bytes)[0][0] == 0
    ok = Ok(3, 0, AUTOCOMMIT, 1, b"Rows matched: 3  Changed: 3  Warnings: 1")
    assert pair.server_sends(ok) == [ok]
    assert split_packets(pair.last_bytes)[0][0] == 1
    assert pair.server.state is State.IDLE


@both_modes
def test_result_set_wire_shape(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id, name FROM t"))
    events = [
        ResultSetStart(2),
        Column(ID_COL),
        Column(NAME_COL),
        Row(b"\x011\x03bob"),
        Row(b"\x012\xfb"),
        ResultSetDone(AUTOCOMMIT, 0),
    ]
    assert pair.server_sends(*events) == events
    packets = split_packets(pair.last_bytes)
    assert [s for s, _ in packets] == list(range(1, len(packets) + 1))
    if deprecate_eof:
        assert headers(pair.last_bytes) == [2, 3, 3, 1, 1, 0xFE]
        assert packets[-1][1] == b"\xfe\x00\x00\x02\x00\x00\x00"
    else:
        assert headers(pair.last_bytes) == [2, 3, 3, 0xFE, 1, 1, 0xFE]
        assert packets[3][1] == b"\xfe\x00\x00\x02\x00"
        assert packets[-1][1] == b"\xfe\x00\x00\x02\x00"
    assert pair.client.state is State.IDLE


@both_modes
def test_empty_result_set(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id FROM t WHERE 0"))
    events = [ResultSetStart(1), Column(ID_COL), ResultSetDone(AUTOCOMMIT)]
    assert pair.server_sends(*events) == events
    assert headers(pair.last_bytes) == ([1, 3, 0xFE] if deprecate_eof else [1, 3, 0xFE, 0xFE])


@both_modes
def test_error_in_the_middle_of_rows(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id FROM t"))
    err = Err(ErrorCode.QUERY_INTERRUPTED, "Query execution was interrupted")
    events = [ResultSetStart(1), Column(ID_COL), Row(b"\x011"), err]
    assert pair.server_sends(*events) == events
    assert pair.client.state is State.IDLE


@both_modes
def test_error_right_after_columns(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id FROM t"))
    err = Err(ErrorCode.QUERY_INTERRUPTED, "Query execution was interrupted")
    events = [ResultSetStart(1), Column(ID_COL), err]
    assert pair.server_sends(*events) == events
    assert headers(pair.last_bytes) == ([1, 3, 0xFF] if deprecate_eof else [1, 3, 0xFE, 0xFF])


@both_modes
def test_multiple_results(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT 1; UPDATE t SET a=2; SELECT 2"))
    events = [
        ResultSetStart(1),
        Column(ID_COL),
        Row(b"\x011"),
        ResultSetDone(AUTOCOMMIT | MORE),
    ]
    assert pair.server_sends(*events) == events
    assert pair.server.state is State.RESULT and pair.client.state is State.RESULT
    assert pair.server_sends(Ok(1, 0, AUTOCOMMIT | MORE)) == [Ok(1, 0, AUTOCOMMIT | MORE)]
    assert pair.client.state is State.RESULT
    events = [ResultSetStart(1), Column(ID_COL), Row(b"\x012"), ResultSetDone(AUTOCOMMIT)]
    assert pair.server_sends(*events) == events
    assert cast(State, pair.client.state) is State.IDLE  # cast: mypy keeps the narrowing above
    # The sequence ids ran on across the three results.
    assert split_packets(pair.last_bytes)[0][0] == (6 if deprecate_eof else 7)


@both_modes
def test_error_ends_multiple_results(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"DO 1; SELECT nope"))
    pair.server_sends(Ok(0, 0, AUTOCOMMIT | MORE))
    err = Err(1054, "Unknown column 'nope' in 'field list'", "42S22")
    assert pair.server_sends(err) == [err]
    assert pair.client.state is State.IDLE


@both_modes
def test_sequence_ids_wrap_at_256(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id FROM big"))
    rows = [Row(b"\x03%03d" % (i % 1000)) for i in range(600)]
    events = [ResultSetStart(1), Column(ID_COL), *rows, ResultSetDone(AUTOCOMMIT)]
    assert pair.server_sends(*events) == events
    seqs = [s for s, _ in split_packets(pair.last_bytes)]
    assert seqs == [(i + 1) & 0xFF for i in range(len(seqs))]


@both_modes
def test_local_infile(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t"))
    assert pair.server_sends(LocalInfileRequest("/tmp/x.csv")) == [LocalInfileRequest("/tmp/x.csv")]
    chunks = [LocalInfileData(b"1,a\n"), LocalInfileData(b"2,b\n"), LocalInfileData(b"")]
    assert pair.client_sends(*chunks) == chunks
    assert [s for s, _ in split_packets(pair.last_bytes)] == [2, 3, 4]
    assert pair.server_sends(Ok(2, 0, AUTOCOMMIT)) == [Ok(2, 0, AUTOCOMMIT)]
    assert pair.client.state is State.IDLE


# -- simple commands -------------------------------------------------------------------------


@both_modes
@pytest.mark.parametrize(
    "command",
    [ComPing(), ComInitDB("shop"), ComResetConnection(), UnknownCommand(0x0C, b"\x01\0\0\0")],
    ids=["ping", "init_db", "reset", "unknown"],
)
def test_simple_commands(deprecate_eof: bool, command: object) -> None:
    pair = logged_in(deprecate_eof)
    assert pair.client_sends(command) == [command]  # type: ignore[arg-type]
    assert pair.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]
    assert pair.client_sends(command) == [command]  # type: ignore[arg-type]
    err = Err(ErrorCode.UNKNOWN_COM, "Unknown command")
    assert pair.server_sends(err) == [err]
    assert pair.server.state is State.IDLE


@both_modes
def test_set_option_is_answered_with_eof_or_ok_fe(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    cmd = ComSetOption(SetOption.MULTI_STATEMENTS_OFF)
    assert pair.client_sends(cmd) == [cmd]
    assert pair.last_bytes == b"\x03\x00\x00\x00\x1b\x01\x00"
    assert pair.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]
    if deprecate_eof:
        assert pair.last_bytes == b"\x07\x00\x00\x01\xfe\x00\x00\x02\x00\x00\x00"
    else:
        assert pair.last_bytes == b"\x05\x00\x00\x01\xfe\x00\x00\x02\x00"


@both_modes
def test_statistics(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    assert pair.client_sends(ComStatistics()) == [ComStatistics()]
    text = "Uptime: 42  Threads: 1  Questions: 7  Slow queries: 0  Opens: 1"
    assert pair.server_sends(StatisticsResponse(text)) == [StatisticsResponse(text)]
    assert pair.last_bytes[4:] == text.encode()
    assert pair.client.state is State.IDLE


@both_modes
def test_field_list_ends_with_eof_or_ok_fe(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    assert pair.client_sends(ComFieldList("t", "")) == [ComFieldList("t", "")]
    id_col = ColumnDefinition41(
        "id", ColumnType.LONG, 63, 11, 0x4203, 0, "shop", "t", "t", "id", has_default=True
    )
    name_col = ColumnDefinition41(
        "name", ColumnType.VAR_STRING, 45, 400, 0, 0, "shop", "t", "t", "name", "def", True, b"x"
    )
    events = [Column(id_col), Column(name_col), ResultSetDone(AUTOCOMMIT)]
    assert pair.server_sends(*events) == events
    assert headers(pair.last_bytes) == [3, 3, 0xFE]
    last = split_packets(pair.last_bytes)[-1][1]
    assert last == (b"\xfe\0\0\x02\0\0\0" if deprecate_eof else b"\xfe\0\0\x02\0")
    assert pair.client.state is State.IDLE


@both_modes
def test_quit_closes(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    assert pair.client_sends(ComQuit()) == [ComQuit(), CLOSED]
    assert pair.client.state is State.CLOSED and pair.server.state is State.CLOSED
    assert pair.server.next_event() is CLOSED


@both_modes
def test_change_user_runs_auth_again(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComStmtPrepare(b"SELECT 1"))
    pair.server_sends(StmtPrepareOK(1, 1, 0), Column(ID_COL))
    cmd = ComChangeUser("other", b"\x33" * 20, "shop", 45, "mysql_native_password", {"a": "b"})
    assert pair.client_sends(cmd) == [cmd]
    assert pair.server.state is State.AUTH
    pair.server_sends(AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\0"))
    pair.client_sends(AuthData(b"\x44" * 20))
    assert split_packets(pair.last_bytes)[0][0] == 2
    assert pair.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]
    assert cast(State, pair.server.state) is State.IDLE  # cast: mypy keeps the narrowing above
    assert not pair.server.statements
    # A failed COM_CHANGE_USER leaves the connection usable (mysqld keeps the old user).
    pair.client_sends(cmd)
    err = Err(1045, "Access denied")
    assert pair.server_sends(err) == [err]
    assert pair.client.state is State.IDLE
    assert cast(State, pair.server.state) is State.IDLE  # cast: mypy keeps the narrowing above


@both_modes
def test_unsolicited_error_while_idle(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    err = Err(4031, "The client was disconnected by the server because of inactivity.")
    assert pair.server_sends(err) == [err, CLOSED]


# -- prepared statements ---------------------------------------------------------------------


def prepare(pair: ConnectionPair, stmt_id: int = 1) -> None:
    pair.client_sends(ComStmtPrepare(b"SELECT id, name FROM t WHERE id > ? AND name = ?"))
    events = [
        StmtPrepareOK(stmt_id, 2, 2),
        Column(PARAM),
        Column(PARAM),
        Column(ID_COL),
        Column(NAME_COL),
    ]
    assert pair.server_sends(*events) == events
    assert pair.client.state is State.IDLE and pair.server.state is State.IDLE


@both_modes
def test_prepare_response_shape(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    if deprecate_eof:
        assert headers(pair.last_bytes) == [0, 3, 3, 3, 3]
    else:
        assert headers(pair.last_bytes) == [0, 3, 3, 0xFE, 3, 3, 0xFE]
    assert pair.server.statements[1].num_params == 2
    assert pair.client.statements[1].num_columns == 2


@both_modes
@pytest.mark.parametrize("nparams,ncols", [(0, 0), (1, 0), (0, 1)])
def test_prepare_partial_shapes(deprecate_eof: bool, nparams: int, ncols: int) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComStmtPrepare(b"DO ?"))
    events = [StmtPrepareOK(5, ncols, nparams), *[Column(PARAM)] * nparams]
    events += [Column(ID_COL)] * ncols
    assert pair.server_sends(*events) == events
    assert pair.client.state is State.IDLE
    eofs = 0 if deprecate_eof else (nparams > 0) + (ncols > 0)
    assert len(split_packets(pair.last_bytes)) == 1 + nparams + ncols + eofs


@both_modes
def test_prepare_error(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComStmtPrepare(b"SELEKT"))
    err = Err(ErrorCode.PARSE_ERROR, "You have an error in your SQL syntax")
    assert pair.server_sends(err) == [err]
    assert not pair.server.statements


@both_modes
def test_execute_reuses_cached_types_and_attaches_long_data(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    types = ((ColumnType.LONGLONG, True), (ColumnType.VAR_STRING, False))
    first = ComStmtExecute(1, 0, 1, b"\x00", True, types, b"\x05" + b"\0" * 7 + b"\x03bob")
    assert pair.client_sends(first) == [first]
    assert split_packets(pair.last_bytes)[0][0] == 0
    rs = [
        ResultSetStart(2),
        Column(ID_COL),
        Column(NAME_COL),
        Row(b"\x00\x00" + b"\x07" + b"\0" * 7 + b"\x03bob"),
    ]
    assert pair.server_sends(*rs, ResultSetDone(AUTOCOMMIT)) == [*rs, ResultSetDone(AUTOCOMMIT)]

    # libmariadb sends the types only once: a later execute has new_params_bound = 0.
    again = ComStmtExecute(1, 0, 1, b"\x00", False, (), b"\x06" + b"\0" * 7 + b"\x03amy")
    (ev,) = pair.client_sends(again)
    assert isinstance(ev, ComStmtExecute)
    assert ev.param_types == types and not ev.new_params_bound
    assert ev.values == again.values and not ev.long_data
    pair.server_sends(Ok(status=AUTOCOMMIT))

    # Long data for param 1: no response, then it is attached to the execute.
    chunks = [ComStmtSendLongData(1, 1, b"abc"), ComStmtSendLongData(1, 1, b"def")]
    assert pair.client_sends(*chunks) == chunks
    assert [s for s, _ in split_packets(pair.last_bytes)] == [0, 0]
    with_long = ComStmtExecute(1, 0, 1, b"\x00", False, (), b"\x07" + b"\0" * 7)
    (ev,) = pair.client_sends(with_long)
    assert isinstance(ev, ComStmtExecute)
    assert dict(ev.long_data) == {1: b"abcdef"} and ev.param_types == types
    pair.server_sends(Ok(status=AUTOCOMMIT))
    (ev,) = pair.client_sends(with_long)
    assert isinstance(ev, ComStmtExecute) and not ev.long_data  # dropped by the execute
    pair.server_sends(Ok(status=AUTOCOMMIT))

    # COM_STMT_RESET drops long data; COM_STMT_CLOSE forgets the statement (no reply).
    pair.client_sends(ComStmtSendLongData(1, 0, b"zzz"))
    assert pair.client_sends(ComStmtReset(1)) == [ComStmtReset(1)]
    assert pair.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]
    (ev,) = pair.client_sends(with_long)
    assert isinstance(ev, ComStmtExecute) and not ev.long_data
    pair.server_sends(Ok(status=AUTOCOMMIT))
    assert pair.client_sends(ComStmtClose(1)) == [ComStmtClose(1)]
    assert 1 not in pair.server.statements and pair.server.state is State.IDLE


@both_modes
def test_execute_unknown_statement_keeps_raw_values(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    raw = ComStmtExecute(99, 0, 1, values=b"\x01\x02\x03")
    (ev,) = pair.client_sends(raw)
    assert ev == raw and 99 not in pair.server.statements
    err = Err(ErrorCode.UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler (99) given")
    assert pair.server_sends(err) == [err]


@both_modes
def test_execute_without_types_ever_bound(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    (ev,) = pair.client_sends(ComStmtExecute(1, 0, 1, b"\x03", False, ()))
    assert isinstance(ev, ComStmtExecute) and ev.param_types == ()  # the server answers 1210


@both_modes
def test_long_data_is_bounded_by_max_packet_size(deprecate_eof: bool) -> None:
    pair = ConnectionPair(deprecate_eof, max_packet_size=1000)
    pair.login()
    prepare(pair)
    pair.client_sends(ComStmtSendLongData(1, 0, b"x" * 600))
    data = pair.client.send(ComStmtSendLongData(1, 0, b"x" * 600))
    pair.server.receive_data(data)
    with pytest.raises(RemoteProtocolError) as e:
        pair.server.next_event()
    assert e.value.error_code == ErrorCode.NET_PACKET_TOO_LARGE


@both_modes
def test_cursor_open_and_fetch(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    types = ((ColumnType.LONGLONG, False), (ColumnType.VAR_STRING, False))
    ex = ComStmtExecute(1, CursorType.READ_ONLY, 1, b"\x00", True, types, b"\0" * 8 + b"\x01a")
    pair.client_sends(ex)
    opened = [
        ResultSetStart(2),
        Column(ID_COL),
        Column(NAME_COL),
        ResultSetDone(AUTOCOMMIT | CURSOR),
    ]
    assert pair.server_sends(*opened) == opened
    # Exactly one terminator after the columns, carrying CURSOR_EXISTS, in both modes.
    packets = split_packets(pair.last_bytes)
    assert headers(pair.last_bytes) == [2, 3, 3, 0xFE]
    expected_end = b"\xfe\0\0\x42\0\0\0" if deprecate_eof else b"\xfe\0\0\x42\0"
    assert packets[-1][1] == expected_end
    assert pair.client.state is State.IDLE

    assert pair.client_sends(ComStmtFetch(1, 2)) == [ComStmtFetch(1, 2)]
    rows = [
        Row(b"\x00\x00" + b"\x01" + b"\0" * 7 + b"\x01a"),
        Row(b"\x00\x00" + b"\x02" + b"\0" * 7 + b"\x01b"),
    ]
    more = [*rows, ResultSetDone(AUTOCOMMIT | CURSOR)]
    assert pair.server_sends(*more) == more
    assert pair.client.state is State.IDLE
    pair.client_sends(ComStmtFetch(1, 2))
    assert pair.server_sends(ResultSetDone(AUTOCOMMIT | LAST_ROW)) == [
        ResultSetDone(AUTOCOMMIT | LAST_ROW)
    ]
    assert pair.client.state is State.IDLE


@both_modes
def test_cursor_flag_on_a_statement_without_cursor_gets_rows(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    types = ((ColumnType.LONGLONG, False), (ColumnType.VAR_STRING, False))
    pair.client_sends(ComStmtExecute(1, CursorType.READ_ONLY, 1, b"\x00", True, types, b""))
    events = [ResultSetStart(1), Column(ID_COL), Row(b"\0\0" + b"\0" * 8), ResultSetDone(2)]
    assert pair.server_sends(*events) == events


@both_modes
def test_reset_connection_forgets_statements(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    prepare(pair)
    pair.client_sends(ComResetConnection())
    pair.server_sends(Ok(status=AUTOCOMMIT))
    assert not pair.server.statements and not pair.client.statements


# -- closing ---------------------------------------------------------------------------------


def test_server_sees_client_close_at_any_time() -> None:
    pair = logged_in(True)
    pair.client_sends(ComQuery(b"SELECT SLEEP(10)"))
    pair.server.receive_data(b"")
    assert pair.server.next_event() is CLOSED
    assert pair.server.state is State.CLOSED


def test_server_sees_client_close_mid_packet() -> None:
    server = Connection(Role.SERVER)
    server.send(HandshakeV10("8.0", 1, SCRAMBLE, int(SERVER_CAPABILITIES)))
    server.receive_data(b"\x40\x00\x00\x01abc")
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_client_sees_server_close_while_idle() -> None:
    pair = logged_in(True)
    pair.client.receive_data(b"")
    assert pair.client.next_event() is CLOSED


def test_client_sees_server_close_mid_result_as_lost_connection() -> None:
    pair = logged_in(False)
    pair.client_sends(ComQuery(b"SELECT 1"))
    pair.client.receive_data(pair.server.send(ResultSetStart(1)))
    assert pair.client.next_event() == ResultSetStart(1)
    pair.client.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as e:
        pair.client.next_event()
    assert e.value.error_code == ErrorCode.CR_SERVER_LOST
    assert pair.client.state is State.ERROR


def test_mariadb_shutdown_err_with_sequence_zero() -> None:
    pair = logged_in(True)
    pair.client_sends(ComQuery(b"SELECT 1"))
    payload = Err(ErrorCode.SERVER_SHUTDOWN, "Server shutdown in progress").encode()
    pair.client.receive_data(len(payload).to_bytes(3, "little") + b"\x00" + payload)
    assert drain(pair.client) == [Err(1053, "Server shutdown in progress"), CLOSED]

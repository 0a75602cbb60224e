"""The server's result-set fast path (``send_columns``/``send_row``/``send_done``) writes
exactly what ``send_many`` writes for the same events, and moves the state the same way."""

from __future__ import annotations

import pytest

from tests.unit.protocols.pair import ConnectionPair
from vtwist.protocols.mysql.connection import Connection
from vtwist.protocols.mysql.constants import ColumnType, CursorType, ServerStatus
from vtwist.protocols.mysql.errors import LocalProtocolError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ColumnDefinition41,
    ComQuery,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.wire import Message

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
CURSOR = int(ServerStatus.CURSOR_EXISTS)
LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
COL_A = ColumnDefinition41("a", ColumnType.LONGLONG, 63, 20, 0, 0, "db", "t", "t", "a")
COL_B = ColumnDefinition41("b", ColumnType.VAR_STRING, 45, 80, 0, 0, "db", "t", "t", "b")


def _servers(deprecate_eof: bool, *commands: Message) -> tuple[Connection, Connection]:
    """Two server Connections in the same state, after the same commands."""
    pairs = [ConnectionPair(deprecate_eof=deprecate_eof) for _ in range(2)]
    for p in pairs:
        p.login()
        for cmd in commands:
            p.client_sends(cmd)
    return pairs[0].server, pairs[1].server


def _same(fast: Connection, slow: Connection, got: bytes, *events: Message) -> None:
    assert got == slow.send_many(events)
    assert fast.state is slow.state
    assert fast.status == slow.status
    # The next packet gets the same sequence id too.
    assert fast._seq == slow._seq


@pytest.mark.parametrize("deprecate_eof", [True, False])
@pytest.mark.parametrize("rows", [0, 1, 3])
@pytest.mark.parametrize("status", [AUTOCOMMIT, AUTOCOMMIT | MORE])
def test_result_set_is_written_as_send_many_writes_it(
    deprecate_eof: bool, rows: int, status: int
) -> None:
    fast, slow = _servers(deprecate_eof, ComQuery(b"select a, b from t"))
    _same(
        fast,
        slow,
        fast.send_columns([COL_A, COL_B]),
        ResultSetStart(2),
        Column(COL_A),
        Column(COL_B),
    )
    for i in range(rows):
        payload = b"\x01%d\x02xy" % i
        _same(fast, slow, fast.send_row(payload), Row(payload))
    done = fast.send_done(status, 2, 5, 7, b"info")
    _same(fast, slow, done, ResultSetDone(status, 2, 5, 7, b"info"))
    if status & MORE:  # the next result of the same command
        _same(fast, slow, fast.send_columns([COL_B]), ResultSetStart(1), Column(COL_B))
        _same(fast, slow, fast.send_done(AUTOCOMMIT), ResultSetDone(AUTOCOMMIT))
    assert fast.state is slow.state
    assert fast.state.name == "IDLE"


def test_encoded_definitions_are_cached_per_object() -> None:
    fast, slow = _servers(False, ComQuery(b"q"))
    other = ColumnDefinition41("z", ColumnType.TINY, 63, 4)
    got = fast.send_columns([other, COL_A, other])
    assert got == slow.send_many([ResultSetStart(3), Column(other), Column(COL_A), Column(other)])


@pytest.mark.parametrize("deprecate_eof", [True, False])
def test_a_cursor_and_a_fetch_take_the_general_path_with_the_same_bytes(
    deprecate_eof: bool,
) -> None:
    prepare = ComStmtPrepare(b"select a from t")
    fast, slow = _servers(deprecate_eof, prepare)
    ok = StmtPrepareOK(1, 1, 0)
    for conn in (fast, slow):
        conn.send_many([ok, Column(COL_A)])
    execute = ComStmtExecute(1, flags=int(CursorType.READ_ONLY))
    for conn in (fast, slow):
        pair_bytes = _client_bytes(deprecate_eof, prepare, ok, execute)
        conn.receive_data(pair_bytes)
        assert conn.next_event() == execute
    _same(fast, slow, fast.send_columns([COL_A]), ResultSetStart(1), Column(COL_A))
    # The cursor's single EOF (classic) replaces the one owed after the columns.
    _same(
        fast,
        slow,
        fast.send_done(AUTOCOMMIT | CURSOR),
        ResultSetDone(AUTOCOMMIT | CURSOR),
    )
    fetch = ComStmtFetch(1, 10)
    for conn in (fast, slow):
        conn.receive_data(_frame(0, fetch.encode()))
        assert conn.next_event() == fetch
    _same(fast, slow, fast.send_row(b"\x00\x00\x01"), Row(b"\x00\x00\x01"))
    _same(
        fast,
        slow,
        fast.send_done(AUTOCOMMIT | LAST_ROW),
        ResultSetDone(AUTOCOMMIT | LAST_ROW),
    )


def _frame(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _client_bytes(deprecate_eof: bool, prepare: Message, ok: Message, execute: Message) -> bytes:
    """What a client sends for ``execute`` after the prepare (its own Connection framing)."""
    p = ConnectionPair(deprecate_eof=deprecate_eof)
    p.login()
    p.client_sends(prepare)
    p.server_sends(ok, Column(COL_A))
    return p.client.send(execute)


@pytest.mark.parametrize("deprecate_eof", [True, False])
def test_misuse_is_refused_like_send_many(deprecate_eof: bool) -> None:
    fast, _ = _servers(deprecate_eof)  # idle: no command
    with pytest.raises(LocalProtocolError):
        fast.send_columns([COL_A])
    with pytest.raises(LocalProtocolError):
        fast.send_row(b"\x01a")
    with pytest.raises(LocalProtocolError):
        fast.send_done(AUTOCOMMIT)
    busy, _ = _servers(deprecate_eof, ComQuery(b"q"))
    with pytest.raises(LocalProtocolError):
        busy.send_columns([])
    with pytest.raises(LocalProtocolError):
        busy.send_row(b"\x01a")  # no columns yet


@pytest.mark.parametrize("bound", [True, False])
def test_a_clients_execute_is_framed_as_send_many_frames_it(bound: bool) -> None:
    clients = []
    for _ in range(2):
        p = ConnectionPair()
        p.login()
        p.client_sends(ComStmtPrepare(b"select a from t where a = ?"))
        p.server_sends(StmtPrepareOK(3, 1, 1), Column(COL_A), Column(COL_A))
        clients.append(p.client)
    fast, slow = clients
    types = ((int(ColumnType.LONGLONG), False),)
    execute = ComStmtExecute(3, 0, 1, b"\x00", bound, types, b"\x05" + b"\x00" * 7)
    assert fast.send(execute) == slow.send_many([execute])
    assert fast.state is slow.state
    assert fast._seq == slow._seq == 1
    assert fast.statements[3].param_types == slow.statements[3].param_types


@pytest.mark.parametrize("size", [1, 0xFFFFFF - 2, 0xFFFFFF - 1, 0xFFFFFF + 10])
def test_a_clients_query_is_framed_as_send_many_frames_it(size: int) -> None:
    """The fast path of a COM_QUERY (a tablet's every statement), split payloads too."""
    clients = []
    for _ in range(2):
        p = ConnectionPair()
        p.login()
        clients.append(p.client)
    fast, slow = clients
    query = ComQuery(b"x" * size)
    assert fast.send(query) == slow.send_many([query])
    assert fast.state is slow.state
    assert fast._seq == slow._seq


def test_drained_says_whether_bytes_wait() -> None:
    p = ConnectionPair()
    p.login()
    assert p.client.drained
    p.client.receive_data(b"\x01\x00")  # half a header
    assert not p.client.drained

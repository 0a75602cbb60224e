"""Whole result sets in one call: ``Connection.next_result`` (client) gives what
``next_event`` alone gives, however the bytes arrive, and ``Connection.send_result_set``
(server) writes the bytes of ``send_columns`` + ``send_row`` + ``send_done``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.protocols.pair import AUTOCOMMIT, ConnectionPair, events_in_pieces
from tests.unit.protocols.test_mysql_connection import ID_COL, NAME_COL, logged_in
from vtwist.protocols.mysql.commands import ComQuery, ComStmtExecute, ComStmtPrepare
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, State
from vtwist.protocols.mysql.constants import ServerStatus
from vtwist.protocols.mysql.errors import LocalProtocolError, RemoteProtocolError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Err, Ok, StmtPrepareOK
from vtwist.protocols.mysql.packets import MAX_CHUNK
from vtwist.protocols.mysql.values import encode_text_row
from vtwist.protocols.mysql.wire import Message

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
IN_TRANS = int(ServerStatus.IN_TRANS)
CURSOR = int(ServerStatus.CURSOR_EXISTS)
COLUMNS = [ID_COL, NAME_COL]

values = st.none() | st.binary(max_size=30) | st.sampled_from([b"x" * 251, b"y" * 70_000])
# One result of a reply: an OK, or a result set (column count, rows).
results = st.one_of(
    st.just(None),
    st.tuples(st.integers(1, 2), st.lists(st.tuples(values, values), max_size=12)),
)


def _reply(
    pair: ConnectionPair,
    shape: list[tuple[int, list[tuple[bytes | None, ...]]] | None],
    error: bool,
) -> bytes:
    events: list[Message] = []
    for i, result in enumerate(shape):
        status = AUTOCOMMIT | (MORE if i + 1 < len(shape) or error else 0)
        if result is None:
            events.append(Ok(1, 0, status))
            continue
        n, rows = result
        events += [ResultSetStart(n), *(Column(c) for c in COLUMNS[:n])]
        events += [Row(encode_text_row(list(r[:n]))) for r in rows]
        events.append(ResultSetDone(status, 0))
    if error:
        events.append(Err(1317, "interrupted"))
    return pair.server.send_many(events)


def _events(conn: Connection, data: bytes, cuts: list[int], max_rows: int) -> list[object]:
    """What ``conn`` makes of ``data`` fed in pieces; ``max_rows`` 0: ``next_event`` only.
    A whole result is written as the events it stands for."""

    def whole_result(conn: Connection) -> list[object]:
        whole = conn.next_result(max_rows) if max_rows else None
        if whole is None:
            return []
        columns, rows, done = whole
        assert len(rows) <= max_rows
        return [
            ResultSetStart(len(columns)),
            *(Column(c) for c in columns),
            *(Row(p) for p in rows),
            done,
        ]

    return events_in_pieces(conn, data, cuts, whole_result)


@settings(max_examples=80, deadline=None)
@given(
    shape=st.lists(results, min_size=1, max_size=3),
    error=st.booleans(),
    deprecate_eof=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=10),
    corrupt=st.none() | st.integers(0, 1 << 20),
    max_rows=st.integers(1, 8),
)
def test_next_result_then_next_event_equals_next_event_alone(
    shape: list[tuple[int, list[tuple[bytes | None, ...]]] | None],
    error: bool,
    deprecate_eof: bool,
    cuts: list[int],
    corrupt: int | None,
    max_rows: int,
) -> None:
    whole, plain = logged_in(deprecate_eof), logged_in(deprecate_eof)
    for pair in (whole, plain):
        pair.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
    wire = _reply(whole, shape, error)
    assert wire == _reply(plain, shape, error)
    if corrupt is not None:  # a damaged byte anywhere: both paths must see the same
        at = corrupt % len(wire)
        wire = wire[:at] + bytes([wire[at] ^ 0x40]) + wire[at + 1 :]
    got = _events(whole.client, wire, cuts, max_rows)
    assert got == _events(plain.client, wire, cuts, 0)
    assert whole.client.state is plain.client.state
    if corrupt is None:
        assert whole.client.state is State.IDLE


@settings(max_examples=60, deadline=None)
@given(
    replies=st.lists(
        st.tuples(st.lists(results, min_size=1, max_size=2), st.booleans()), min_size=2, max_size=5
    ),
    deprecate_eof=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=6),
    max_rows=st.integers(1, 8),
)
def test_reply_after_reply_on_one_connection_equals_next_event_alone(
    replies: list[tuple[list[tuple[int, list[tuple[bytes | None, ...]]] | None], bool]],
    deprecate_eof: bool,
    cuts: list[int],
    max_rows: int,
) -> None:
    # Later replies repeat heads (count, definitions, EOF) that next_result matches as bytes.
    whole, plain = logged_in(deprecate_eof), logged_in(deprecate_eof)
    for shape, error in replies:
        for pair in (whole, plain):
            pair.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
        wire = _reply(whole, shape, error)
        assert wire == _reply(plain, shape, error)
        assert _events(whole.client, wire, cuts, max_rows) == _events(plain.client, wire, cuts, 0)
        assert whole.client.state is plain.client.state is State.IDLE


@pytest.mark.parametrize("deprecate_eof", [True, False])
def test_a_repeated_head_is_taken_whole_and_a_changed_one_parsed(deprecate_eof: bool) -> None:
    pair = logged_in(deprecate_eof)
    seen: list[tuple[ColumnDefinition41, ...]] = []
    for columns in ([ID_COL], [ID_COL], [NAME_COL], [NAME_COL], [ID_COL, NAME_COL]):
        pair.client_sends(ComQuery(b"SELECT x"))
        row = encode_text_row([b"1"] * len(columns))
        events = [ResultSetStart(len(columns)), *(Column(c) for c in columns)]
        pair.client.receive_data(pair.server.send_many([*events, Row(row), ResultSetDone(2)]))
        got = pair.client.next_result(10)
        assert got is not None, columns
        assert got[0] == tuple(columns) and got[1] == [row] and got[2] == ResultSetDone(2)
        if seen and seen[-1] == got[0]:
            assert got[0] is seen[-1]  # the same tuple for the same head
        seen.append(got[0])
        assert pair.client.state is State.IDLE


def _prepared(pair: ConnectionPair) -> None:
    pair.client_sends(ComStmtPrepare(b"SELECT id FROM t WHERE id > 0"))
    pair.server_sends(StmtPrepareOK(7, 1, 0), Column(ID_COL))


@pytest.mark.parametrize("warm", [False, True])
def test_a_cursor_opened_by_an_execute_is_left_to_next_event(warm: bool) -> None:
    pair = logged_in(False)
    if warm:  # a query's result with the same columns came before
        pair.client_sends(ComQuery(b"SELECT id FROM t"))
        data = pair.server.send_many([ResultSetStart(1), Column(ID_COL), ResultSetDone(0)])
        pair.client.receive_data(data)
        assert pair.client.next_result(10) is not None
    _prepared(pair)
    pair.client_sends(ComStmtExecute(7, flags=1))  # CURSOR_TYPE_READ_ONLY
    data = pair.server.send_many([ResultSetStart(1), Column(ID_COL), ResultSetDone(CURSOR)])
    pair.client.receive_data(data)
    assert pair.client.next_result(10) is None  # no rows follow a cursor's EOF
    assert pair.client.next_event() == ResultSetStart(1)
    assert pair.client.next_event() == Column(ID_COL)
    assert pair.client.next_event() == ResultSetDone(CURSOR)


def test_next_result_takes_nothing_outside_a_result_or_on_the_server() -> None:
    pair = logged_in(True)
    assert pair.client.next_result(10) is None  # idle
    pair.client_sends(ComQuery(b"SELECT 1"))
    pair.client.receive_data(pair.server.send_many([ResultSetStart(1), Column(ID_COL)]))
    assert pair.client.next_result(10) is None  # not all there yet
    pair.client.receive_data(pair.server.send_many([Row(b"\x011"), Row(b"\x012")]))
    assert pair.client.next_result(1) is None  # more rows than asked for
    pair.client.receive_data(pair.server.send_many([ResultSetDone(AUTOCOMMIT)]))
    columns, rows, done = pair.client.next_result(2) or ((), [], None)
    assert columns == (ID_COL,) and rows == [b"\x011", b"\x012"] and done == ResultSetDone(2)
    assert pair.client.state is State.IDLE
    server = ConnectionPair(True).server
    assert server.next_result(10) is None


def test_a_malformed_definition_is_left_to_next_event() -> None:
    pair = logged_in(True)
    pair.client_sends(ComQuery(b"SELECT 1"))
    count, definition = b"\x01\x00\x00\x01\x01", b"\x02\x00\x00\x02\x03d"  # "def" cut short
    end = b"\x07\x00\x00\x03\xfe\x00\x00\x02\x00\x00\x00"
    pair.client.receive_data(count + definition + end)
    assert pair.client.next_result(10) is None  # nothing taken
    assert pair.client.next_event() == ResultSetStart(1)
    with pytest.raises(RemoteProtocolError, match="malformed packet"):
        pair.client.next_event()
    assert pair.client.state is State.ERROR


# -- the server side -----------------------------------------------------------------------


def _separately(
    conn: Connection, columns: list[ColumnDefinition41], rows: list[bytes], status: int
) -> bytes:
    parts = [conn.send_columns(columns), *(conn.send_row(r) for r in rows)]
    return b"".join([*parts, conn.send_done(status, 1, 2, 3, b"info")])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    rows=st.lists(st.tuples(values, values), max_size=10),
    deprecate_eof=st.booleans(),
    more=st.booleans(),
    execute=st.booleans(),
    cursor=st.booleans(),
)
def test_send_result_set_writes_what_the_three_calls_write(
    n: int,
    rows: list[tuple[bytes | None, bytes | None]],
    deprecate_eof: bool,
    more: bool,
    execute: bool,
    cursor: bool,
) -> None:
    payloads = [encode_text_row(list(r[:n])) for r in rows] if not (execute and cursor) else []
    status = AUTOCOMMIT | (MORE if more and not cursor else 0) | (CURSOR if cursor else 0)
    one, three = logged_in(deprecate_eof), logged_in(deprecate_eof)
    for pair in (one, three):
        if execute:
            _prepared(pair)
            pair.client_sends(ComStmtExecute(7, flags=1 if cursor else 0))
        else:
            pair.client_sends(ComQuery(b"SELECT id, name FROM t"))
    columns = COLUMNS[:n]
    wire = one.server.send_result_set(columns, payloads, status, 1, 2, 3, b"info")
    assert wire == _separately(three.server, columns, payloads, status)
    assert one.server.state is three.server.state
    one.client.receive_data(wire)
    assert one.client.next_event() == ResultSetStart(n)  # and the client agrees


@settings(max_examples=40, deadline=None)
@given(
    replies=st.lists(
        st.lists(
            st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 3), st.booleans()),
            min_size=1,
            max_size=3,
        ),
        min_size=1,
        max_size=4,
    ),
    deprecate_eof=st.booleans(),
)
def test_send_result_set_of_the_same_definitions_again_writes_what_the_three_calls_write(
    replies: list[list[tuple[int, int, bool]]], deprecate_eof: bool
) -> None:
    # The server frames the head of a tuple of definitions once and reuses it while the
    # start sequence id and the EOF status match; a list is framed every time.
    heads: list[Sequence[ColumnDefinition41]] = [(ID_COL,), (ID_COL, NAME_COL), [ID_COL]]
    one, three = logged_in(deprecate_eof), logged_in(deprecate_eof)
    for results in replies:
        for pair in (one, three):
            pair.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
        for i, (head, nrows, in_trans) in enumerate(results):
            columns = heads[head]
            rows = [encode_text_row([b"7"] * len(columns))] * nrows
            status = (IN_TRANS if in_trans else AUTOCOMMIT) | (MORE if i + 1 < len(results) else 0)
            wire = one.server.send_result_set(columns, rows, status, 1, 2, 3, b"info")
            assert wire == _separately(three.server, list(columns), rows, status)
            for pair in (one, three):  # the clients read it (and are idle again at the end)
                pair.client.receive_data(wire)
                while pair.client.next_event() is not NEED_DATA:
                    pass
        assert one.server.state is three.server.state is State.IDLE
    mutable = heads[2]
    assert isinstance(mutable, list)
    mutable.append(NAME_COL)  # a list may change: what it holds now is what is written
    for pair in (one, three):
        pair.client_sends(ComQuery(b"SELECT id, name FROM t"))
    row = encode_text_row([b"1", b"2"])
    wire = one.server.send_result_set(mutable, [row], AUTOCOMMIT, 1, 2, 3, b"info")
    assert wire == _separately(three.server, [ID_COL, NAME_COL], [row], AUTOCOMMIT)


def test_send_result_set_splits_a_row_of_16_mib() -> None:
    one, three = ConnectionPair(True, max_packet_size=1 << 25), logged_in(True)
    one.login()
    for pair in (one, three):
        pair.client_sends(ComQuery(b"SELECT name FROM t"))
    rows = [b"\x01a", encode_text_row([b"z" * MAX_CHUNK])]
    wire = one.server.send_result_set([NAME_COL], rows, AUTOCOMMIT, 1, 2, 3, b"info")
    assert wire == _separately(three.server, [NAME_COL], rows, AUTOCOMMIT)
    one.client.receive_data(wire)
    got = []
    while (ev := one.client.next_event()) is not NEED_DATA:
        got.append(ev)
    assert [ev.payload for ev in got if isinstance(ev, Row)] == rows


def test_send_result_set_refuses_what_send_columns_refuses() -> None:
    pair = logged_in(True)
    with pytest.raises(LocalProtocolError):
        pair.server.send_result_set([ID_COL], [], AUTOCOMMIT)  # idle: no command to answer
    pair.client_sends(ComQuery(b"SELECT 1"))
    with pytest.raises(LocalProtocolError):
        pair.server.send_result_set([], [], AUTOCOMMIT)  # no columns


@pytest.mark.parametrize("packet", [1, 2, 3])
def test_a_wrong_sequence_id_anywhere_is_refused_as_next_event_refuses_it(packet: int) -> None:
    whole, plain = logged_in(True), logged_in(True)
    for pair in (whole, plain):
        pair.client_sends(ComQuery(b"SELECT id FROM t"))
    wire = _reply(whole, [(1, [(b"1", None)])], False)
    assert wire == _reply(plain, [(1, [(b"1", None)])], False)
    at = 0
    for _ in range(packet):  # the header of the packet-th packet after the column count
        at += 4 + int.from_bytes(wire[at : at + 3], "little")
    wire = wire[: at + 3] + bytes([wire[at + 3] + 1]) + wire[at + 4 :]
    got = _events(whole.client, wire, [], 8)
    assert got == _events(plain.client, wire, [], 0)
    assert got[-1] == ("remote error", 1156)


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("deprecate_eof", [True, False])
def test_any_damaged_byte_is_seen_as_next_event_sees_it(deprecate_eof: bool, warm: bool) -> None:
    shape: list[tuple[int, list[tuple[bytes | None, ...]]] | None] = [
        None,
        (2, [(b"1", b"one"), (None, b"")]),
        (1, []),
    ]
    source = logged_in(deprecate_eof)
    source.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
    wire = _reply(source, shape, False)
    for at in range(len(wire)):
        damaged = wire[:at] + bytes([wire[at] ^ 0x40]) + wire[at + 1 :]
        whole, plain = logged_in(deprecate_eof), logged_in(deprecate_eof)
        if warm:  # the undamaged reply first: its heads are known when the damaged one comes
            for pair in (whole, plain):
                pair.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
                _events(pair.client, wire, [], 8)
        for pair in (whole, plain):
            pair.client_sends(ComQuery(b"SELECT id, name FROM t; SELECT 1"))
        got = _events(whole.client, damaged, [], 8)
        assert got == _events(plain.client, damaged, [], 0), at

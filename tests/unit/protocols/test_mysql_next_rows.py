"""``Connection.next_rows``: the client's batch path for result rows gives exactly the rows
``next_event`` alone gives, in order, however the bytes arrive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.protocols.pair import AUTOCOMMIT, ConnectionPair, events_in_pieces
from tests.unit.protocols.test_mysql_connection import ID_COL, NAME_COL, logged_in
from vtwist.protocols.mysql.commands import ComQuery
from vtwist.protocols.mysql.connection import Connection, Role, State
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import Err
from vtwist.protocols.mysql.values import encode_text_row
from vtwist.protocols.mysql.wire import Message

values = st.none() | st.binary(max_size=40) | st.sampled_from([b"x" * 251, b"y" * 70_000])


def _reply(pair: ConnectionPair, payloads: list[bytes], error: bool) -> bytes:
    events: list[Message] = [ResultSetStart(2), Column(ID_COL), Column(NAME_COL)]
    events += [Row(p) for p in payloads]
    events.append(Err(1317, "interrupted") if error else ResultSetDone(AUTOCOMMIT, 0))
    return pair.server.send_many(events)


def _events(conn: Connection, data: bytes, cuts: list[int], limit: int) -> list[object]:
    """What ``conn`` makes of ``data`` fed in pieces; ``limit`` 0: ``next_event`` only."""

    def rows(conn: Connection) -> list[object]:
        got = conn.next_rows(limit) if limit else []
        assert len(got) <= max(limit, 0)
        return [Row(p) for p in got]

    return events_in_pieces(conn, data, cuts, rows)


def _query(deprecate_eof: bool) -> ConnectionPair:
    pair = logged_in(deprecate_eof)
    pair.client_sends(ComQuery(b"SELECT id, name FROM t"))
    return pair


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(values, values), max_size=40),
    error=st.booleans(),
    deprecate_eof=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
    corrupt=st.none() | st.integers(0, 1 << 20),
    limit=st.integers(1, 5),
)
def test_next_rows_then_next_event_equals_next_event_alone(
    data: list[tuple[bytes | None, bytes | None]],
    error: bool,
    deprecate_eof: bool,
    cuts: list[int],
    corrupt: int | None,
    limit: int,
) -> None:
    payloads = [encode_text_row(list(r)) for r in data]
    batched, plain = _query(deprecate_eof), _query(deprecate_eof)
    wire = _reply(batched, payloads, error)
    assert wire == _reply(plain, payloads, error)
    if corrupt is not None:  # a damaged byte anywhere: both paths must see the same
        at = corrupt % len(wire)
        wire = wire[:at] + bytes([wire[at] ^ 0x40]) + wire[at + 1 :]
    got = _events(batched.client, wire, cuts, limit)
    assert got == _events(plain.client, wire, cuts, 0)
    if corrupt is None:
        assert [ev.payload for ev in got if isinstance(ev, Row)] == payloads
        assert batched.client.state is State.IDLE


def test_rows_past_256_packets_wrap_their_sequence_ids() -> None:
    for deprecate_eof in (True, False):
        pair = _query(deprecate_eof)
        payloads = [encode_text_row([str(i).encode(), None]) for i in range(600)]
        got = _events(pair.client, _reply(pair, payloads, False), [1000, 5000], 256)
        assert [ev.payload for ev in got if isinstance(ev, Row)] == payloads
        assert isinstance(got[-1], ResultSetDone)
        assert pair.client.state is State.IDLE


def test_next_rows_is_empty_outside_rows_and_on_the_server_side() -> None:
    pair = logged_in(True)
    assert pair.client.next_rows(10) == []  # idle
    pair.client_sends(ComQuery(b"SELECT 1"))
    pair.client.receive_data(pair.server.send_many([ResultSetStart(1), Column(ID_COL)]))
    assert pair.client.next_rows(10) == []  # columns first
    assert pair.client.next_event() == ResultSetStart(1)
    assert pair.client.next_event() == Column(ID_COL)
    pair.client.receive_data(pair.server.send_many([Row(b"\x011"), Row(b"\x012")]))
    assert pair.client.next_rows(10) == [b"\x011", b"\x012"]
    assert pair.client.next_rows(10) == []  # nothing more buffered
    assert Connection(Role.SERVER).next_rows(10) == []


def test_a_row_with_a_wrong_sequence_id_is_refused_as_next_event_refuses_it() -> None:
    for deprecate_eof in (True, False):
        batched, plain = _query(deprecate_eof), _query(deprecate_eof)
        payloads = [encode_text_row([b"1", None]), encode_text_row([b"2", b"x"])]
        wire = _reply(batched, payloads, False)
        assert wire == _reply(plain, payloads, False)
        pos, headers = 0, []
        while pos < len(wire):
            headers.append(pos)
            pos += 4 + int.from_bytes(wire[pos : pos + 3], "little")
        at = headers[-2]  # the last row (the end of the result follows it)
        wire = wire[: at + 3] + bytes([wire[at + 3] + 1]) + wire[at + 4 :]
        got = _events(batched.client, wire, [], 8)
        assert got == _events(plain.client, wire, [], 0)
        assert got[-1] == ("remote error", 1156)

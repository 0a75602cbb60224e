"""Prepared statements, binary rows from text rows, and cursors (COM_STMT_FETCH)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from twisted.internet.defer import Deferred

from tests.unit.server.harness import (
    AUTOCOMMIT,
    CAPS,
    COL_ECHO,
    CURSOR,
    LAST_ROW,
    NO_EOF_CAPS,
    Client,
    Harness,
    RecordingProducer,
    text_row,
)
from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.constants import ColumnFlag, ColumnType, CursorType
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ColumnDefinition41,
    ComResetConnection,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    Err,
    Ok,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.server_types import PrepareInfo
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    TimeValue,
    decode_binary_row,
    encode_binary_row,
    encode_execute_params,
)

T = ColumnType
U = int(ColumnFlag.UNSIGNED)
READ_ONLY = int(CursorType.READ_ONLY)


def col(name: str, ctype: int, flags: int = 0, charset: int = 63) -> ColumnDefinition41:
    return ColumnDefinition41(name, ctype, charset, 20, flags)


TYPED = [
    col("i", T.LONGLONG),
    col("u", T.TINY, U),
    col("d", T.DOUBLE),
    col("n", T.NEWDECIMAL),
    col("day", T.DATE),
    col("ts", T.DATETIME),
    col("t", T.TIME),
    col("s", T.VAR_STRING, charset=45),
    col("z", T.DATETIME),
    col("nul", T.LONG),
]
TYPED_TEXT = text_row(
    b"-9000000000",
    b"255",
    b"1.5",
    b"12.340",
    b"0000-00-00",
    b"2024-02-29 23:59:59.123456",
    b"-838:59:59",
    b"caf\xc3\xa9",
    b"0000-00-00 00:00:00",
    None,
)


def client(caps: int = CAPS, **kw: object) -> Client:
    return Harness(**kw).connect().logged_in(caps=caps)


def prepare(c: Client, sql: bytes) -> StmtPrepareOK:
    c.send(ComStmtPrepare(sql))
    evs = c.events()
    assert isinstance(evs[0], StmtPrepareOK), evs
    return evs[0]


def execute(
    stmt_id: int, params: list[object], flags: int = 0, bound: bool = True
) -> ComStmtExecute:
    if not params:
        return ComStmtExecute(stmt_id, flags)
    bitmap, types, values = encode_execute_params(params)
    return ComStmtExecute(
        stmt_id, flags, 1, bitmap, bound, tuple((int(t), u) for t, u in types), values
    )


@pytest.mark.parametrize("caps", [CAPS, NO_EOF_CAPS])
def test_prepare_reply_and_ids_per_session(caps: int) -> None:
    h = Harness()
    c = h.connect().logged_in(caps=caps)
    c.send(ComStmtPrepare(b"SELECT ?, '?' FROM t WHERE a = ?"))
    evs = c.events()
    assert evs[0] == StmtPrepareOK(1, 1, 2)
    params = [e for e in evs[1:3] if isinstance(e, Column)]
    assert [p.definition.name for p in params] == ["?", "?"]
    assert evs[3] == Column(COL_ECHO)
    assert len(evs) == 4
    assert prepare(c, b"SELECT 2").statement_id == 2
    assert c.handler.calls[0] == ("prepare", b"SELECT ?, '?' FROM t WHERE a = ?")
    assert prepare(h.connect().logged_in(), b"SELECT 1").statement_id == 1


def test_execute_decodes_parameters_and_reuses_cached_types() -> None:
    c = client()
    stmt = prepare(c, b"SELECT ?, ?, ?")
    c.send(execute(stmt.statement_id, [7, "abc", b"\x00\x01"]))
    assert c.events()[-1] == ResultSetDone(AUTOCOMMIT)
    assert c.handler.calls[-1] == ("execute", 1, [7, "abc", b"\x00\x01"], False)
    # new-params-bound = 0: the types of the previous execute apply.
    c.send(execute(stmt.statement_id, [8, "de", b"\x02"], bound=False))
    c.events()
    assert c.handler.calls[-1] == ("execute", 1, [8, "de", b"\x02"], False)


def test_execute_errors() -> None:
    c = client()
    stmt = prepare(c, b"SELECT ?")
    c.send(execute(stmt.statement_id, [1], bound=False))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1210 and "new-params-bound" in err.message
    c.send(ComStmtExecute(99))
    (err,) = c.events()
    assert err == Err(1243, "Unknown prepared statement handler (99) given to mysqld_stmt_execute")
    c.send(ComStmtExecute(stmt.statement_id, 0, 1, b"\x00", True, ((T.LONGLONG, False),), b"\1"))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1210  # 1 byte for an 8-byte integer
    assert len(c.query(b"SELECT 1")) == 4


def test_long_data_arrives_with_the_execute() -> None:
    c = client()
    stmt = prepare(c, b"INSERT INTO t VALUES (?, ?)")
    c.send(ComStmtSendLongData(stmt.statement_id, 1, b"big "))
    c.send(ComStmtSendLongData(stmt.statement_id, 1, b"blob"))
    assert c.raw_out() == b""  # no reply to long data
    bitmap, _, values = encode_execute_params([5, None])
    c.send(
        ComStmtExecute(
            stmt.statement_id,
            0,
            1,
            bitmap,
            True,
            ((int(T.LONGLONG), False), (int(T.BLOB), False)),
            values,
        )
    )
    c.events()
    assert c.handler.calls[-1] == ("execute", 1, [5, b"big blob"], False)


@pytest.mark.parametrize("caps", [CAPS, NO_EOF_CAPS])
def test_text_rows_are_sent_as_binary_rows_for_an_execute(caps: int) -> None:
    c = client(caps)

    def typed(sink: IResultSink) -> None:
        assert not sink.cursor
        sink.start(TYPED)
        sink.row(TYPED_TEXT)
        sink.done(AUTOCOMMIT)

    c.handler.scripts[b"SELECT typed"] = typed
    stmt = prepare(c, b"SELECT typed")
    c.send(execute(stmt.statement_id, []))
    evs = c.events()
    assert evs[:2] == [ResultSetStart(len(TYPED)), Column(TYPED[0])]
    (row,) = [e for e in evs if isinstance(e, Row)]
    specs = [(T(d.column_type), bool(d.flags & U)) for d in TYPED]
    assert decode_binary_row(row.payload, specs) == [
        -9000000000,
        255,
        1.5,
        Decimal("12.340"),
        DateValue(0, 0, 0),
        DateTimeValue(2024, 2, 29, 23, 59, 59, 123456),
        TimeValue.parse(b"-838:59:59"),
        "café".encode(),
        DateTimeValue(0, 0, 0, 0, 0, 0, 0),
        None,
    ]
    # Zero dates are zero-length in the binary protocol.
    assert b"\x00" in row.payload
    # The same query as text keeps text rows.
    assert c.query(b"SELECT typed")[-2] == Row(TYPED_TEXT)


def test_binary_rows_pass_through_and_bad_text_is_an_error() -> None:
    c = client()
    specs = [(T.LONGLONG, False)]
    binary_row = encode_binary_row([42], specs)

    def binary(sink: IResultSink) -> None:
        sink.start([col("i", T.LONGLONG)], binary=True)
        sink.row(binary_row)
        sink.done()

    def bad(sink: IResultSink) -> None:
        sink.start([col("i", T.LONGLONG)])
        sink.row(text_row(b"not a number"))
        sink.done()

    c.handler.scripts[b"binary"] = binary
    c.handler.scripts[b"bad"] = bad
    c.send(execute(prepare(c, b"binary").statement_id, []))
    assert Row(binary_row) in c.events()
    c.send(execute(prepare(c, b"bad").statement_id, []))
    evs = c.events()
    assert isinstance(evs[-1], Err) and evs[-1].code == 1105
    c.harness.clock.advance(0)
    assert len(c.query(b"SELECT 1")) == 4


def test_reset_close_and_limits() -> None:
    c = client(max_prepared_statements=2)
    s1 = prepare(c, b"SELECT 1")
    prepare(c, b"SELECT 2")
    c.send(ComStmtPrepare(b"SELECT 3"))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1461 and err.sqlstate == "42000"
    c.send(ComStmtReset(s1.statement_id))
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    c.send(ComStmtReset(77))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1243
    c.send(ComStmtClose(s1.statement_id))
    assert c.raw_out() == b""
    assert c.handler.calls[-1] == ("close_statement", s1.statement_id)
    c.send(execute(s1.statement_id, []))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1243
    assert prepare(c, b"SELECT 3").statement_id == 3
    c.send(ComResetConnection())
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    c.send(execute(3, []))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1243


def test_prepare_failures() -> None:
    c = client()
    c.handler.fail_next = MySQLError(1064, "You have an error in your SQL syntax", "42000")
    c.send(ComStmtPrepare(b"SELEC"))
    assert c.events() == [Err(1064, "You have an error in your SQL syntax", "42000")]
    c.handler.prepare = lambda sql: "nonsense"  # type: ignore[assignment, method-assign, return-value]
    c.send(ComStmtPrepare(b"SELECT 1"))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1105


def test_prepare_info_validates() -> None:
    with pytest.raises(ValueError):
        PrepareInfo(2, params=[COL_ECHO])
    with pytest.raises(ValueError):
        PrepareInfo(-1)


# -- cursors -------------------------------------------------------------------------------


def five_rows(sink: IResultSink) -> None:
    sink.start([col("i", T.LONGLONG)])
    sink.rows([text_row(str(i).encode()) for i in range(5)])
    sink.done(AUTOCOMMIT)


def fetch(c: Client, stmt_id: int, n: int) -> list[object]:
    c.send(ComStmtFetch(stmt_id, n))
    evs = c.events()
    return [
        decode_binary_row(e.payload, [(T.LONGLONG, False)])[0] if isinstance(e, Row) else e
        for e in evs
    ]


@pytest.mark.parametrize("caps", [CAPS, NO_EOF_CAPS])
def test_cursor_open_fetch_and_last_row(caps: int) -> None:
    c = client(caps)
    c.handler.scripts[b"SELECT five"] = five_rows
    stmt = prepare(c, b"SELECT five")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    assert c.events() == [
        ResultSetStart(1),
        Column(col("i", T.LONGLONG)),
        ResultSetDone(AUTOCOMMIT | CURSOR),
    ]
    assert c.handler.calls[-1] == ("execute", 1, [], True)
    assert fetch(c, 1, 2) == [0, 1, ResultSetDone(AUTOCOMMIT | CURSOR)]
    assert fetch(c, 1, 2) == [2, 3, ResultSetDone(AUTOCOMMIT | CURSOR)]
    assert fetch(c, 1, 2) == [4, ResultSetDone(AUTOCOMMIT | CURSOR | LAST_ROW)]
    (err,) = fetch(c, 1, 2)
    assert isinstance(err, Err) and err.code == 1421
    c.send(ComStmtFetch(9, 1))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1243


def test_cursor_on_a_statement_without_result_set_is_just_ok() -> None:
    c = client()
    stmt = prepare(c, b"insert into t values (?)")
    c.send(execute(stmt.statement_id, [1], READ_ONLY))
    assert c.events() == [Ok(3, 42, AUTOCOMMIT, 1, b"Records: 3")]
    (err,) = fetch(c, stmt.statement_id, 1)
    assert isinstance(err, Err) and err.code == 1421


def test_cursor_buffer_is_bounded_and_streams_to_fetches() -> None:
    c = client(cursor_buffer_rows=3)
    producer = RecordingProducer()
    sinks: list[IResultSink] = []

    def streaming(sink: IResultSink) -> object:
        assert sink.cursor
        sink.register_producer(producer)
        sink.start([col("i", T.LONGLONG)])
        sinks.append(sink)
        return Deferred()

    c.handler.scripts[b"SELECT stream"] = streaming
    stmt = prepare(c, b"SELECT stream")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    assert c.events()[-1] == ResultSetDone(AUTOCOMMIT | CURSOR)
    sink = sinks[0]
    sink.rows([text_row(b"0"), text_row(b"1")])
    assert producer.calls == []
    sink.row(text_row(b"2"))
    assert producer.calls == ["pause"] and sink.paused
    # Other commands go on while the cursor's execute is still running.
    assert len(c.query(b"SELECT 1")) == 4
    assert fetch(c, 1, 2) == [0, 1, ResultSetDone(AUTOCOMMIT | CURSOR)]
    assert producer.calls == ["pause", "resume"]
    # A fetch wants more than is buffered: it waits for the handler's rows.
    c.send(ComStmtFetch(1, 3))
    assert [e for e in c.events() if isinstance(e, Row)] == [Row(b"\x00\x00" + b"\x02" + b"\0" * 7)]
    sink.row(text_row(b"3"))
    evs = c.events()
    assert len(evs) == 1 and isinstance(evs[0], Row)
    sink.done(AUTOCOMMIT)
    assert c.events() == [ResultSetDone(AUTOCOMMIT | CURSOR | LAST_ROW)]


def test_closing_a_cursor_stops_its_producer_and_cancels_the_handler() -> None:
    c = client()
    producer = RecordingProducer()
    pending: list[Deferred[None]] = []

    def streaming(sink: IResultSink) -> object:
        sink.register_producer(producer)
        sink.start([col("i", T.LONGLONG)])
        d: Deferred[None] = Deferred()
        pending.append(d)
        return d

    c.handler.scripts[b"SELECT stream"] = streaming
    stmt = prepare(c, b"SELECT stream")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    c.send(ComStmtClose(stmt.statement_id))
    c.harness.clock.advance(0)
    assert producer.calls == ["stop"]
    assert pending[0].called
    # The same for a re-execute, and for a reset of the session.
    stmt = prepare(c, b"SELECT stream")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    c.send(ComResetConnection())
    c.events()
    c.harness.clock.advance(0)
    assert producer.calls == ["stop", "stop", "stop"]
    assert all(d.called for d in pending)


def test_cursor_errors_are_reported_by_the_next_fetch() -> None:
    c = client()
    sinks: list[IResultSink] = []

    def opened(sink: IResultSink) -> object:
        sink.start([col("i", T.LONGLONG)])
        sink.row(text_row(b"1"))
        sinks.append(sink)
        return Deferred()

    c.handler.scripts[b"SELECT e"] = opened
    stmt = prepare(c, b"SELECT e")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    sinks[0].error(MySQLError(1317, "Query execution was interrupted"))
    assert fetch(c, stmt.statement_id, 5) == [Err(1317, "Query execution was interrupted", "70100")]
    (err,) = fetch(c, stmt.statement_id, 5)
    assert isinstance(err, Err) and err.code == 1421


def test_cursor_overrun_without_a_producer_fails_the_cursor() -> None:
    c = client(cursor_buffer_rows=2, max_overrun_bytes=50)

    def flood(sink: IResultSink) -> None:
        sink.start([col("s", T.VAR_STRING)])
        for _ in range(20):
            sink.row(text_row(b"x" * 10))
        sink.done()

    c.handler.scripts[b"SELECT flood"] = flood
    stmt = prepare(c, b"SELECT flood")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    (err,) = fetch(c, stmt.statement_id, 100)
    assert isinstance(err, Err) and err.code == 1105 and "cursor buffer" in err.message

"""The client's commands against a scripted mysqld, in both EOF modes: results, streaming
with back-pressure, prepared statements, the queue, errors, timeouts and connection loss."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from tests.unit.client.scripted import AUTOCOMMIT, Scripted, error_of, result_of
from vtwist.protocols.mysql.client_commands import INFILE_CHUNK, SimpleHandler, column_specs
from vtwist.protocols.mysql.client_protocol import ROW_BATCH
from vtwist.protocols.mysql.constants import (
    SERVER_CAPABILITIES,
    Capability,
    ColumnFlag,
    ColumnType,
    ServerStatus,
)
from vtwist.protocols.mysql.errors import LocalProtocolError, MySQLError
from vtwist.protocols.mysql.events import CLOSED, Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ColumnDefinition41,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComStmtClose,
    ComStmtExecute,
    ComStmtPrepare,
    Err,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    decode_binary_row,
    decode_execute_params,
    encode_binary_row,
    encode_text_row,
)
from vtwist.protocols.mysql.wire import Message

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
IN_TRANS = int(ServerStatus.IN_TRANS)
UNSIGNED = int(ColumnFlag.UNSIGNED)
ID = ColumnDefinition41("id", ColumnType.LONGLONG, 63, 20, UNSIGNED, 0, "shop", "t", "t", "id")
NAME = ColumnDefinition41("name", ColumnType.VAR_STRING, 45, 400, 0, 0, "shop", "t", "t", "name")
PRICE = ColumnDefinition41("price", ColumnType.NEWDECIMAL, 63, 10, 0, 2)
WHEN = ColumnDefinition41("at", ColumnType.DATETIME, 63, 26, 0, 6)
PARAM = ColumnDefinition41("?", ColumnType.NULL, 63)

both_modes = pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate", "classic"])


def logged_in(deprecate_eof: bool = True, **config: Any) -> Scripted:
    s = Scripted(**config)
    caps = int(SERVER_CAPABILITIES)
    if not deprecate_eof:
        caps &= ~Capability.DEPRECATE_EOF
    s.login(s.greeting(caps=caps))
    assert s.client.deprecate_eof is deprecate_eof
    return s


def result_set(
    cols: list[ColumnDefinition41], rows: Sequence[Sequence[bytes | None]], status: int = 2
) -> list[Message]:
    return [
        ResultSetStart(len(cols)),
        *(Column(c) for c in cols),
        *(Row(encode_text_row(r)) for r in rows),
        ResultSetDone(status),
    ]


# -- COM_QUERY -------------------------------------------------------------------------------


@both_modes
def test_query_collects_text_rows(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    d = s.client.query("SELECT id, name FROM t")
    assert s.received() == [ComQuery(b"SELECT id, name FROM t")]
    s.send(*result_set([ID, NAME], [[b"1", b"apple"], [b"2", None]], AUTOCOMMIT))
    r = result_of(d)
    assert [c.name for c in r.columns] == ["id", "name"]
    assert r.rows == [[b"1", b"apple"], [b"2", None]]
    assert r.row_count == 2 and r.status == AUTOCOMMIT and r.more == []
    assert not s.client.busy


@both_modes
def test_query_python_values(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    d = s.client.query(b"SELECT ...", python=True)
    s.received()
    row = [b"18446744073709551615", b"x", b"12.50", b"2024-02-29 23:59:59.000001"]
    s.send(*result_set([ID, NAME, PRICE, WHEN], [row, [None] * 4]))
    assert result_of(d).rows == [
        [2**64 - 1, b"x", Decimal("12.50"), DateTimeValue(2024, 2, 29, 23, 59, 59, 1)],
        [None, None, None, None],
    ]


@both_modes
def test_multi_results_and_ok_fields(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    d = s.client.query("UPDATE t SET x = 1; SELECT id FROM t; INSERT INTO t () VALUES ()")
    s.received()
    s.send(
        Ok(affected_rows=3, status=AUTOCOMMIT | MORE | IN_TRANS, warnings=1, info=b"Rows: 3"),
        *result_set([ID], [[b"7"]], AUTOCOMMIT | MORE | IN_TRANS),
        Ok(affected_rows=1, last_insert_id=99, status=AUTOCOMMIT | IN_TRANS),
    )
    r = result_of(d)
    assert (r.affected_rows, r.warnings, r.info, r.columns) == (3, 1, b"Rows: 3", [])
    second, third = r.more
    assert second.rows == [[b"7"]]
    assert (third.affected_rows, third.last_insert_id) == (1, 99)
    assert [x.affected_rows for x in r.all_results()] == [3, 0, 1]
    assert s.client.in_transaction and s.client.status_flags == AUTOCOMMIT | IN_TRANS


def test_mysqld_error_fails_the_command_only() -> None:
    s = logged_in()
    d = s.client.query("SELEC 1")
    s.received()
    s.send(Err(1064, "You have an error in your SQL syntax", "42000"))
    err = error_of(d, MySQLError)
    assert (err.code, err.sqlstate, err.message) == (
        1064,
        "42000",
        "You have an error in your SQL syntax",
    )
    assert not s.client.is_broken
    p = s.client.ping()
    assert s.received() == [ComPing()]
    s.send(Ok())
    assert result_of(p) is None


def test_error_after_a_first_result_fails_the_query() -> None:
    s = logged_in()
    d = s.client.query("SELECT 1; SELECT * FROM nope")
    s.received()
    s.send(
        *result_set([ID], [[b"1"]], AUTOCOMMIT | MORE),
        Err(1146, "Table 'nope' doesn't exist", "42S02"),
    )
    err = error_of(d, MySQLError)
    assert (err.code, err.sqlstate) == (1146, "42S02")
    assert not s.client.busy and not s.client.is_broken


def test_result_over_max_result_size_fails_with_1104_and_stays_usable() -> None:
    s = logged_in(max_result_size=100)
    d = s.client.query("SELECT big")
    s.received()
    s.send(*result_set([NAME], [[b"x" * 60], [b"y" * 60], [b"z"]]))
    err = error_of(d, MySQLError)
    assert err.code == 1104 and "stream_query" in err.message
    assert not s.client.is_broken


def test_local_infile_request_is_refused() -> None:
    s = logged_in()
    d = s.client.query("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t")
    s.received()
    s.send(LocalInfileRequest("/etc/passwd"))
    assert s.received() == [LocalInfileData(b"")]
    s.send(Ok())
    assert "LOCAL INFILE" in error_of(d, MySQLError).message


def test_local_infile_sends_the_statements_file_in_chunks() -> None:
    s = logged_in(local_files=True)
    assert s.proto.conn.capabilities & Capability.LOCAL_FILES
    done: list[Any] = []
    data = b"1,a\n" * (INFILE_CHUNK // 4) + b"2,b\n"
    s.client.stream_query_notify(
        "LOAD DATA LOCAL INFILE 'f' INTO TABLE t", lambda ev: None, done.append, infile=data
    )
    s.received()
    s.send(LocalInfileRequest("f"))
    assert s.received() == [
        LocalInfileData(data[:INFILE_CHUNK]),
        LocalInfileData(data[INFILE_CHUNK:]),
        LocalInfileData(b""),
    ]
    s.send(Ok(affected_rows=INFILE_CHUNK // 4 + 1))
    assert done[0].affected_rows == INFILE_CHUNK // 4 + 1
    assert not logged_in().proto.conn.capabilities & Capability.LOCAL_FILES


def test_a_row_over_16_mib_in_small_reads() -> None:
    s = logged_in()
    d = s.client.query("SELECT blob")
    s.received()
    big = bytes(range(256)) * (17 * 4096)  # 17 MiB: two packets on the wire
    data = s.server.send_many(result_set([NAME, ID], [[big, b"1"]]))
    s.send_bytes(data, chunk=1 << 16)
    assert result_of(d).rows == [[big, b"1"]]


def test_a_packet_over_max_packet_size_breaks_the_connection() -> None:
    s = logged_in(max_packet_size=1 << 20)
    d = s.client.query("SELECT blob")
    s.received()
    s.send(*result_set([NAME], [[b"x" * (2 << 20)]]))
    err = error_of(d, MySQLError)
    assert err.code == 1153 and s.client.is_broken and s.transport.aborted


def test_out_of_order_packet_breaks_the_connection() -> None:
    s = logged_in()
    d = s.client.query("SELECT 1")
    s.received()
    s.send_bytes(b"\x07\x00\x00\x05" + Ok().encode())  # sequence id 5 instead of 1
    err = error_of(d, MySQLError)
    assert err.code == 1156 and s.client.is_broken


# -- streaming -------------------------------------------------------------------------------


@both_modes
def test_stream_query_delivers_events_without_collecting(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    events: list[Any] = []
    d = s.client.stream_query("SELECT id FROM t", events.append)
    s.received()
    rows = [[str(i).encode()] for i in range(5)]
    s.send(*result_set([ID], rows, AUTOCOMMIT | MORE), Ok(affected_rows=2, status=AUTOCOMMIT))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ResultSetStart", "Column"] + ["Row"] * 5 + ["ResultSetDone", "Ok"]
    assert [e.payload for e in events if isinstance(e, Row)] == [encode_text_row(r) for r in rows]
    r = result_of(d)
    assert r.rows == [] and r.row_count == 5 and r.more[0].affected_rows == 2


class BatchConsumer:
    """A consumer with ``row_batch``: rows already received come in one call."""

    def __init__(self, fail_on_batch: bool = False) -> None:
        self.events: list[Any] = []
        self.batches: list[list[bytes]] = []
        self.rows: list[bytes] = []  # in order, however they came
        self.fail_on_batch = fail_on_batch

    def __call__(self, ev: Any) -> None:
        self.events.append(ev)
        if isinstance(ev, Row):
            self.rows.append(ev.payload)

    def row_batch(self, payloads: list[bytes]) -> None:
        if self.fail_on_batch:
            raise RuntimeError("batch consumer bug")
        self.batches.append(payloads)
        self.rows.extend(payloads)


@both_modes
def test_a_batch_consumer_gets_the_rows_of_one_read_in_one_call(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    consumer = BatchConsumer()
    d = s.client.stream_query("SELECT id FROM t", consumer)
    s.received()
    rows = [[str(i).encode()] for i in range(300)]  # > 256: sequence ids wrap
    s.send(*result_set([ID], rows, AUTOCOMMIT | MORE), Ok(affected_rows=2, status=AUTOCOMMIT))
    assert consumer.rows == [encode_text_row(r) for r in rows]
    kinds = [type(e).__name__ for e in consumer.events]
    if deprecate_eof:
        assert kinds == ["ResultSetStart", "Column", "ResultSetDone", "Ok"]  # no Row event
        assert [len(b) for b in consumer.batches] == [ROW_BATCH, 300 - ROW_BATCH]
    else:  # the first row comes with the EOF after the columns, as an event
        assert kinds == ["ResultSetStart", "Column", "Row", "ResultSetDone", "Ok"]
        assert [len(b) for b in consumer.batches] == [ROW_BATCH, 299 - ROW_BATCH]
    r = result_of(d)
    assert r.row_count == 300 and r.more[0].affected_rows == 2
    assert not s.client.busy and not s.client.is_broken


def test_a_failing_batch_consumer_drains_the_reply_then_fails() -> None:
    s = logged_in()
    d = s.client.stream_query("SELECT id FROM t", BatchConsumer(fail_on_batch=True))
    s.received()
    s.send(*result_set([ID], [[b"1"], [b"2"]]))
    assert str(error_of(d, RuntimeError)) == "batch consumer bug"
    assert not s.client.busy and not s.client.is_broken
    d2 = s.client.query("SELECT 1")  # the connection is still in step
    s.received()
    s.send(*result_set([ID], [[b"1"]]))
    assert result_of(d2).rows == [[b"1"]]


class WholeConsumer(BatchConsumer):
    """A consumer with ``result_set``: result sets received whole come in one call."""

    def __init__(self, fail_on_whole: bool = False) -> None:
        super().__init__()
        self.wholes: list[tuple[Sequence[ColumnDefinition41], list[bytes], ResultSetDone]] = []
        self.fail_on_whole = fail_on_whole

    def result_set(
        self, columns: Sequence[ColumnDefinition41], rows: list[bytes], done: ResultSetDone
    ) -> None:
        if self.fail_on_whole:
            raise RuntimeError("whole consumer bug")
        self.wholes.append((columns, rows, done))
        self.rows.extend(rows)


@both_modes
def test_a_whole_consumer_gets_each_result_set_received_whole_in_one_call(
    deprecate_eof: bool,
) -> None:
    s = logged_in(deprecate_eof)
    consumer, plain = WholeConsumer(), WholeConsumer()
    d = s.client.stream_query("SELECT id, name FROM t; SELECT id FROM t", consumer)
    s.received()
    first: list[list[bytes | None]] = [[b"1", b"one"], [b"2", None]]
    reply = [
        *result_set([ID, NAME], first, AUTOCOMMIT | MORE),
        *result_set([ID], [], AUTOCOMMIT | MORE),
        Ok(affected_rows=2, status=AUTOCOMMIT),
    ]
    s.send(*reply)
    assert [(c, r) for c, r, _ in consumer.wholes] == [
        ((ID, NAME), [encode_text_row(r) for r in first]),
        ((ID,), []),
    ]
    assert [d.status for _, _, d in consumer.wholes] == [AUTOCOMMIT | MORE] * 2
    assert [type(e).__name__ for e in consumer.events] == ["Ok"]  # only what was not whole
    got = result_of(d)
    # The same summary as a consumer that takes events.
    d2 = s.client.stream_query("SELECT id, name FROM t; SELECT id FROM t", plain.__call__)
    s.received()
    s.send(*reply)
    want = result_of(d2)
    assert got == want and got.row_count == 2 and got.more[1].affected_rows == 2
    assert not s.client.busy and not s.client.is_broken


def test_a_result_set_over_the_batch_size_or_split_by_reads_still_comes_as_events() -> None:
    s = logged_in()
    consumer = WholeConsumer()
    d = s.client.stream_query("SELECT id FROM t", consumer)
    s.received()
    rows = [[str(i).encode()] for i in range(ROW_BATCH + 1)]
    s.send(*result_set([ID], rows))
    assert consumer.wholes == [] and consumer.rows == [encode_text_row(r) for r in rows]
    assert result_of(d).row_count == ROW_BATCH + 1
    d = s.client.stream_query("SELECT id FROM t", consumer)
    s.received()
    data = s.server.send_many(result_set([ID], [[b"7"]]))
    s.send_bytes(data[:-3])  # the end is not all there yet: the events so far
    s.send_bytes(data[-3:])
    assert consumer.wholes == [] and result_of(d).row_count == 1


def test_a_failing_whole_consumer_fails_the_command_and_keeps_the_connection() -> None:
    s = logged_in()
    d = s.client.stream_query("SELECT id FROM t", WholeConsumer(fail_on_whole=True))
    s.received()
    s.send(*result_set([ID], [[b"1"], [b"2"]]))
    assert str(error_of(d, RuntimeError)) == "whole consumer bug"
    assert not s.client.busy and not s.client.is_broken
    d2 = s.client.query("SELECT 1")
    s.received()
    s.send(*result_set([ID], [[b"1"]]))
    assert result_of(d2).rows == [[b"1"]]


def test_pause_reading_holds_events_and_the_socket() -> None:
    s = logged_in(read_timeout=5.0)
    events: list[Any] = []

    def consumer(ev: Any) -> None:
        events.append(ev)
        if isinstance(ev, Row) and len(events) == 3:
            s.client.pause_reading()

    d = s.client.stream_query("SELECT id FROM t", consumer)
    s.received()
    s.send(*result_set([ID], [[b"1"], [b"2"], [b"3"]]))
    assert len(events) == 3  # start, column, first row; the rest is held
    assert s.transport.producerState == "paused"
    s.clock.advance(60)  # the read timeout does not run while the consumer holds the flow
    assert not s.client.is_broken and not d.called
    s.client.resume_reading()
    assert s.transport.producerState == "producing"
    assert [e.payload for e in events if isinstance(e, Row)] == [
        encode_text_row([b"1"]),
        encode_text_row([b"2"]),
        encode_text_row([b"3"]),
    ]
    assert result_of(d).row_count == 3
    assert s.client.producer is s.transport


def test_consumer_error_drains_the_reply_then_fails() -> None:
    s = logged_in()
    seen: list[Any] = []

    def consumer(ev: Any) -> None:
        seen.append(ev)
        if isinstance(ev, Row):
            raise RuntimeError("consumer bug")

    d = s.client.stream_query("SELECT id FROM t", consumer)
    s.received()
    s.send(*result_set([ID], [[b"1"], [b"2"]]))
    assert str(error_of(d, RuntimeError)) == "consumer bug"
    assert len(seen) == 3 and not s.client.busy and not s.client.is_broken


# -- prepared statements ---------------------------------------------------------------------


@both_modes
def test_prepare_execute_rebinds_types_only_when_they_change(deprecate_eof: bool) -> None:
    s = logged_in(deprecate_eof)
    d = s.client.prepare("SELECT id FROM t WHERE id = ? AND name = ?")
    assert s.received() == [ComStmtPrepare(b"SELECT id FROM t WHERE id = ? AND name = ?")]
    s.send(StmtPrepareOK(7, 1, 2), Column(PARAM), Column(PARAM), Column(ID))
    stmt = result_of(d)
    assert (stmt.statement_id, stmt.num_params, [c.name for c in stmt.columns]) == (7, 2, ["id"])

    def run(params: list[Any]) -> tuple[ComStmtExecute, Any]:
        d = s.client.execute(stmt, params)
        [cmd] = s.received()
        assert isinstance(cmd, ComStmtExecute)
        row = encode_binary_row([params[0]], column_specs([ID]))
        s.send(ResultSetStart(1), Column(ID), Row(row), ResultSetDone(AUTOCOMMIT))
        return cmd, result_of(d)

    cmd, r = run([5, "apple"])
    assert cmd.new_params_bound and cmd.param_types == ((ColumnType.LONGLONG, False), (0xFD, False))
    specs = tuple((ColumnType(t), u) for t, u in cmd.param_types)
    values = decode_execute_params(2, cmd.null_bitmap, specs, cmd.values)
    assert values == [5, b"apple"]
    assert r.rows == [[5]]
    cmd, r = run([6, "pear"])
    assert not cmd.new_params_bound  # same types: mysqld reuses the ones it has
    assert cmd.param_types == ((ColumnType.LONGLONG, False), (0xFD, False))  # from the cache
    assert r.rows == [[6]]
    cmd, _ = run([7, None])
    assert cmd.new_params_bound  # NULL has its own type
    specs = tuple((ColumnType(t), u) for t, u in cmd.param_types)
    assert decode_execute_params(2, cmd.null_bitmap, specs, cmd.values) == [7, None]


def test_execute_decodes_binary_rows_of_the_result_columns() -> None:
    s = logged_in()
    d = s.client.prepare("SELECT price, at FROM t")
    s.received()
    s.send(StmtPrepareOK(3, 2, 0), Column(PRICE), Column(WHEN))
    stmt = result_of(d)
    e = s.client.execute(stmt)
    [cmd] = s.received()
    assert cmd == ComStmtExecute(3)
    values = [Decimal("9.99"), DateTimeValue(2000, 1, 2, 3, 4, 5, 6)]
    row = encode_binary_row(values, column_specs([PRICE, WHEN]))
    assert decode_binary_row(row, column_specs([PRICE, WHEN])) == values
    s.send(ResultSetStart(2), Column(PRICE), Column(WHEN), Row(row), ResultSetDone())
    assert result_of(e).rows == [values]


def test_execute_with_the_wrong_number_of_values_is_1210_and_sends_nothing() -> None:
    s = logged_in()
    d = s.client.prepare("SELECT ?")
    s.received()
    s.send(StmtPrepareOK(1, 1, 1), Column(PARAM), Column(PARAM))
    stmt = result_of(d)
    err = error_of(s.client.execute(stmt, []), MySQLError)
    assert err.code == 1210 and "1 parameters" in err.message
    assert s.transport.value() == b""  # type: ignore[no-untyped-call]  # Twisted: unannotated


def test_failed_execute_rebinds_next_time() -> None:
    s = logged_in()
    d = s.client.prepare("INSERT INTO t VALUES (?)")
    s.received()
    s.send(StmtPrepareOK(1, 0, 1), Column(PARAM))
    stmt = result_of(d)
    e = s.client.execute(stmt, [1])
    s.received()
    s.send(Err(1062, "Duplicate entry '1' for key 'PRIMARY'", "23000"))
    assert error_of(e, MySQLError).code == 1062
    e = s.client.execute(stmt, [2])
    [cmd] = s.received()
    assert cmd.new_params_bound  # type: ignore[union-attr]
    s.send(Ok(affected_rows=1))
    assert result_of(e).affected_rows == 1


def test_close_statement_needs_no_reply() -> None:
    s = logged_in()
    d = s.client.prepare("SELECT 1")
    s.received()
    s.send(StmtPrepareOK(9, 1, 0), Column(ID))
    stmt = result_of(d)
    c = s.client.close_statement(stmt)
    assert s.received() == [ComStmtClose(9)]
    assert result_of(c) is None and stmt.closed and not s.client.busy


# -- the other commands ----------------------------------------------------------------------


def test_reset_connection_restores_the_charset() -> None:
    s = logged_in(charset="latin1")
    d = s.client.reset_connection()
    assert s.received() == [ComResetConnection()]
    s.send(Ok(status=AUTOCOMMIT))
    assert s.received() == [ComQuery(b"SET NAMES latin1")]
    assert not d.called
    s.send(Ok(status=AUTOCOMMIT))
    assert result_of(d) is None


def test_failed_reset_sends_no_set_names() -> None:
    s = logged_in()
    d = s.client.reset_connection()
    s.received()
    s.send(Err(1047, "Unknown command"))
    assert error_of(d, MySQLError).code == 1047
    assert s.transport.value() == b""  # type: ignore[no-untyped-call]  # Twisted: unannotated


def test_ping_and_init_db() -> None:
    s = logged_in()
    p = s.client.ping()
    assert s.received() == [ComPing()]
    s.send(Ok())
    i = s.client.init_db("shop")
    assert s.received() == [ComInitDB("shop")]
    s.send(Err(1049, "Unknown database 'shop'", "42000"))
    assert result_of(p) is None
    assert error_of(i, MySQLError).code == 1049


def test_commands_queue_in_order_and_the_queue_is_bounded() -> None:
    s = logged_in(max_queued=2)
    first = s.client.query("SELECT 1")
    second = s.client.query("SELECT 2")
    third = s.client.ping()
    refused = s.client.ping()
    err = error_of(refused, LocalProtocolError)
    assert "max_queued=2" in str(err)
    assert s.received() == [ComQuery(b"SELECT 1")]  # one command at a time
    s.send(Ok(affected_rows=1))
    assert result_of(first).affected_rows == 1
    assert s.received() == [ComQuery(b"SELECT 2")]
    s.send(Ok(affected_rows=2))
    assert s.received() == [ComPing()]
    s.send(Ok())
    assert result_of(second).affected_rows == 2 and result_of(third) is None


def test_a_callback_can_issue_the_next_command() -> None:
    s = logged_in()
    chained: list[Any] = []
    d = s.client.query("SELECT 1")
    d.addCallback(lambda _: chained.append(s.client.query("SELECT 2")))
    s.received()
    s.send(Ok())
    assert s.received() == [ComQuery(b"SELECT 2")]
    s.send(Ok(affected_rows=4))
    assert result_of(chained[0]).affected_rows == 4


# -- timeouts, loss, cancellation, closing ---------------------------------------------------


def test_read_timeout_closes_the_connection_with_2013() -> None:
    s = logged_in(read_timeout=0.5)
    d = s.client.query("SELECT SLEEP(5)")
    queued = s.client.ping()
    s.received()
    s.clock.advance(0.3)
    s.send(ResultSetStart(1))  # data resets the timer
    s.clock.advance(0.3)
    assert not d.called
    s.clock.advance(0.3)
    err = error_of(d, MySQLError)
    assert err.code == 2013 and err.message.startswith("Lost connection to MySQL server")
    assert "read_timeout" in err.message
    assert s.client.is_broken and s.transport.aborted
    assert error_of(queued, MySQLError).code == 2006
    assert error_of(s.client.ping(), MySQLError).code == 2006


def test_no_read_timeout_while_idle() -> None:
    s = logged_in(read_timeout=0.5)
    s.clock.advance(100)
    assert not s.client.is_broken and not s.clock.getDelayedCalls()


def test_connection_lost_mid_command_is_2013_queued_are_2006() -> None:
    s = logged_in()
    d = s.client.query("SELECT 1")
    queued = s.client.query("SELECT 2")
    s.received()
    s.send(ResultSetStart(1), Column(ID))
    s.lose()
    err = error_of(d, MySQLError)
    assert (err.code, err.sqlstate) == (2013, "HY000")
    assert err.message.startswith("Lost connection to MySQL server during query")
    assert error_of(queued, MySQLError).code == 2006
    assert s.client.is_broken
    assert result_of(s.client.when_closed()) is None


def test_connection_lost_while_idle_and_unsolicited_error() -> None:
    s = logged_in()
    s.send(Err(1927, "Connection was killed", "70100"))
    assert s.client.is_broken
    err = error_of(s.client.query("SELECT 1"), MySQLError)
    assert err.code == 2006 and "Connection was killed" in err.message

    s = logged_in()
    s.lose()
    assert s.client.is_broken
    assert error_of(s.client.ping(), MySQLError).code == 2006


def test_cancel_a_queued_command_drops_it() -> None:
    s = logged_in()
    first = s.client.query("SELECT 1")
    second = s.client.query("SELECT 2")
    second.cancel()
    error_of(second, CancelledError)
    s.received()
    s.send(Ok())
    assert result_of(first) is not None
    assert s.received() == [] and not s.client.busy


def test_cancel_a_running_command_closes_the_connection() -> None:
    s = logged_in()
    d = s.client.query("SELECT SLEEP(100)")
    s.received()
    d.cancel()
    error_of(d, CancelledError)
    assert s.client.is_broken and s.transport.aborted


def test_close_when_idle_sends_quit() -> None:
    s = logged_in()
    d = s.client.close()
    assert s.received() == [ComQuit(), CLOSED]
    assert s.transport.disconnecting and not s.transport.aborted
    s.lose()
    assert result_of(d) is None
    assert error_of(s.client.ping(), MySQLError).code == 2006


def test_close_while_busy_fails_the_command() -> None:
    s = logged_in()
    q = s.client.query("SELECT 1")
    s.received()
    s.client.close()
    assert error_of(q, MySQLError).code == 2013 and s.transport.aborted


def test_quit_runs_after_the_queue() -> None:
    s = logged_in()
    q = s.client.query("SELECT 1")
    done = s.client.quit()
    assert s.received() == [ComQuery(b"SELECT 1")]
    s.send(Ok())
    assert result_of(q) is not None
    assert s.received() == [ComQuit(), CLOSED]
    fired: list[Any] = []
    done.addBoth(fired.append)
    assert s.transport.disconnecting and not fired
    s.lose()
    assert fired == [None]


def test_a_handler_bug_fails_the_command_and_closes_the_connection() -> None:
    class Buggy(SimpleHandler):
        def event(self, ev: Any) -> None:
            raise KeyError("oops")

    s = logged_in()
    d = s.proto.submit(Buggy(ComPing()))
    s.received()
    s.send(Ok())
    err = error_of(d, MySQLError)
    assert err.code == 2000 and "KeyError" in err.message
    assert s.client.is_broken and s.transport.aborted


def test_execute_relays_parameters_a_server_decoded_as_they_were_sent() -> None:
    s = logged_in()
    d = s.client.prepare("SELECT id FROM t WHERE id = ? AND name = ?")
    s.received()
    s.send(StmtPrepareOK(7, 1, 2), Column(PARAM), Column(PARAM), Column(ID))
    stmt = result_of(d)
    # As a server decoded them: the client sent an unsigned TINY and a BLOB.
    types = ((ColumnType.TINY, True), (ColumnType.BLOB, False))
    params = decode_execute_params(2, b"\x00", types, b"\xff\x02hi")
    assert params == [255, b"hi"]
    s.client.execute(stmt, params)
    [cmd] = s.received()
    assert isinstance(cmd, ComStmtExecute)
    assert (cmd.null_bitmap, cmd.param_types, cmd.values) == (b"\x00", types, b"\xff\x02hi")
    assert cmd.new_params_bound
    s.send(ResultSetStart(1), Column(ID), ResultSetDone(AUTOCOMMIT))
    # A plain list is encoded from the values (the types chosen from them).
    s.client.execute(stmt, [255, b"hi"])
    [cmd] = s.received()
    assert isinstance(cmd, ComStmtExecute)
    assert cmd.new_params_bound  # other types than last time: bound again
    assert cmd.param_types == ((ColumnType.LONGLONG, False), (ColumnType.BLOB, False))


def test_stream_query_notify_calls_done_with_the_summary_or_a_failure() -> None:
    s = logged_in()
    events: list[Any] = []
    outcomes: list[Any] = []
    s.client.stream_query_notify("SELECT id FROM t", events.append, outcomes.append)
    assert s.received() == [ComQuery(b"SELECT id FROM t")]
    s.send(*result_set([ID], [[b"1"], [b"2"]]))
    assert [type(e).__name__ for e in events] == [
        "ResultSetStart",
        "Column",
        "Row",
        "Row",
        "ResultSetDone",
    ]
    assert len(outcomes) == 1 and outcomes[0].row_count == 2 and not s.client.busy
    # An ERR fails that command only, with the same error as stream_query's Deferred.
    s.client.stream_query_notify("SELECT nope", events.append, outcomes.append)
    s.received()
    s.send(Err(1054, "Unknown column 'nope'", "42S22"))
    failed = outcomes[1]
    assert isinstance(failed, Failure) and isinstance(failed.value, MySQLError)
    assert failed.value.code == 1054
    # Lost mid-reply: 2013, and a later command is refused at once with 2006.
    s.client.stream_query_notify("SELECT id FROM t", events.append, outcomes.append)
    s.received()
    s.send(ResultSetStart(1))
    s.lose()
    assert outcomes[2].value.code == 2013
    s.client.stream_query_notify("SELECT 1", events.append, outcomes.append)
    assert outcomes[3].value.code == 2006 and len(outcomes) == 4


def test_notify_without_summary_calls_done_with_none_or_a_failure() -> None:
    s = logged_in()
    consumer = WholeConsumer()
    outcomes: list[Any] = []
    s.client.stream_query_notify("SELECT id FROM t", consumer, outcomes.append, summary=False)
    s.received()
    s.send(*result_set([ID], [[b"1"], [b"2"]]))
    assert outcomes == [None] and consumer.rows == [b"\x011", b"\x012"]
    s.client.stream_query_notify("SELECT nope", consumer, outcomes.append, summary=False)
    s.received()
    s.send(Err(1054, "Unknown column 'nope'", "42S22"))
    failed = outcomes[1]
    assert isinstance(failed, Failure) and isinstance(failed.value, MySQLError)
    assert failed.value.code == 1054
    # The same for an execute, and the default still hands over the summary.
    d = s.client.prepare("SELECT id FROM t WHERE id = ?")
    s.received()
    s.send(StmtPrepareOK(1, 1, 1), Column(ID), Column(ID))
    stmt = result_of(d)
    s.client.stream_execute_notify(stmt, [1], consumer, outcomes.append, summary=False)
    s.received()
    s.send(ResultSetStart(1), Column(ID), ResultSetDone(AUTOCOMMIT))
    s.client.stream_execute_notify(stmt, [2], consumer, outcomes.append)
    s.received()
    s.send(ResultSetStart(1), Column(ID), ResultSetDone(AUTOCOMMIT))
    assert outcomes[2] is None and outcomes[3].columns == [ID] and not s.client.busy


def test_stream_query_notify_done_raising_is_logged_and_the_connection_kept() -> None:
    s = logged_in()

    def done(result: Any) -> None:
        raise RuntimeError("bug in done")

    s.client.stream_query_notify("SELECT id FROM t", lambda ev: None, done)
    s.received()
    s.send(*result_set([ID], [[b"1"]]))
    assert not s.client.is_broken and not s.client.busy
    d = s.client.ping()
    s.received()
    s.send(Ok())
    assert result_of(d) is None

"""Client and server over iosim: operations, concurrency, deadlines, cancellation, health."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from tests.unit.tabletrpc.fakes import FakeTabletService, Pair, result_of, text_row
from vtwist.interfaces import IRowSink, ITabletRPCRequest, ITabletService
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.output import reading
from vtwist.protocols.tabletrpc_codec import (
    Message,
    encode_frame,
    encode_request,
)
from vtwist.protocols.tabletrpc_framing import COALESCE_INFLIGHT
from vtwist.protocols.tabletrpc_ops import (
    ExecuteArgs,
    KillArgs,
    QueryResult,
    ReserveArgs,
    ReserveResult,
)
from vtwist.protocols.tabletrpc_requests import RequestContext, RowSink
from vtwist.protocols.tabletrpc_server import TabletRPCServerFactory


def failure_of(d: Deferred[Any]) -> MySQLError:
    with pytest.raises(MySQLError) as info:
        result_of(d)
    return info.value


def test_providers_verify() -> None:
    p = Pair()
    assert verifyObject(ITabletService, p.service)
    assert verifyObject(ITabletRPCRequest, RequestContext(1, "execute", None, "peer"))
    d = p.client.stream_execute("rows 1", lambda c: None)
    p.flush()
    assert result_of(d).info == "streamed"
    sink = p.service.producers[0].sink
    assert isinstance(sink, RowSink)
    assert verifyObject(IRowSink, sink)


def test_hello_and_tcp_nodelay() -> None:
    p = Pair()
    assert p.client.ready
    assert p.client.peer_hello is not None
    assert p.client.peer_hello.info["role"] == "tablet"
    assert p.server.peer_hello is not None
    assert p.server.peer_hello.info["role"] == "gate"
    assert p.client.transport.getTcpNoDelay()  # type: ignore[union-attr]
    assert p.server.transport.getTcpNoDelay()  # type: ignore[union-attr]


def test_every_operation_round_trips() -> None:
    p = Pair()
    c = p.client
    res = c.execute("rows 2", {"a": 1, "b": [1, "x", None]}, target="ks@primary", max_rows=10)
    tx = c.begin(target="ks@primary")
    p.flush()
    result = result_of(res)
    assert isinstance(result, QueryResult)
    assert result.fields and result.rows == [text_row("0"), text_row("1")]
    assert result.status_flags == 2
    tx_id = result_of(tx)
    assert tx_id == 101
    ops: list[Deferred[Any]] = [
        c.execute("insert", transaction_id=tx_id, options={"workload": "oltp"}),
        c.commit(tx_id),
        c.rollback(5),
        c.reserve(["set @x = 1"], begin=True),
        c.release(reserved_id=7),
        c.kill(transaction_id=42, connection=True),
        c.kill(transaction_id=41),
        c.begin(reserved_id=7),
    ]
    p.flush()
    ok, commit, rollback, reserve, release, kill1, kill2, begin = (result_of(d) for d in ops)
    assert ok == QueryResult([], [], 1, 7, 1, 0, "insert")
    assert (commit, rollback, release, kill1, kill2, begin) == (0, 0, None, True, False, 7)
    assert reserve == ReserveResult(102, 102)
    executed = [a for op, a in p.service.calls if op == "execute"]
    assert executed[0] == ExecuteArgs(
        "rows 2", {"a": 1, "b": [1, "x", None]}, "ks@primary", 0, 0, 10, None, 0
    )
    assert executed[1].transaction_id == tx_id
    assert executed[1].options == {"workload": "oltp"}
    assert ("reserve", ReserveArgs(None, ["set @x = 1"], True, 0, None)) in p.service.calls
    assert ("kill", KillArgs(0, 42, 0, True, None)) in p.service.calls


def test_generic_call_accepts_args_tuples() -> None:
    p = Pair()
    d = p.client.call("execute", ExecuteArgs("rows 1", max_rows=3))
    p.flush()
    assert len(result_of(d).rows) == 1
    assert p.service.calls[-1][1].max_rows == 3


def test_500_interleaved_requests_on_one_connection() -> None:
    rng = random.Random(4)
    p = Pair()
    delays = [rng.choice([0.001, 0.01, 0.1, 0.5, 1.0, 2.0]) for _ in range(500)]
    calls = [p.client.execute(f"sleep {s} tag{i}") for i, s in enumerate(delays)]
    p.flush()
    assert p.client.inflight == 500
    assert len(p.server.inflight) == 500
    order: list[int] = []

    def record(result: QueryResult, i: int) -> QueryResult:
        order.append(i)
        return result

    for i, d in enumerate(calls):
        d.addCallback(record, i)
    for _ in range(250):
        p.advance(0.01)
    for i, d in enumerate(calls):
        assert result_of(d).rows == [text_row(f"tag{i}")]
    # Replies came back as the service finished, not in request order.
    assert order != sorted(order)
    assert sorted(order) == list(range(500))
    assert p.client.inflight == 0
    assert p.server.inflight == {}


def test_writes_of_one_turn_coalesce_into_one_transport_write() -> None:
    p = Pair()
    writes: list[bytes] = []
    transport = p.client.transport
    assert transport is not None
    real_write = transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    transport.write = write  # type: ignore[method-assign]
    calls = [p.client.execute(f"rows {i}") for i in range(50)]
    assert writes == []  # nothing sent before the end of the turn
    p.flush()
    assert len(writes) == 1
    assert all(len(result_of(d).rows) == i for i, d in enumerate(calls))


def _record_writes(proto: Any) -> list[bytes]:
    writes: list[bytes] = []
    transport = proto.transport
    assert transport is not None
    real_write = transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        real_write(data)

    transport.write = write
    return writes


def test_requests_leave_when_the_read_that_made_them_returns_while_the_tablet_has_little() -> None:
    # A gate makes one request per client command, inside that client's read: it leaves
    # when the read is handled, not after every other client of the turn was read (the
    # tablet would idle meanwhile and the two processes would take turns).
    p = Pair()
    writes = _record_writes(p.client)
    calls = []
    for i in range(4):
        reading.enter()  # one client's read
        calls.append(p.client.execute(f"rows {i}"))
        assert len(writes) == i  # held until the read is handled...
        reading.leave()
        assert len(writes) == i + 1  # ...then it leaves (nothing answered yet)
    # More than COALESCE_INFLIGHT unanswered: the tablet has work; wait for the turn's end.
    assert COALESCE_INFLIGHT == 3
    for i in (4, 5):
        reading.enter()
        calls.append(p.client.execute(f"rows {i}"))
        reading.leave()
    assert len(writes) == 4
    p.flush()
    assert len(writes) == 5  # the two held requests in one write
    assert [len(result_of(d).rows) for d in calls] == list(range(6))
    # Nothing in flight any more: the next one leaves with its read again.
    reading.enter()
    last = p.client.execute("rows 2")
    reading.leave()
    assert len(writes) == 6
    p.flush()
    assert len(result_of(last).rows) == 2


def test_replies_wait_for_the_turns_end_while_more_than_a_few_requests_run() -> None:
    p = Pair()
    writes = _record_writes(p.server)
    calls = [p.client.execute(f"sleep {k} t{k}") for k in range(1, 6)]
    p.flush()
    before = len(writes)
    assert p.server.coalescing()  # 5 running, more than COALESCE_INFLIGHT
    reading.enter()  # the tablet reads mysqld's answer to the first statement
    p.clock.advance(1)  # (a test Clock also runs the end-of-turn callLater(0) in here)
    assert len(writes) == before + 1  # 4 still running: it went with the turn's end
    reading.leave()
    reading.enter()
    p.clock.advance(1)  # the second answer: 3 still running
    assert len(writes) == before + 1  # held until the read is handled...
    reading.leave()
    assert len(writes) == before + 2  # ...then it leaves
    p.advance(3)
    assert [result_of(d).rows for d in calls] == [[text_row(f"t{k}")] for k in range(1, 6)]


def test_service_errors_reach_the_caller() -> None:
    p = Pair()
    mysql_err = p.client.execute("error 1062")
    boom = p.client.execute("boom")
    bad = p.client.execute("bad_result")
    p.flush()
    e = failure_of(mysql_err)
    assert (e.code, e.sqlstate, e.message) == (1062, "HY000", "fake error 1062")
    e = failure_of(boom)
    assert e.code == ErrorCode.UNKNOWN_ERROR and "see the tablet log" in e.message
    assert failure_of(bad).code == ErrorCode.UNKNOWN_ERROR
    ok = p.client.execute("rows 1")  # the connection is still fine
    p.flush()
    assert result_of(ok).rows == [text_row("0")]


def test_unknown_op_and_bad_args_get_error_replies() -> None:
    p = Pair()
    assert failure_of(p.client.call("teleport", {})).code == 1235  # refused locally
    # Bypass the client's checks to see what the server says.
    p.client.write_frame(encode_request(900, "teleport", {}, 0))
    p.client.write_frame(encode_request(901, "execute", {"sql": 7}, 0))
    seen: list[Any] = []
    real = p.client.message_received

    def message_received(msg: Message) -> None:
        seen.append(msg)
        real(msg)

    p.client.message_received = message_received  # type: ignore[method-assign]
    p.flush()
    assert [(m.request_id, m.code) for m in seen] == [(900, 1235), (901, 1210)]
    assert p.client.ready


def test_server_max_inflight_gives_a_clean_error() -> None:
    p = Pair(server_kw={"max_inflight": 5})
    calls = [p.client.execute(f"sleep 1 t{i}") for i in range(6)]
    p.flush()
    e = failure_of(calls[5])
    assert e.code == ErrorCode.TOO_MANY_USER_CONNECTIONS and "max_inflight" in e.message
    p.advance(1)
    assert all(result_of(d).rows for d in calls[:5])


def test_client_max_inflight_fails_at_once() -> None:
    p = Pair(client_kw={"max_inflight": 2})
    p.client.execute("sleep 1 a")
    p.client.execute("sleep 1 b")
    assert failure_of(p.client.execute("rows 1")).code == ErrorCode.TOO_MANY_USER_CONNECTIONS


def test_deadline_expiry_fails_the_call_and_cancels_on_the_tablet() -> None:
    p = Pair()
    d = p.client.execute("sleep 10 slow", deadline=p.clock.seconds() + 1.0)
    p.flush()
    p.advance(0.95)
    assert not d.called
    for _ in range(2):
        p.advance(0.1)
    e = failure_of(d)
    assert (e.code, e.sqlstate) == (1317, "70100")
    assert "deadline" in e.message and "raise the query timeout" in e.message
    assert [reason for _, reason in p.service.cancel_hooks] in (["cancelled"], ["deadline"])
    assert p.service.cancelled_deferreds == ["slow"]
    assert p.server.inflight == {}
    p.advance(10)  # the service's timer was cancelled: nothing fires late


def deadline_timers(clock: Any, peer: Any) -> list[Any]:
    """The delayed calls of ``peer``'s deadline timer."""
    return [
        c for c in clock.getDelayedCalls() if getattr(c.func, "__self__", None) is peer._deadlines
    ]


def test_each_deadline_fires_on_time_with_one_timer_for_all() -> None:
    p = Pair()
    # Never flushed to the tablet: only the client's own deadline timer can end them.
    late = p.client.execute("sleep 50 late", deadline=p.clock.seconds() + 5.0)
    early = p.client.execute("sleep 50 early", deadline=p.clock.seconds() + 1.0)  # re-arms
    mid = p.client.execute("sleep 50 mid", deadline=p.clock.seconds() + 3.0)
    timers = deadline_timers(p.clock, p.client)
    assert len(timers) == 1  # one timer, not one per call
    p.clock.advance(0.95)
    assert not early.called
    p.clock.advance(0.1)
    assert failure_of(early).code == 1317 and not mid.called and not late.called
    p.clock.advance(1.8)
    assert not mid.called
    p.clock.advance(0.2)
    assert failure_of(mid).code == 1317 and not late.called
    p.clock.advance(1.95)
    assert failure_of(late).code == 1317
    assert not deadline_timers(p.clock, p.client)


def test_no_deadline_timer_is_left_once_nothing_is_pending() -> None:
    p = Pair()
    d = p.client.execute("rows 1", deadline=p.clock.seconds() + 5.0)
    assert deadline_timers(p.clock, p.client)
    p.flush()
    assert result_of(d).rows
    assert not deadline_timers(p.clock, p.client)


def test_server_enforces_its_own_deadline() -> None:
    # The tablet caps deadlines at max_timeout: it stops the query before the gate would.
    p = Pair(server_kw={"max_timeout": 1.0})
    d = p.client.execute("sleep 10 slow", deadline=p.clock.seconds() + 60)
    p.flush()
    p.advance(0.95)
    assert not d.called
    p.advance(0.1)
    e = failure_of(d)
    assert e.code == 1317 and "deadline (1 s)" in e.message
    assert p.service.cancel_hooks == [(1, "deadline")]


def test_the_tablet_times_requests_with_one_timer_for_all() -> None:
    p = Pair(server_kw={"max_timeout": 3.0})
    a = p.client.execute("sleep 50 a", deadline=p.clock.seconds() + 60)  # the tablet: 3 s
    b = p.client.execute("sleep 50 b", deadline=p.clock.seconds() + 1.0)  # 1 s: re-arms
    p.flush()

    def tablet_timers() -> list[Any]:
        return deadline_timers(p.clock, p.server)

    assert len(tablet_timers()) == 1  # one timer, not one per request
    p.advance(0.95)
    assert p.service.cancelled_deferreds == []
    p.advance(0.1)
    assert p.service.cancelled_deferreds == ["b"] and failure_of(b).code == 1317
    p.advance(1.8)
    assert not a.called
    p.advance(0.2)
    assert p.service.cancelled_deferreds == ["b", "a"] and failure_of(a).code == 1317
    assert p.server.inflight == {} and tablet_timers() == []


def test_the_tablet_keeps_no_deadline_timer_once_nothing_runs() -> None:
    p = Pair()
    d = p.client.execute("rows 2")
    p.flush()
    assert result_of(d).rows
    assert not deadline_timers(p.clock, p.server)


def test_passed_deadline_fails_without_sending() -> None:
    p = Pair()
    e = failure_of(p.client.execute("rows 1", deadline=p.clock.seconds() - 1))
    assert e.code == 1317
    p.flush()
    assert p.service.calls == []


def test_explicit_cancel() -> None:
    p = Pair()
    d = p.client.execute("sleep 5 c")
    p.flush()
    p.client.cancel(d)
    e = failure_of(d)
    assert e.code == 1317 and "cancelled by the caller" in e.message
    p.flush()
    assert p.service.cancel_hooks == [(1, "cancelled")]
    assert p.service.cancelled_deferreds == ["c"]
    assert p.server.inflight == {}


def test_kill_of_a_request_id() -> None:
    p = Pair()
    victim = p.client.execute("sleep 5 v")
    [rid] = p.client.pending
    killer = p.client.kill(request_id=rid)
    p.flush()
    assert result_of(killer) is True
    e = failure_of(victim)
    assert e.code == 1317 and "killed" in e.message
    assert p.service.cancel_hooks == [(rid, "killed")]
    again = p.client.kill(request_id=rid)
    p.flush()
    assert result_of(again) is False


def test_cancel_hook_registered_late_runs_at_once() -> None:
    ctx = RequestContext(1, "execute", None, "peer")
    ctx._cancel("deadline")
    seen: list[str] = []
    ctx.on_cancel(seen.append)
    assert seen == ["deadline"]


def test_health_pushes_arrive_in_order_until_cancelled() -> None:
    p = Pair()
    snapshots: list[dict[str, Any]] = []
    d = p.client.stream_health(snapshots.append)
    p.flush()
    for seq in range(1, 4):
        p.service.set_health(seq=seq, serving=seq != 2)
    p.flush()
    assert [(s["seq"], s["serving"]) for s in snapshots] == [
        (0, True),
        (1, True),
        (2, False),
        (3, True),
    ]
    assert p.service.health_listeners == 1
    p.advance(3600 * 2)  # a subscription has no deadline
    assert not d.called
    # Meanwhile the unchanged snapshot came again (the keepalive).
    assert len(snapshots) > 4 and all(s["seq"] == 3 for s in snapshots[4:])
    seen = len(snapshots)
    d.cancel()
    p.flush()
    assert p.service.health_listeners == 0
    p.service.set_health(seq=9)
    p.advance(5)  # nothing more: neither changes nor keepalives
    p.flush()
    assert len(snapshots) == seen
    assert failure_of(d).code == 1317


def test_health_keepalive_repeats_the_snapshot_and_is_announced() -> None:
    p = Pair()
    assert p.client.health_keepalive == 1.0
    snapshots: list[dict[str, Any]] = []
    p.client.stream_health(snapshots.append)
    p.flush()
    for _ in range(3):
        p.advance(1.0)
        p.flush()
    assert [s["seq"] for s in snapshots] == [0, 0, 0, 0]


def test_connection_loss_fails_pending_calls_and_cancels_on_the_tablet() -> None:
    p = Pair()
    calls = [p.client.execute(f"sleep 5 l{i}") for i in range(3)]
    health = p.client.stream_health(lambda s: None)
    p.flush()
    closed = p.client.when_closed()
    p.server.transport.loseConnection()  # type: ignore[union-attr]
    p.flush()
    pending: list[Deferred[Any]] = [*calls, health]
    for d in pending:
        e = failure_of(d)
        assert e.code == ErrorCode.CR_SERVER_LOST and "may or may not have run" in e.message
    assert result_of(closed) is None
    assert sorted(reason for _, reason in p.service.cancel_hooks) == ["connection lost"] * 3
    assert p.service.health_listeners == 0
    e = failure_of(p.client.execute("rows 1"))
    assert e.code == ErrorCode.CR_SERVER_GONE_ERROR
    assert failure_of(p.client.when_ready()).code == ErrorCode.CR_SERVER_GONE_ERROR


def test_client_close() -> None:
    p = Pair()
    d = p.client.execute("sleep 5 x")
    closed = p.client.close()
    p.flush()
    assert result_of(closed) is None
    assert failure_of(d).code == ErrorCode.CR_SERVER_LOST
    assert p.server.inflight == {}


@pytest.mark.parametrize(
    "kw",
    [
        {"max_inflight": 0},
        {"max_queued_bytes": 0},
        {"stream_window": 0},
        {"default_timeout": 0},
        {"max_frame_size": 10},
        {"max_frame_size": 4096, "stream_chunk_bytes": 4096},
    ],
)
def test_server_bounds_are_validated(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TabletRPCServerFactory(FakeTabletService(Clock()), Clock(), **kw)


def test_unsendable_health_snapshot_is_dropped() -> None:
    p = Pair()
    snapshots: list[dict[str, Any]] = []
    p.client.stream_health(snapshots.append)
    p.flush()
    [listener] = p.service._listeners
    not_str_keys: Any = {1: "not a str key"}  # deliberately not the Mapping[str, Any] it takes
    listener(not_str_keys)
    p.service.set_health(seq=5)
    p.flush()
    assert [s["seq"] for s in snapshots] == [0, 5]


def test_malformed_credit_fails_that_stream_only() -> None:
    p = Pair(client_kw={"stream_window": 1})
    d = p.client.stream_execute("rows 1000", lambda c: Deferred())
    p.flush()
    [rid] = p.client.pending
    p.client.write_frame(encode_frame(b"\x93\x03" + bytes([rid]) + b"\x00"))  # zero credit
    p.flush()
    e = failure_of(d)
    assert e.code == ErrorCode.MALFORMED_PACKET
    assert p.service.producers[0].stopped
    ok = p.client.execute("rows 1")
    p.flush()
    assert result_of(ok).rows

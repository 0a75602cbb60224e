"""Failover buffering: primary-bound statements wait for a new primary, within bounds."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from tests.unit.gate.fakes import Cluster, FakeTablet, RecordingSink, finished, tablet
from vtwist.gate.buffer import BufferSettings
from vtwist.gate.gate import GateSettings
from vtwist.gate.session import GateSession
from vtwist.interfaces import ITabletRPCRequest
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_ops import ExecuteArgs


class ReadOnlyTablet(FakeTablet):
    """A primary being demoted: writes get ``refusal`` (ERROR 1290), reads run."""

    refusal = MySQLError(ErrorCode.OPTION_PREVENTS_STATEMENT, "--read-only is set")

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Any:
        if not args.sql.lower().startswith("select"):
            self.calls.append(("execute", args))
            raise self.refusal
        return super().execute(request, args)


def cluster(readonly: tuple[str, ...] = (), **buffer: Any) -> Cluster:
    c = Cluster(settings=GateSettings(buffer=BufferSettings(**buffer)))
    for alias in readonly:
        c.services[alias] = ReadOnlyTablet(alias)
    c.add(
        tablet("zone1-100", ttype="primary"),
        tablet("zone1-101", ttype="replica"),
        tablet("zone1-102", ttype="replica"),
    )
    c.serve("zone1-100", "primary", primary_term=1)
    return c


def start(c: Cluster, s: GateSession, sql: str) -> tuple[RecordingSink, Deferred[None]]:
    """Send ``sql`` without requiring it to finish."""
    sink = RecordingSink()
    d = finished(s.query(sql.encode(), sink), sink)
    c.flush()
    return sink, d


def promote(c: Cluster, alias: str = "zone1-101", term: int = 2) -> None:
    c.serve(alias, "primary", primary_term=term)
    c.flush()


def value(c: Cluster, name: str, **labels: str) -> float:
    got = c.gate.metrics.registry.get_sample_value(name, labels)
    return got or 0.0


def buffered(c: Cluster) -> float:
    return value(c, "vtgate_buffer_buffered_total", keyspace="commerce", shard="0")


def failed(c: Cluster, reason: str) -> float:
    return value(c, "vtgate_buffer_failed_total", keyspace="commerce", shard="0", reason=reason)


def waiting(c: Cluster) -> float:
    return value(c, "vtgate_buffer_statements")


def test_statements_wait_for_the_new_primary_and_succeed() -> None:
    c = cluster()
    s1, s2 = c.session(), c.session()
    c.serve("zone1-100", "primary", serving=False, primary_term=1)  # demoted
    sink1, d1 = start(c, s1, "insert into t values (1)")
    c.links["zone1-100"].set_connected(False)  # and then gone
    sink2, d2 = start(c, s2, "select * from t")  # a primary-bound read waits too
    assert not d1.called and not d2.called
    assert buffered(c) == 2 and waiting(c) == 2
    assert [(ks, sh, n) for ks, sh, _, n, _ in c.gate.buffer.buffering()] == [("commerce", "0", 2)]
    c.clock.advance(5)
    promote(c)
    assert d1.called and d2.called
    assert sink1.events == [("ok", 1, 7, 0x2)]
    assert sink2.table == [["zone1-101"]]
    assert c.services["zone1-101"].sql() == ["insert into t values (1)", "select * from t"]
    assert c.services["zone1-100"].sql() == []
    assert value(c, "vtgate_buffer_drained_total", keyspace="commerce", shard="0") == 2
    assert waiting(c) == 0 and c.gate.buffer.buffering() == []
    assert c.clock.getDelayedCalls() == []  # no timer left behind
    # Buffering is over: the next write goes straight to the new primary.
    assert c.run(s1, "insert into t values (2)").error_code is None
    assert buffered(c) == 2


def test_window_expiry_gives_a_clear_error() -> None:
    c = cluster(window=5.0, max_failover_duration=20.0)
    s = c.session()
    c.serve("zone1-100", "primary", serving=False)
    sink, d = start(c, s, "update t set a = 1")
    c.clock.advance(4.9)
    assert not d.called
    c.clock.advance(0.1)
    assert d.called
    code, message = sink.events[-1][1:]
    assert code == 1105
    assert "no primary is serving commerce/0" in message
    assert "failover may be in progress" in message
    assert "buffer.window (5s)" in message
    assert "retry the statement" in message and "SHOW VITESS_TABLETS" in message
    assert failed(c, "window") == 1 and waiting(c) == 0
    # The shard stays in buffering mode (no primary yet); a new primary ends it.
    assert len(c.gate.buffer.buffering()) == 1
    promote(c)
    assert c.gate.buffer.buffering() == []


def test_size_bound_fails_at_once() -> None:
    c = cluster(size=1)
    s1, s2 = c.session(), c.session()
    c.serve("zone1-100", "primary", serving=False)
    _, d1 = start(c, s1, "insert into t values (1)")
    sink2, d2 = start(c, s2, "insert into t values (2)")
    assert not d1.called
    assert d2.called and sink2.error_code == 1105
    assert "buffer.size 1 statements" in sink2.events[-1][2]
    assert failed(c, "size") == 1 and buffered(c) == 1
    promote(c)
    assert d1.called and c.services["zone1-101"].sql() == ["insert into t values (1)"]


def test_max_failover_duration_fails_everything_until_a_primary_serves() -> None:
    c = cluster(window=10.0, max_failover_duration=12.0)
    a, b, late = c.session(), c.session(), c.session()
    c.serve("zone1-100", "primary", serving=False)
    sink_a, d_a = start(c, a, "insert into t values (1)")
    assert not d_a.called
    c.clock.advance(5)
    sink_b, d_b = start(c, b, "insert into t values (2)")
    c.clock.advance(5)  # t=10: a's window is over
    assert sink_a.error_code == 1105 and failed(c, "window") == 1
    assert not d_b.called
    c.clock.advance(2)  # t=12: the shard's max duration is over
    assert d_b.called and sink_b.error_code == 1105
    assert "buffer.max_failover_duration (12s)" in sink_b.events[-1][2]
    assert failed(c, "duration") == 1
    # Still no primary: later statements fail at once, without waiting.
    sink = c.run(late, "insert into t values (3)")
    assert sink.error_code == 1105 and failed(c, "duration") == 2
    assert c.gate.buffer.buffering()[0][4] is True
    # A serving primary ends it: statements run (and would buffer again on a new failover).
    promote(c)
    assert c.gate.buffer.buffering() == []
    assert c.run(late, "insert into t values (4)").error_code is None
    assert buffered(c) == 2


def test_a_statement_refused_as_read_only_is_retried_on_the_new_primary() -> None:
    c = cluster(readonly=("zone1-100",))
    s = c.session()
    sink, d = start(c, s, "insert into t values (1)")
    assert not d.called and buffered(c) == 1  # 1290: not executed, so it waits
    c.serve("zone1-102", "replica", lag_s=0.5)  # unrelated changes do not retry it
    c.serve("zone1-100", "primary", primary_term=1)
    c.flush()
    assert not d.called and c.services["zone1-100"].sql() == ["insert into t values (1)"]
    promote(c)
    assert d.called and sink.events == [("ok", 1, 7, 0x2)]
    assert c.services["zone1-101"].sql() == ["insert into t values (1)"]
    assert value(c, "vtgate_buffer_drained_total", keyspace="commerce", shard="0") == 1


def test_a_refusing_primary_that_stops_and_serves_again_gets_the_retry() -> None:
    c = cluster(readonly=("zone1-100",))
    s = c.session()
    sink, d = start(c, s, "insert into t values (1)")
    c.serve("zone1-100", "primary", serving=False, primary_term=1)  # demotion rolled back:
    assert not d.called
    c.serve("zone1-100", "primary", primary_term=1)  # it serves again as primary
    c.flush()
    assert d.called
    # The retry went to it; it still refuses, and a second refusal reaches the client as is.
    assert c.services["zone1-100"].sql() == ["insert into t values (1)"] * 2
    assert sink.error_code == 1290


def test_refused_twice_reaches_the_client_and_window_bounds_the_wait() -> None:
    c = cluster(readonly=("zone1-100", "zone1-101"), window=3.0)
    s = c.session()
    sink, d = start(c, s, "insert into t values (1)")
    promote(c)
    assert d.called and sink.error_code == 1290
    assert c.services["zone1-101"].sql() == ["insert into t values (1)"]
    # A primary that keeps refusing, with no other: the window ends the wait.
    sink, d = start(c, s, "insert into t values (2)")
    c.clock.advance(3)
    assert d.called and sink.error_code == 1105
    message = sink.events[-1][2]
    assert "zone1-101 refused the statement" in message
    assert "buffer.window (3s)" in message


def test_the_tablets_not_serving_refusal_is_retried_like_1290() -> None:
    c = cluster(readonly=("zone1-100",))
    c.services["zone1-100"].refusal = MySQLError(  # type: ignore[attr-defined]
        ErrorCode.UNKNOWN_ERROR,
        "vttablet zone1-100 is not serving (demoted); retry on another tablet of the shard",
    )
    s = c.session()
    sink, d = start(c, s, "delete from t")
    assert not d.called and buffered(c) == 1
    c.serve("zone1-100", "replica", primary_term=1)
    promote(c)
    assert d.called and sink.events == [("ok", 1, 7, 0x2)]
    assert c.services["zone1-101"].sql() == ["delete from t"]
    # Other tablet errors are the statement's own: not retried.
    c.services["zone1-101"].calls.clear()
    assert c.run(s, "error 1105").error_code == 1105
    assert c.services["zone1-101"].sql() == ["error 1105"]


def test_statements_inside_a_transaction_are_not_buffered() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    c.links["zone1-100"].set_connected(False)  # the old primary is gone
    sink = c.run(s, "insert into t values (2)")
    assert sink.error_code == 1105 and "rolled back" in sink.events[-1][2]
    assert buffered(c) == 0 and waiting(c) == 0


def test_a_transaction_opened_during_a_failover_waits_for_the_new_primary() -> None:
    """Nothing of it ran yet, so its first statement (which opens the tablet transaction)
    waits in the buffer, as in Vitess, where a begin is buffered; so does a write that
    opens one with autocommit=0. START TRANSACTION's characteristics survive the wait."""
    c = cluster()
    s, t = c.session(), c.session()
    c.links["zone1-100"].set_connected(False)  # no primary
    c.run(s, "start transaction read only")
    sink, d = start(c, s, "select 1")
    c.run(t, "set autocommit = 0")
    sink_t, d_t = start(c, t, "insert into t values (4)")
    assert not d.called and not d_t.called and waiting(c) == 2
    promote(c)
    assert d.called and d_t.called and sink.error_code is None and sink_t.error_code is None
    new = c.services["zone1-101"]
    begins = [args for op, args in new.calls if op == "begin"]
    assert len(begins) == 2 and begins[0].options == {"start": "READ ONLY"}
    assert c.run(s, "commit").error_code is None and c.run(t, "commit").error_code is None
    assert [op for op, _ in new.calls].count("commit") == 2
    assert buffered(c) == 2 and waiting(c) == 0


def test_replica_reads_are_not_buffered() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    c.serve("zone1-100", "primary", serving=False)
    assert c.run(s, "select 1").table == [["zone1-101"]]  # replicas serve on
    c.serve("zone1-101", "replica", serving=False)
    c.serve("zone1-102", "replica", serving=False)
    sink = c.run(s, "select 1")
    assert sink.error_code == 1105 and "commerce/0@replica" in sink.events[-1][2]
    # A write with a replica target keeps its own error, unbuffered.
    assert c.run(s, "insert into t values (1)").error_code == 1290
    assert buffered(c) == 0


def test_disabled_buffer_fails_at_once() -> None:
    c = cluster(enabled=False)
    s = c.session()
    c.serve("zone1-100", "primary", serving=False)
    sink = c.run(s, "insert into t values (1)")
    assert sink.error_code == 1105
    assert "no healthy tablet available for 'commerce/0@primary'" in sink.events[-1][2]
    assert failed(c, "disabled") == 1 and buffered(c) == 0


def test_kill_query_and_disconnect_end_a_buffered_wait() -> None:
    c = cluster()
    s1, s2 = c.session(), c.session()
    c.serve("zone1-100", "primary", serving=False)
    sink1, d1 = start(c, s1, "insert into t values (1)")
    _, d2 = start(c, s2, "insert into t values (2)")
    assert waiting(c) == 2
    assert s1.kill_query()
    assert d1.called and sink1.error_code == 1317
    s2.close()
    assert d2.called and waiting(c) == 0
    promote(c)
    assert c.services["zone1-101"].sql() == []
    assert c.clock.getDelayedCalls() == []


def test_status_page_lists_buffering_shards() -> None:
    from pathlib import Path

    from tests.unit.gate.test_role import options
    from vtwist.gate.status import gate_sections
    from vtwist.httpstatus import Table

    c = cluster()
    s = c.session()
    c.serve("zone1-100", "primary", serving=False)
    start(c, s, "insert into t values (1)")
    c.clock.advance(3)
    repo = Path(__file__).resolve().parents[3]
    config = options("--config", str(repo / "etc" / "vtgate.toml")).config
    tables = [t for t in gate_sections(c.gate, config)() if isinstance(t, Table)]
    table = next(t for t in tables if t.title.startswith("Failover buffering"))
    assert table.rows == [["commerce", "0", 3, 1, "buffering"]]

# SynchronousTestCase helpers are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""TabletQueryService on a scripted fake mysqld and a fake clock: pooling, transactions,
reserved connections, timeouts and kills, policies, health delegation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.unit.tablet.fakes import FakeRequest, FakeSink, make_service, text_row
from vtwist.interfaces import IInfileReader, ITabletService
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_ops import (
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    Note,
    ReleaseArgs,
    ReserveArgs,
    TransactionArgs,
)
from vtwist.tablet.policies import QueryPolicy
from vtwist.tablet.query import QuerySettings


class QueryServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.service, self.mysql = make_service(self.clock)

    def execute(self, sql: str, **kw: Any) -> Deferred[Any]:
        return self.service.execute(FakeRequest(), ExecuteArgs(sql, **kw))

    def error_of(self, d: Deferred[Any]) -> MySQLError:
        f = self.failureResultOf(d, MySQLError)
        assert isinstance(f.value, MySQLError)
        return f.value

    def test_provides_the_interface(self) -> None:
        assert verifyObject(ITabletService, self.service)

    def test_pooled_select_returns_raw_rows_and_returns_the_connection(self) -> None:
        result = self.successResultOf(self.execute("SELECT rows 3"))
        assert result.rows == [text_row("0"), text_row("1"), text_row("2")]
        assert len(result.fields) == 1
        stats = self.service.pools.query.stats()
        assert stats.in_use == 0 and stats.idle == 1
        assert self.mysql.statements() == ["SELECT rows 3"]
        assert self.service.metrics.query_count("select") == 1

    def test_bind_variables(self) -> None:
        self.successResultOf(
            self.execute(
                "SELECT x FROM t WHERE id IN :ids AND n = :n", bind_vars={"ids": [1, 2], "n": "a'b"}
            )
        )
        assert self.mysql.statements()[-1] == "SELECT x FROM t WHERE id IN (1, 2) AND n = 'a\\'b'"

    def test_row_limit_and_callers_lower_limit(self) -> None:
        err = self.error_of(self.execute("SELECT rows 101"))
        assert err.code == 1104 and "Row count exceeded 100" in err.message
        err = self.error_of(self.execute("SELECT rows 6", max_rows=5))
        assert "Row count exceeded 5" in err.message
        self.successResultOf(self.execute("SELECT rows 100"))
        assert self.service.metrics.rows_exceeded._value.get() == 2
        assert self.service.metrics.rows_warned._value.get() == 1  # 100 > warn 50

    def test_session_state_refused_on_pooled_connections(self) -> None:
        for sql in (
            "SET @a = 1",
            "SELECT GET_LOCK('x', 1)",
            "CREATE TEMPORARY TABLE t (a int)",
            "LOCK TABLES t READ",
            "SELECT 1 INTO @x",
            "USE other",
        ):
            err = self.error_of(self.execute(sql))
            assert err.code == 1235 and "reserve" in err.message, sql
        assert self.mysql.statements() == []

    def test_maybe_dirty_statement_resets_its_connection(self) -> None:
        self.successResultOf(self.execute("SELECT LAST_INSERT_ID(5)"))
        assert self.mysql.statements()[-1] == "RESET"
        self.successResultOf(self.execute("SELECT 1"))
        assert self.mysql.statements()[-1] == "SELECT 1"

    def test_transaction_statements_and_multi_statements_refused(self) -> None:
        assert self.error_of(self.execute("BEGIN")).code == 1235
        assert self.error_of(self.execute("commit")).code == 1235
        assert self.error_of(self.execute("SELECT 1; SELECT 2")).code == 1235

    def test_writes_refused_unless_serving_primary(self) -> None:
        service, _ = make_service(self.clock, tablet_type="replica")
        err = self.failureResultOf(
            service.execute(FakeRequest(), ExecuteArgs("INSERT INTO t VALUES (1)")), MySQLError
        ).value
        assert err.code == 1290 and "replica" in err.message and "zone1-100" in err.message
        self.successResultOf(service.execute(FakeRequest(), ExecuteArgs("SELECT 1")))
        # @primary targets are refused by a non-primary, even for reads.
        err = self.failureResultOf(
            service.execute(FakeRequest(), ExecuteArgs("SELECT 1", target="ks@primary")),
            MySQLError,
        ).value
        assert err.code == 1290
        assert service.metrics.refused.labels(reason="read_only")._value.get() == 2

    def test_not_serving_and_wrong_target(self) -> None:
        service, _ = make_service(self.clock, serving=False)
        err = self.failureResultOf(
            service.execute(FakeRequest(), ExecuteArgs("SELECT 1")), MySQLError
        ).value
        assert "not serving (probe failed)" in err.message
        err = self.error_of(self.execute("SELECT 1", target="other:0@replica"))
        assert "not served by tablet zone1-100" in err.message
        self.successResultOf(self.execute("SELECT 1", target="ks:0@replica"))

    def test_denylist(self) -> None:
        service, _ = make_service(
            self.clock,
            policy=QueryPolicy(
                max_result_rows=100,
                warn_result_rows=0,
                denied_patterns=[r"sleep\s*\("],
                denied_tables=["secrets", "db.hidden"],
            ),
        )

        def err(sql: str) -> MySQLError:
            v = self.failureResultOf(service.execute(FakeRequest(), ExecuteArgs(sql)), MySQLError)
            assert isinstance(v.value, MySQLError)
            return v.value

        assert err("select SLEEP (3)").code == 1105
        e = err("SELECT * FROM a JOIN `secrets` s ON a.id = s.id")
        assert e.code == 1142 and "'secrets'" in e.message
        assert err("update db.hidden set a = 1").code == 1142
        self.successResultOf(service.execute(FakeRequest(), ExecuteArgs("SELECT 'secrets' FROM b")))

    def test_query_timeout_kills_on_mysqld(self) -> None:
        service, mysql = make_service(self.clock, settings=QuerySettings(query_timeout=1.0))
        d = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(60)"))
        self.assertNoResult(d)
        self.clock.advance(1.0)
        err = self.failureResultOf(d, MySQLError).value
        assert err.code == 1317 and "query.timeout (1s)" in err.message
        assert any(s.startswith("KILL QUERY ") for s in mysql.statements())
        assert service.pools.query.stats().in_use == 0
        assert service.metrics.kills.labels(reason="timeout")._value.get() == 1

    def test_timeouts_share_one_timer_yet_each_fires_on_time(self) -> None:
        service, mysql = make_service(
            self.clock, settings=QuerySettings(query_timeout=3.0), query_size=4
        )
        first = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(60)"))
        self.clock.advance(0.5)
        second = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(61)"))
        # A shorter deadline than the armed one moves the timer earlier.
        third = service.execute(
            FakeRequest(),
            ExecuteArgs("SELECT SLEEP(62)", options={"query_timeout_ms": 700}),
        )
        quick = service.execute(FakeRequest(), ExecuteArgs("SELECT 1"))
        self.successResultOf(quick)  # over at once: leaves the timer alone
        self.clock.advance(0.7)
        assert self.failureResultOf(third, MySQLError).value.code == 1317
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.clock.advance(1.8)  # t = 3.0: the first one's deadline
        assert self.failureResultOf(first, MySQLError).value.code == 1317
        self.assertNoResult(second)
        self.clock.advance(0.5)  # t = 3.5
        err = self.failureResultOf(second, MySQLError).value
        assert err.code == 1317 and "query.timeout (3s)" in err.message
        assert service.metrics.kills.labels(reason="timeout")._value.get() == 3
        assert not self.clock.getDelayedCalls()  # nothing left to time: not re-armed
        assert sum(s.startswith("KILL QUERY ") for s in mysql.statements()) == 3

    def test_timeout_reported_even_if_mysqld_answers_after_the_kill(self) -> None:
        service, mysql = make_service(self.clock, settings=QuerySettings(query_timeout=1.0))
        mysql.kill_blocked = True  # the kill does not land; the statement then returns
        d = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(60)"))
        self.clock.advance(1.0)
        next(c for c in mysql.clients.values() if c.sleeping is not None).wake()
        err = self.failureResultOf(d, MySQLError).value
        assert err.code == 1317
        # The kill may still be on its way: the connection is held until kill_grace, then
        # dropped rather than lent again.
        assert service.pools.query.stats().in_use == 1
        self.clock.advance(5.0)
        stats = service.pools.query.stats()
        assert stats.in_use == 0 and stats.idle == 0 and stats.closed == 1

    def test_stuck_statement_gets_its_connection_closed(self) -> None:
        service, mysql = make_service(self.clock, settings=QuerySettings(query_timeout=1.0))
        mysql.kill_blocked = True
        d = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(60)"))
        self.clock.advance(1.0)
        self.assertNoResult(d)
        self.clock.advance(5.0)  # kill_grace
        assert self.failureResultOf(d, MySQLError).value.code == 1317
        assert service.metrics.kills.labels(reason="timeout_stuck")._value.get() == 1
        assert service.pools.query.stats().in_use == 0

    def test_cancelled_request_kills_and_detaches(self) -> None:
        request = FakeRequest()
        d = self.service.execute(request, ExecuteArgs("SELECT SLEEP(60)"))
        request.cancel("deadline")
        d.cancel()
        self.failureResultOf(d)
        assert any(s.startswith("KILL QUERY ") for s in self.mysql.statements())
        assert self.service.pools.query.stats().in_use == 0

    def test_stream_execute_relays_rows_and_registers_the_connection(self) -> None:
        sink = FakeSink()
        result = self.successResultOf(
            self.service.stream_execute(FakeRequest(), ExecuteArgs("SELECT rows 600"), sink)
        )
        assert result.rows == [] and sink.fields is not None and len(sink.fields) == 1
        assert sink.rows == [text_row(str(i)) for i in range(600)]  # no row limit on streams
        assert sink.producer is not None and sink.unregistered
        sink.producer.pauseProducing()
        client = next(iter(self.mysql.clients.values()))
        assert client.paused == 1

    def test_warnings_fetched_on_the_statements_connection_before_it_is_lent_again(
        self,
    ) -> None:
        result = self.successResultOf(self.execute("WARN 3"))
        assert result.warnings == 3
        [client] = self.mysql.clients.values()
        cid = client.connection_id
        assert result.notes == tuple(Note("Warning", 1000 + i, f"w{i} on {cid}") for i in range(3))
        assert self.mysql.statements() == ["WARN 3", "SHOW WARNINGS LIMIT 64"]
        assert self.service.pools.query.stats().in_use == 0
        # No warnings: nothing more is asked.
        result = self.successResultOf(self.execute("SELECT 1"))
        assert result.notes == () and self.mysql.statements()[-1] == "SELECT 1"

    def test_a_checked_settings_own_warnings_come_back(self) -> None:
        check = {"setting_warnings": True}
        r = self.successResultOf(self.execute("DO 0", settings=["WARN 2"], options=check))
        assert r.warnings == 2 and [n.code for n in r.notes] == [1000, 1001]
        assert self.mysql.statements()[-3:] == ["WARN 2", "DO 0", "SHOW WARNINGS LIMIT 64"]
        # The connection already holds that setting: it did not run, nothing to report.
        r = self.successResultOf(self.execute("DO 0", settings=["WARN 2"], options=check))
        assert r.warnings == 0 and r.notes == ()
        # Without the option a setting's warnings stay the tablet's.
        r = self.successResultOf(self.execute("DO 0", settings=["WARN 3"]))
        assert r.warnings == 0 and r.notes == ()

    def test_warnings_bounded_by_max_warnings_and_off_at_zero(self) -> None:
        service, mysql = make_service(self.clock, settings=QuerySettings(max_warnings=2))
        result = self.successResultOf(service.execute(FakeRequest(), ExecuteArgs("WARN 5")))
        assert result.warnings == 5 and [n.code for n in result.notes] == [1000, 1001]
        service, mysql = make_service(self.clock, settings=QuerySettings(max_warnings=0))
        result = self.successResultOf(service.execute(FakeRequest(), ExecuteArgs("WARN 5")))
        assert result.warnings == 5 and result.notes == ()
        assert mysql.statements() == ["WARN 5"]

    def test_warnings_of_streams_and_held_connections(self) -> None:
        sink = FakeSink()
        result = self.successResultOf(
            self.service.stream_execute(FakeRequest(), ExecuteArgs("WARN 1"), sink)
        )
        assert [n.code for n in result.notes] == [1000]
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        result = self.successResultOf(self.execute("WARN 2", transaction_id=tx))
        [held] = list(self.service.held)
        cid = held.lease.connection_id
        assert [n.message for n in result.notes] == [f"w0 on {cid}", f"w1 on {cid}"]
        assert self.mysql.statements(cid)[-2:] == ["WARN 2", "SHOW WARNINGS LIMIT 64"]

    def test_load_data_local_file_reaches_the_connection(self) -> None:
        load = "LOAD DATA LOCAL INFILE 'f' INTO TABLE t"
        self.successResultOf(self.execute(load, infile=b"1,a\n"))
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        self.successResultOf(self.execute(load, infile=b"", transaction_id=tx))
        self.successResultOf(self.execute("INSERT INTO t VALUES (1)", transaction_id=tx))
        [(pooled, first), (held, second)] = self.mysql.files
        assert (first, second) == (b"1,a\n", b"")
        assert held == next(iter(self.service.held)).lease.connection_id != pooled

    def test_load_data_local_file_streamed_from_the_gate(self) -> None:
        # With infile_stream the connection gets a reader that asks the request (and so the
        # gate) for each piece.
        request = FakeRequest()
        args = ExecuteArgs("LOAD DATA LOCAL INFILE 'f' INTO TABLE t", infile_stream=True)
        self.successResultOf(self.service.execute(request, args))  # pooled
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        held = ExecuteArgs(args.sql, transaction_id=tx, infile_stream=True)
        self.successResultOf(self.service.execute(request, held))  # on the transaction's
        [(_, first), (_, second)] = self.mysql.files
        assert IInfileReader.providedBy(first) and IInfileReader.providedBy(second)
        assert self.successResultOf(first.read(7)) == b"1,a\n"
        assert self.successResultOf(second.read(5)) == b""
        assert request.infile_asks == [7, 5]

    def test_a_transaction_whose_connection_broke_ends(self) -> None:
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        [held] = list(self.service.held)
        client: Any = held.lease.client  # (a fake connection)
        client.is_broken = True  # mysqld dropped it (and rolled back)
        self.error_of(self.execute("INSERT INTO t VALUES (1)", transaction_id=tx))
        assert self.service.counts() == (0, 0)
        err = self.error_of(self.service.commit(FakeRequest(), TransactionArgs(tx)))
        assert "has ended (rolled back: its connection to mysqld broke" in err.message

    def test_transaction_lifecycle(self) -> None:
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        assert tx > 0
        self.successResultOf(self.execute("INSERT INTO t VALUES (1)", transaction_id=tx))
        self.successResultOf(self.execute("SET @a = 1", transaction_id=tx))  # allowed in a tx
        assert self.service.counts() == (1, 0)
        assert self.successResultOf(self.service.commit(FakeRequest(), TransactionArgs(tx))) == 0
        assert self.service.counts() == (0, 0)
        stmts = self.mysql.statements()
        commit = "COMMIT AND NO CHAIN NO RELEASE"  # whatever completion_type says
        assert stmts[:4] == ["BEGIN", "INSERT INTO t VALUES (1)", "SET @a = 1", commit]
        assert stmts[-1] == "RESET"  # the SET made it dirty
        err = self.error_of(self.execute("SELECT 1", transaction_id=tx))
        assert f"transaction {tx} has ended (committed)" in err.message
        err = self.error_of(self.execute("SELECT 1", transaction_id=12345))
        assert "unknown to this tablet" in err.message

    def test_abandoned_transaction_rolled_back(self) -> None:
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        self.clock.advance(20)
        self.successResultOf(self.execute("SELECT 1", transaction_id=tx))  # activity re-arms
        self.clock.advance(29)
        assert self.service.counts() == (1, 0)
        self.clock.advance(1)
        assert self.service.counts() == (0, 0)
        assert self.mysql.statements()[-1] == "RESET"  # the reset rolls back
        assert self.service.pools.transaction.stats().in_use == 0
        err = self.error_of(self.execute("SELECT 1", transaction_id=tx))
        assert "idle longer than transaction.timeout (30s)" in err.message
        assert (
            self.service.metrics.ended.labels(kind="transaction", reason="timeout")._value.get()
            == 1
        )

    def test_transaction_idle_timer_is_one_timer_and_waits_for_a_running_statement(
        self,
    ) -> None:
        service, mysql = make_service(
            self.clock, settings=QuerySettings(query_timeout=100.0, transaction_timeout=30.0)
        )
        tx = self.successResultOf(service.begin(FakeRequest(), BeginArgs()))
        scheduled: list[object] = []
        call_later = self.clock.callLater

        def counting(
            delay: float, callable: Callable[..., object], *args: object, **kw: object
        ) -> IDelayedCall:
            scheduled.append(callable)
            return call_later(delay, callable, *args, **kw)

        self.clock.callLater = counting  # type: ignore[method-assign]
        for _ in range(20):
            d = service.execute(FakeRequest(), ExecuteArgs("SELECT 1", transaction_id=tx))
            self.successResultOf(d)
        held_timers = [fn for fn in scheduled if getattr(fn, "__name__", "") == "_expired"]
        assert held_timers == []  # activity scheduled no new idle timer
        # A statement still running when the limit passes: the transaction is not idle.
        d = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(45)", transaction_id=tx))
        self.clock.advance(45)
        assert service.counts() == (1, 0)
        next(c for c in mysql.clients.values() if c.sleeping is not None).wake()
        self.successResultOf(d)
        # Idle from the statement's end: 30 s later (not from when the timer last fired).
        self.clock.advance(29)
        assert service.counts() == (1, 0)
        self.clock.advance(1)
        assert service.counts() == (0, 0)
        err = self.failureResultOf(
            service.execute(FakeRequest(), ExecuteArgs("SELECT 1", transaction_id=tx)),
            MySQLError,
        ).value
        assert "idle longer than transaction.timeout (30s)" in err.message

    def test_concurrent_statements_on_one_transaction_refused(self) -> None:
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        d = self.execute("SELECT SLEEP(5)", transaction_id=tx)
        err = self.error_of(self.execute("SELECT 1", transaction_id=tx))
        assert "busy with another statement" in err.message
        self.clock.advance(10)  # query.timeout
        self.failureResultOf(d)
        self.successResultOf(self.execute("SELECT 1", transaction_id=tx))

    def test_reserved_connection_with_settings_and_transaction(self) -> None:
        res = self.successResultOf(
            self.service.reserve(FakeRequest(), ReserveArgs(settings=["SET @a = 1"], begin=True))
        )
        assert res.reserved_id and res.transaction_id and res.reserved_id != res.transaction_id
        self.successResultOf(self.execute("SET @b = 2", reserved_id=res.reserved_id))
        kept = self.successResultOf(
            self.service.commit(FakeRequest(), TransactionArgs(res.transaction_id))
        )
        assert kept == res.reserved_id
        assert self.service.counts() == (0, 1)
        tx2 = self.successResultOf(
            self.service.begin(FakeRequest(), BeginArgs(reserved_id=res.reserved_id))
        )
        self.successResultOf(
            self.execute("SELECT 1", transaction_id=tx2, reserved_id=res.reserved_id)
        )
        self.successResultOf(
            self.service.release(FakeRequest(), ReleaseArgs(reserved_id=res.reserved_id))
        )
        assert self.service.counts() == (0, 0)
        assert self.mysql.statements()[-1] == "RESET"
        assert self.service.pools.transaction.stats().in_use == 0

    def test_a_statement_that_leaves_a_transaction_open_is_rolled_back_and_refused(
        self,
    ) -> None:
        # A procedure's START TRANSACTION without COMMIT, on a connection outside a
        # transaction: the gate's session is not in one, so its COMMIT would never reach
        # it; the tablet rolls it back and says so (as Vitess refuses such a leak).
        res = self.successResultOf(self.service.reserve(FakeRequest(), ReserveArgs()))
        err = self.error_of(self.execute("CALL leave_open()", reserved_id=res.reserved_id))
        assert err.code == 1105 and "left a transaction open" in err.message
        assert self.mysql.statements()[-1] == "ROLLBACK AND NO CHAIN NO RELEASE"
        self.successResultOf(self.execute("SELECT 1", reserved_id=res.reserved_id))
        err = self.error_of(self.execute("CALL leave_open()"))
        assert "left a transaction open" in err.message
        assert self.mysql.statements()[-1] == "RESET"  # the pool's reset rolled it back
        assert self.service.pools.query.stats().in_use == 0

    def test_reserved_idle_timeout(self) -> None:
        service, _ = make_service(self.clock, settings=QuerySettings(reserved_idle_timeout=60.0))
        res = self.successResultOf(
            service.reserve(FakeRequest(), ReserveArgs(settings=["SET @a=1"]))
        )
        self.clock.advance(60)
        assert service.counts() == (0, 0)
        err = self.failureResultOf(
            service.execute(FakeRequest(), ExecuteArgs("SELECT 1", reserved_id=res.reserved_id)),
            MySQLError,
        ).value
        assert "reserved.idle_timeout" in err.message

    def test_kill_transaction_query_and_connection(self) -> None:
        tx = self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        d = self.execute("SELECT SLEEP(60)", transaction_id=tx)
        assert self.successResultOf(self.service.kill(FakeRequest(), KillArgs(transaction_id=tx)))
        err = self.failureResultOf(d, MySQLError).value
        assert err.code == 1317 and "killed" in err.message
        assert self.service.counts() == (1, 0)  # the transaction survives a KILL QUERY
        assert not self.successResultOf(
            self.service.kill(FakeRequest(), KillArgs(transaction_id=tx))
        )
        assert self.successResultOf(
            self.service.kill(FakeRequest(), KillArgs(transaction_id=tx, connection=True))
        )
        assert self.service.counts() == (0, 0)
        assert any(s.startswith("KILL CONNECTION") for s in self.mysql.statements())
        stats = self.service.pools.transaction.stats()
        assert stats.in_use == 0 and stats.closed == 1

    def test_pool_exhaustion_error(self) -> None:
        sleepers = [self.execute("SELECT SLEEP(9)") for _ in range(2)]
        waiting = self.execute("SELECT 1")
        self.assertNoResult(waiting)
        self.clock.advance(1.0)  # the pool's wait timeout
        err = self.error_of(waiting)
        assert err.code == 1203 and "exhausted" in err.message
        self.clock.advance(9.0)
        for d in sleepers:
            self.failureResultOf(d)

    def test_a_hung_mysqld_breaks_off_a_replicas_pooled_statements_only(self) -> None:
        sleeper = self.execute("SELECT SLEEP(9)")
        self.service.mysqld_hung()  # a primary: its statements may be writes, left alone
        self.assertNoResult(sleeper)
        self.sleeper().wake()
        self.successResultOf(sleeper)
        service, _ = make_service(self.clock, tablet_type="replica")
        running = service.execute(FakeRequest(), ExecuteArgs("SELECT SLEEP(9)"))
        service.mysqld_hung()
        err = self.error_of(running)
        assert err.code == 2013  # the gate runs such a read on another tablet
        stats = service.pools.query.stats()
        assert stats.in_use == 0 and stats.idle == 0  # given back broken, not reused

    def test_health_delegates_to_the_state(self) -> None:
        seen: list[Any] = []
        unsubscribe = self.service.subscribe_health(seen.append)
        self.service.state.update(serving=False, error="mysqld down")
        assert seen[-1]["serving"] is False and self.service.health()["error"] == "mysqld down"
        unsubscribe()
        self.service.state.update(serving=True, error="")
        assert len(seen) == 1
        # A not-serving tablet takes no new pooled work.
        self.service.state.update(serving=False)
        assert self.error_of(self.execute("SELECT 1")).code == 1105

    def test_shutdown_releases_held_connections(self) -> None:
        self.successResultOf(self.service.begin(FakeRequest(), BeginArgs()))
        self.successResultOf(self.service.reserve(FakeRequest(), ReserveArgs()))
        self.successResultOf(self.service.shutdown())
        assert self.service.counts() == (0, 0)
        assert self.service.pools.transaction.stats().in_use == 0

    def sleeper(self) -> Any:
        """The fake connection whose SELECT SLEEP is running."""
        return next(c for c in self.mysql.clients.values() if c.sleeping is not None)

    def test_drain_lets_running_statements_and_open_transactions_end(self) -> None:
        service = self.service
        running = self.execute("SELECT SLEEP(5)")
        tx = self.successResultOf(service.begin(FakeRequest(), BeginArgs()))
        # Stopping: the health service reports not serving, then the drain starts.
        service.state.update(serving=False, error="tablet is shutting down")
        drained = service.drain()
        self.clock.advance(0.5)
        assert not drained.called
        # New work is refused; the open transaction still writes and commits.
        assert self.error_of(self.execute("SELECT 1")).code == 1105
        self.error_of(service.begin(FakeRequest(), BeginArgs()))
        self.successResultOf(self.execute("UPDATE t SET v = 1", transaction_id=tx))
        self.successResultOf(service.commit(FakeRequest(), TransactionArgs(tx)))
        self.clock.advance(0.5)
        assert not drained.called  # the pooled statement still runs
        self.sleeper().wake()
        self.successResultOf(running)
        self.clock.advance(0.1)
        self.successResultOf(drained)
        assert "UPDATE t SET v = 1" in self.mysql.statements()

    def test_drain_gives_up_after_the_grace_period(self) -> None:
        service, mysql = make_service(
            self.clock, settings=QuerySettings(shutdown_grace=2.0, transaction_timeout=30.0)
        )
        tx = self.successResultOf(service.begin(FakeRequest(), BeginArgs()))
        service.state.update(serving=False, error="tablet is shutting down")
        drained = service.drain()
        self.clock.advance(1.9)
        assert not drained.called
        self.clock.advance(0.2)
        self.successResultOf(drained)
        assert service.counts() == (1, 0)  # left for ``shutdown`` to roll back
        self.successResultOf(service.shutdown())
        assert service.counts() == (0, 0) and mysql.statements() == ["BEGIN", "RESET"]
        # A replica (or a tablet not draining) still refuses writes when not serving.
        replica, _ = make_service(self.clock, tablet_type="replica")
        tx = self.successResultOf(replica.begin(FakeRequest(), BeginArgs()))
        replica.state.update(serving=False)
        replica.drain()
        err = self.error_of(
            replica.execute(FakeRequest(), ExecuteArgs("UPDATE t SET v = 1", transaction_id=tx))
        )
        assert err.code == 1290

    def test_quiesce_waits_for_a_transaction_still_starting(self) -> None:
        # A begin accepted while serving, whose preparation still runs at mysqld when the
        # demote starts, is an open transaction: its writes run and it commits before the
        # drain ends (it once ended at once, and the UPDATE got 1290).
        service = self.service
        starting = service.begin(FakeRequest(), BeginArgs(settings=["SELECT SLEEP(1)"]))
        self.assertNoResult(starting)
        service.state.update(serving=False, error="demoted")
        quiet = service.quiesce()
        self.clock.advance(0.5)
        assert not quiet.called
        self.sleeper().wake()
        tx = self.successResultOf(starting)
        self.successResultOf(self.execute("UPDATE t SET v = 1", transaction_id=tx))
        self.clock.advance(0.5)
        assert not quiet.called
        self.successResultOf(service.commit(FakeRequest(), TransactionArgs(tx)))
        self.clock.advance(0.1)
        self.successResultOf(quiet)

    def test_quiesce_lets_open_transactions_write_then_restores(self) -> None:
        service = self.service
        tx = self.successResultOf(service.begin(FakeRequest(), BeginArgs()))
        slow = self.successResultOf(service.begin(FakeRequest(), BeginArgs()))
        service.state.update(serving=False, error="demoted")
        quiet = service.quiesce()
        self.successResultOf(self.execute("UPDATE t SET v = 1", transaction_id=tx))
        self.successResultOf(service.commit(FakeRequest(), TransactionArgs(tx)))
        self.clock.advance(2.9)
        assert not quiet.called  # ``slow`` is still open
        self.clock.advance(0.2)  # shutdown_grace (3 s) passed
        self.successResultOf(quiet)
        assert not service.draining
        err = self.error_of(self.execute("UPDATE t SET v = 2", transaction_id=slow))
        assert err.code == 1290  # a demoted primary takes no more writes

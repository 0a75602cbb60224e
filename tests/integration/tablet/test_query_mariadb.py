# twisted.trial and twisted.web.client are partly unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The tablet's query service against the real MariaDB, reached over the real tablet RPC:
pool exhaustion and leaks, session isolation, abandoned transactions, query timeouts killed
on mysqld, concurrency on one RPC connection, replica writes, denylist and row limits,
streams with back-pressure, the HTTP pages, and broken connections replaced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests.integration.tablet.harness import (
    APP_USER,
    Harness,
    first_value,
    reactor,
    sleep,
    wait_for,
)
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_codec import Chunk
from vtwist.tablet import runner

pytestmark = [
    pytest.mark.integration,
    # Agent's own transport lacks abortConnection; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using readBody:DeprecationWarning"),
]


def run(fn: Callable[[], Awaitable[None]]) -> Deferred[None]:
    async def wrapped() -> None:
        await fn()

    return Deferred.fromCoroutine(wrapped())


async def error_of(d: Deferred[Any]) -> MySQLError:
    try:
        await d
    except MySQLError as e:
        return e
    raise AssertionError("expected a MySQLError")


class TabletQueryTests(unittest.TestCase):
    timeout = 60

    async def _harness(self, overrides: dict[str, Any] | None = None) -> Harness:
        h = await Harness.start(overrides)
        self.addCleanup(lambda: Deferred.fromCoroutine(h.stop()))
        return h

    async def _app_connections(self, h: Harness) -> int:
        return len(await h.processlist(APP_USER))

    # --- pools ------------------------------------------------------------------------------

    def test_pool_exhaustion_queues_then_fails_cleanly_without_leaks(self) -> Deferred[None]:
        return run(self._pool_exhaustion)

    async def _pool_exhaustion(self) -> None:
        h = await self._harness(
            {"pool.query.size": 2, "pool.query.wait_timeout": "600ms", "query.timeout": "10s"}
        )
        c = h.client
        await wait_for(lambda: self._zero(h), "no tablet_app connection left from other tests")
        # Short sleepers: the queued requests wait for a connection, then succeed.
        short = [c.execute("SELECT SLEEP(0.3)") for _ in range(2)]
        queued = [c.execute(f"SELECT {i}") for i in range(3)]
        results = await gatherResults(queued)
        assert [first_value(r.rows[0]) for r in results] == [b"0", b"1", b"2"]
        await gatherResults(short)
        assert h.tablet.pools.query.stats().wait_count >= 3
        # Long sleepers: the queued request gets the pool's clean error after its wait.
        long = [c.execute("SELECT SLEEP(1.5)") for _ in range(2)]
        err = await error_of(c.execute("SELECT 1"))
        assert err.code == 1203 and err.sqlstate == "42000"
        assert "connection pool for query exhausted" in err.message and "waited 0.6s" in err.message
        await gatherResults(long)
        stats = h.tablet.pools.query.stats()
        assert stats.in_use == 0 and stats.open <= 2 and stats.wait_timeouts == 1
        assert await self._app_connections(h) == stats.open <= 2
        await h.tablet.pools.close()
        await wait_for(lambda: self._zero(h), "every tablet_app connection closed")

    async def _zero(self, h: Harness) -> bool:
        return await self._app_connections(h) == 0

    # --- isolation --------------------------------------------------------------------------

    def test_clients_cannot_see_each_others_session_or_transaction(self) -> Deferred[None]:
        return run(self._isolation)

    async def _isolation(self) -> None:
        h = await self._harness({"pool.query.size": 2, "pool.transaction.size": 3})
        c, other = h.client, await h.another_client()  # two gates, two RPC connections
        await h.sql("CREATE TABLE IF NOT EXISTS iso (id INT PRIMARY KEY)")
        await h.sql("DELETE FROM iso")
        for state in ("SET @who = 'x'", "HANDLER iso OPEN", "FLUSH TABLES WITH READ LOCK"):
            err = await error_of(c.execute(state))  # would outlive the statement: refused
            assert err.code == 1235 and "reserve" in err.message, (state, err)
        a = await c.reserve(["SET @who = 'a'", "SELECT GET_LOCK('iso_lock_a', 0)"])
        b = await other.reserve(["SET @who = 'b'", "CREATE TEMPORARY TABLE tmp_b (x INT)"])
        ra = await c.execute("SELECT @who, CONNECTION_ID()", reserved_id=a.reserved_id)
        rb = await other.execute("SELECT @who, CONNECTION_ID()", reserved_id=b.reserved_id)
        assert first_value(ra.rows[0]) == b"a" and first_value(rb.rows[0]) == b"b"
        for client in (c, other):
            for r in await gatherResults([client.execute("SELECT @who") for _ in range(10)]):
                assert first_value(r.rows[0]) is None  # pooled connections never see them
            assert (await error_of(client.execute("SELECT * FROM tmp_b"))).code == 1146
        assert (await h.sql("SELECT IS_FREE_LOCK('iso_lock_a')"))[0][0] == b"0"
        # A transaction's uncommitted row is invisible to the other client, then visible.
        tx = await c.begin()
        await c.execute("INSERT INTO iso VALUES (1)", transaction_id=tx)
        r = await other.execute("SELECT COUNT(*) FROM iso")
        assert first_value(r.rows[0]) == b"0"
        # Without its transaction id, even the same client reads through the pool: unseen.
        r = await c.execute("SELECT COUNT(*) FROM iso")
        assert first_value(r.rows[0]) == b"0"
        await c.commit(tx)
        r = await other.execute("SELECT COUNT(*) FROM iso")
        assert first_value(r.rows[0]) == b"1"
        # Released reserved connections go back reset: the next borrower sees nothing, and
        # the lock taken on one is free again.
        await c.release(reserved_id=a.reserved_id)
        await other.release(reserved_id=b.reserved_id)
        assert (await h.sql("SELECT IS_FREE_LOCK('iso_lock_a')"))[0][0] == b"1"
        txs = [await c.begin() for _ in range(3)]  # every connection of the pool
        for tx in txs:
            r = await c.execute("SELECT @who", transaction_id=tx)
            assert first_value(r.rows[0]) is None
            assert (
                await error_of(c.execute("SELECT * FROM tmp_b", transaction_id=tx))
            ).code == 1146
            await c.rollback(tx)
        assert h.tablet.pools.transaction.stats().created == 3  # reused, not new ones

    def test_found_rows_option_counts_matched_rows_on_connections_of_its_own(
        self,
    ) -> Deferred[None]:
        return run(self._found_rows)

    async def _found_rows(self) -> None:
        h = await self._harness()
        c = h.client
        await h.sql("CREATE TABLE IF NOT EXISTS fr (id INT PRIMARY KEY, v INT)")
        await h.sql("REPLACE INTO fr VALUES (1, 1)")
        same = "UPDATE fr SET v = 1 WHERE id = 1"  # matches one row, changes none
        found = {"found_rows": True}
        assert (await c.execute(same)).affected_rows == 0
        assert (await c.execute(same, options=found)).affected_rows == 1
        tx = await c.begin(options=found)
        assert (await c.execute(same, transaction_id=tx)).affected_rows == 1
        await c.rollback(tx)
        tx = await c.begin()
        assert (await c.execute(same, transaction_id=tx)).affected_rows == 0
        await c.rollback(tx)
        rsv = await c.reserve(["SET @a = 1"], options=found)
        assert (await c.execute(same, reserved_id=rsv.reserved_id)).affected_rows == 1
        await c.release(reserved_id=rsv.reserved_id)
        pools = h.tablet.pools
        assert pools.query_found_rows.stats().created == 1
        assert pools.transaction_found_rows.stats().created == 1
        assert pools.query.stats().created >= 1 and pools.transaction.stats().created >= 1

    def test_settings_prepare_pooled_connections_and_never_leak(self) -> Deferred[None]:
        return run(self._settings)

    async def _settings(self) -> None:
        h = await self._harness({"pool.query.size": 1, "pool.transaction.size": 1})
        c = h.client
        mode = ["SET SESSION sql_mode = 'ANSI_QUOTES'"]
        other = ["SET SESSION sql_mode = 'NO_ZERO_DATE'", "SET SESSION div_precision_increment = 9"]

        async def value(sql: str, settings: list[str] | None = None) -> Any:
            return first_value((await c.execute(sql, settings=settings)).rows[0])

        default = await value("SELECT @@sql_mode")
        assert await value("SELECT @@sql_mode", mode) == b"ANSI_QUOTES"
        # One pooled connection: the next request without settings gets it reset.
        assert await value("SELECT @@sql_mode") == default
        # The same settings twice: run once on the connection, then reused as they are.
        sets = "SHOW SESSION STATUS LIKE 'Com_set_option'"
        first = (await c.execute(sets, settings=other)).rows[0]
        again = (await c.execute(sets, settings=other)).rows[0]
        assert first == again and first_value(first) == b"Com_set_option"
        assert await value("SELECT @@div_precision_increment", other) == b"9"
        assert await value("SELECT @@sql_mode", mode) == b"ANSI_QUOTES"  # switched back
        # A failing setting: the caller gets mysqld's error, the connection comes back clean.
        err = await error_of(c.execute("SELECT 1", settings=["SET SESSION no_such_var = 1"]))
        assert err.code == 1193
        assert await value("SELECT @@sql_mode") == default
        # Settings are checked like reserve's: no BEGIN, no second statement.
        assert (await error_of(c.execute("SELECT 1", settings=["BEGIN"]))).code == 1235
        # A transaction on a pooled connection prepared by them; after it, nothing remains.
        tx = await c.begin(settings=mode)
        r = await c.execute("SELECT @@sql_mode", transaction_id=tx)
        assert first_value(r.rows[0]) == b"ANSI_QUOTES"
        await c.commit(tx)
        tx = await c.begin()
        r = await c.execute("SELECT @@sql_mode", transaction_id=tx)
        assert first_value(r.rows[0]) == default
        await c.rollback(tx)
        assert h.tablet.pools.query.stats().created == 1  # every step reused the one

    def test_call_with_several_result_sets_relays_them_all(self) -> Deferred[None]:
        return run(self._call)

    async def _call(self) -> None:
        h = await self._harness()
        c = h.client
        await h.sql("DROP PROCEDURE IF EXISTS one_set")
        await h.sql("DROP PROCEDURE IF EXISTS two_sets")
        await h.sql("CREATE PROCEDURE one_set() BEGIN SELECT 1 AS a; END")
        await h.sql("CREATE PROCEDURE two_sets() BEGIN SELECT 1 AS a; SELECT 2 AS b; END")
        r = await c.execute("CALL one_set()")
        assert [first_value(row) for row in r.rows] == [b"1"]
        r = await c.execute("CALL two_sets()")
        assert [first_value(row) for row in r.rows] == [b"1"]
        [second] = r.more
        assert [first_value(row) for row in second.rows] == [b"2"] and len(second.fields) == 1
        chunks: list[Chunk] = []  # a stream relays one set: refused, not cut
        err = await error_of(c.stream_execute("CALL two_sets()", chunks.append))
        assert (err.code, err.sqlstate) == (1312, "0A000") and "workload" in err.message
        r = await c.execute("SELECT 3")  # the connection is fine
        assert first_value(r.rows[0]) == b"3"

    def test_begin_start_option_opens_a_read_only_transaction(self) -> Deferred[None]:
        return run(self._start_option)

    async def _start_option(self) -> None:
        h = await self._harness()
        c = h.client
        await h.sql("CREATE TABLE IF NOT EXISTS ro_t (id INT PRIMARY KEY)")
        tx = await c.begin(options={"start": "READ ONLY"})
        err = await error_of(c.execute("INSERT INTO ro_t VALUES (1)", transaction_id=tx))
        assert err.code == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
        await c.rollback(tx)
        rsv = await c.reserve(["SET @a = 1"], begin=True, options={"start": "READ ONLY"})
        err = await error_of(
            c.execute("INSERT INTO ro_t VALUES (1)", transaction_id=rsv.transaction_id)
        )
        assert err.code == 1792
        await c.release(reserved_id=rsv.reserved_id)
        assert (await error_of(c.begin(options={"start": "READ; DROP"}))).code == 1210

    # --- abandoned transactions -------------------------------------------------------------

    def test_abandoned_transaction_is_rolled_back(self) -> Deferred[None]:
        return run(self._abandoned)

    async def _abandoned(self) -> None:
        h = await self._harness({"transaction.timeout": "1s"})
        c = h.client
        await h.sql("CREATE TABLE IF NOT EXISTS abandon (id INT PRIMARY KEY)")
        await h.sql("DELETE FROM abandon")
        tx = await c.begin()
        await c.execute("INSERT INTO abandon VALUES (7)", transaction_id=tx)

        async def trx_count() -> int:
            rows = await h.sql(
                "SELECT COUNT(*) FROM information_schema.innodb_trx t JOIN "
                "information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                f"WHERE p.user = '{APP_USER}'"
            )
            return int(rows[0][0])

        assert await trx_count() == 1
        await sleep(1.3)
        await wait_for(lambda: _eq(trx_count(), 0), "the transaction was rolled back on mysqld")
        # The row is not there, and its lock is gone: another connection can insert it.
        assert (await h.sql("SELECT COUNT(*) FROM abandon"))[0][0] == b"0"
        await h.sql("INSERT INTO abandon VALUES (7)")
        err = await error_of(c.execute("SELECT 1", transaction_id=tx))
        assert f"transaction {tx} has ended" in err.message
        assert "transaction.timeout (1s)" in err.message
        assert (await error_of(c.commit(tx))).code == 1105
        assert h.tablet.pools.transaction.stats().in_use == 0

    # --- timeouts and kills -----------------------------------------------------------------

    def test_query_timeout_kills_the_statement_on_mysqld(self) -> Deferred[None]:
        return run(self._timeout)

    async def _timeout(self) -> None:
        h = await self._harness({"query.timeout": "1s"})
        c = h.client
        sleeping = c.execute("SELECT SLEEP(60)")

        async def running() -> bool:
            return bool(await h.processlist(APP_USER, "SELECT SLEEP(60)%"))

        await wait_for(running, "SELECT SLEEP(60) running on mysqld", 3.0)
        err = await error_of(sleeping)
        assert err.code == 1317 and err.sqlstate == "70100"
        assert "query.timeout (1s)" in err.message and "killed on mysqld" in err.message

        async def gone() -> bool:
            return not await running()

        await wait_for(gone, "the statement is no longer in mysqld's processlist", 3.0)
        kills = h.tablet.metrics.kills
        assert kills.labels(reason="timeout")._value.get() == 1
        # KILL QUERY landed: the tablet never had to fall back to closing the connection.
        assert kills.labels(reason="timeout_stuck")._value.get() == 0
        # An RPC deadline (the gate's) also kills the statement on mysqld.
        err = await error_of(c.execute("SELECT SLEEP(61)", deadline=reactor.seconds() + 0.5))
        assert err.code == 1317

        async def gone61() -> bool:
            return not await h.processlist(APP_USER, "SELECT SLEEP(61)%")

        await wait_for(gone61, "the cancelled statement is no longer running", 3.0)
        assert kills.labels(reason="cancelled")._value.get() == 1
        r = await c.execute("SELECT 1")  # the pool is healthy afterwards
        assert first_value(r.rows[0]) == b"1"
        assert h.tablet.pools.query.stats().in_use == 0

    # --- concurrency ------------------------------------------------------------------------

    def test_many_concurrent_requests_on_one_rpc_connection(self) -> Deferred[None]:
        return run(self._concurrent)

    async def _concurrent(self) -> None:
        h = await self._harness()
        c = h.client
        ds = [c.execute("SELECT :i, REPEAT('x', :n)", {"i": i, "n": i % 50}) for i in range(500)]
        results = await gatherResults(ds)
        for i, r in enumerate(results):
            assert len(r.rows) == 1
            n = len(str(i))
            # Text row: two length-prefixed values (both shorter than 251 bytes).
            assert r.rows[0] == bytes([n]) + str(i).encode() + bytes([i % 50]) + b"x" * (i % 50)
        stats = h.tablet.pools.query.stats()
        assert stats.in_use == 0 and stats.open <= 16

    # --- policies ---------------------------------------------------------------------------

    def test_replica_refuses_writes_and_policies_apply(self) -> Deferred[None]:
        return run(self._policies)

    async def _policies(self) -> None:
        h = await self._harness(
            {
                "query.max_result_rows": 10,
                "query.warn_result_rows": 5,
                "query.denylist_tables": ["forbidden"],
                "query.denylist_patterns": [r"\bbenchmark\s*\("],
            }
        )
        c = h.client
        await h.sql("CREATE TABLE IF NOT EXISTS writes (id INT)")
        h.state.update(tablet_type="replica")
        err = await error_of(c.execute("INSERT INTO writes VALUES (1)"))
        assert err.code == 1290 and "zone1-0000000100 is a replica" in err.message
        tx = await c.begin()
        assert (await error_of(c.execute("DELETE FROM writes", transaction_id=tx))).code == 1290
        await c.rollback(tx)
        await c.execute("SELECT * FROM writes")  # reads are fine
        h.state.update(tablet_type="primary")
        await c.execute("INSERT INTO writes VALUES (1)")

        err = await error_of(c.execute("SELECT * FROM Forbidden"))
        assert err.code == 1142 and "'forbidden'" in err.message
        err = await error_of(c.execute("SELECT BENCHMARK(10, 1)"))
        assert err.code == 1105 and "disallowed due to rule" in err.message
        err = await error_of(c.execute("SELECT seq FROM seq_1_to_11"))
        assert err.code == 1104 and "Row count exceeded 10" in err.message
        r = await c.execute("SELECT seq FROM seq_1_to_10")
        assert [first_value(row) for row in r.rows] == [str(i).encode() for i in range(1, 11)]
        metrics = h.tablet.metrics
        assert metrics.rows_exceeded._value.get() == 1
        assert metrics.rows_warned._value.get() == 1

    # --- streams ----------------------------------------------------------------------------

    def test_stream_with_back_pressure(self) -> Deferred[None]:
        return run(self._stream)

    async def _stream(self) -> None:
        h = await self._harness({"query.max_result_rows": 10})
        pauses = []
        original = runner.ConnectionProducer.pauseProducing

        def counting(self: runner.ConnectionProducer) -> None:
            pauses.append(1)
            original(self)

        runner.ConnectionProducer.pauseProducing = counting  # type: ignore[method-assign]
        self.addCleanup(setattr, runner.ConnectionProducer, "pauseProducing", original)
        got: list[bytes] = []
        fields: list[bytes] = []

        def slow(chunk: Chunk) -> Deferred[None]:
            if chunk.fields:
                fields.extend(chunk.fields)
            got.extend(chunk.rows)
            return deferLater(cast(IReactorTime, reactor), 0.002, lambda: None)

        n = 30000
        done = await h.client.stream_execute(
            f"SELECT seq, REPEAT('y', 200) FROM seq_1_to_{n}", slow
        )
        await sleep(0.05)  # the final reply may overtake the consumer's last delay
        assert len(fields) == 2 and len(got) == n  # streams have no row limit
        assert [first_value(r) for r in got[:3]] == [b"1", b"2", b"3"]
        assert first_value(got[-1]) == str(n).encode()
        assert done.rows == []
        assert pauses, "the mysqld connection was never paused"
        assert h.tablet.pools.query.stats().in_use == 0

    # --- HTTP -------------------------------------------------------------------------------

    def test_http_pages(self) -> Deferred[None]:
        return run(self._http)

    async def _http(self) -> None:
        h = await self._harness()
        port = await h.http_port()
        agent = Agent(reactor)

        async def get(path: str) -> tuple[int, str]:
            response = await agent.request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
            body = await readBody(response)
            return response.code, body.decode()

        await h.client.execute("SELECT 1")
        await error_of(h.client.execute("SELECT '<script>x</script>' FROM nope"))
        assert (await get("/debug/health"))[0] == 200
        code, metrics = await get("/metrics")
        assert code == 200
        assert 'vttablet_queries_total{kind="select"} 2.0' in metrics
        assert 'vttablet_errors_total{code="1146"} 1.0' in metrics
        assert 'vttablet_pool_active{pool="query"} 0.0' in metrics
        assert "vttablet_query_duration_seconds_bucket" in metrics
        assert "vttablet_serving 1.0" in metrics
        assert 'vttablet_topo_state{state="connecting"} 1.0' in metrics
        code, page = await get("/debug/status")
        assert code == 200 and "zone1-0000000100" in page and "commerce" in page
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert "tablet-pw" not in page  # passwords redacted
        h.state.update(serving=False, error="mysqld is down")
        code, body = await get("/debug/health")
        assert code == 503 and "mysqld is down" in body


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


class BrokenConnectionTests(unittest.TestCase):
    timeout = 60

    def test_connection_killed_on_mysqld_is_replaced(self) -> Deferred[None]:
        return run(self._broken)

    async def _broken(self) -> None:
        h = await Harness.start({"pool.query.size": 2})
        self.addCleanup(lambda: Deferred.fromCoroutine(h.stop()))
        c = h.client
        await gatherResults([c.execute("SELECT SLEEP(0.1)") for _ in range(2)])
        stats = h.tablet.pools.query.stats()
        assert stats.open == 2 and stats.created == 2
        killed = await h.processlist(APP_USER)
        assert len(killed) == 2
        for thread_id, _command, _info in killed:
            await h.sql(f"KILL CONNECTION {int(thread_id)}")

        async def closed() -> bool:
            return not await h.processlist(APP_USER)

        # mysqld has closed them (the tablet learns it from the socket or the next use).
        await wait_for(closed, "the killed connections are gone from the processlist")
        results = await gatherResults([c.execute(f"SELECT {i}") for i in range(4)])
        assert [first_value(r.rows[0]) for r in results] == [b"0", b"1", b"2", b"3"]
        stats = h.tablet.pools.query.stats()
        assert stats.created >= 3 and stats.in_use == 0  # dead ones were replaced
        alive = {int(row[0]) for row in await h.processlist(APP_USER)}
        assert alive and not alive & {int(row[0]) for row in killed}

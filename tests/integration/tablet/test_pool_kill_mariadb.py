"""The tablet's pools and kills against the real MariaDB, over the real tablet RPC: the
transaction pool's bounded queue and wait timeout, the idle timeout and max lifetime seen in
mysqld's processlist, a request cancelled by the gate killed on mysqld, and the ``kill``
operation on a transaction's statement and on its whole connection."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial import unittest

from tests.integration.tablet.harness import APP_USER, Harness, first_value, sleep, wait_for
from tests.integration.tablet.test_query_mariadb import error_of, run

pytestmark = pytest.mark.integration


class TabletPoolAndKillTests(unittest.TestCase):
    timeout = 60

    async def _harness(self, overrides: dict[str, Any]) -> Harness:
        h = await Harness.start(overrides)
        self.addCleanup(lambda: Deferred.fromCoroutine(h.stop()))
        await wait_for(lambda: self._app_count(h, 0), "no tablet_app connection left over")
        return h

    async def _app_count(self, h: Harness, n: int) -> bool:
        return len(await h.processlist(APP_USER)) == n

    async def _connection_ids(self, h: Harness) -> set[int]:
        return {int(row[0]) for row in await h.processlist(APP_USER)}

    # --- transaction pool -------------------------------------------------------------------

    def test_transaction_pool_queues_rejects_and_times_out_without_leaks(self) -> Deferred[None]:
        return run(self._tx_pool)

    async def _tx_pool(self) -> None:
        h = await self._harness(
            {
                "pool.transaction.size": 2,
                "pool.transaction.max_waiters": 1,
                "pool.transaction.wait_timeout": "700ms",
            }
        )
        c = h.client
        held = [await c.begin(), await c.begin()]  # every connection of the pool
        queued = c.begin()  # waits for a connection...
        # ...and the queue (one waiter) is full: the next one is refused at once.
        err = await error_of(c.begin())
        assert err.code == 1203 and err.sqlstate == "42000", err
        assert "connection pool for transaction exhausted" in err.message, err.message
        assert err.message.endswith(
            "wait queue is full (1 waiting); raise pool.transaction.size or "
            "pool.transaction.max_waiters"
        ), err.message
        assert await c.rollback(held.pop(0)) == 0
        held.append(await queued)  # the waiter got the connection given back
        # Nobody gives one back now: the waiter gets the clean timeout error.
        err = await error_of(c.begin())
        assert err.code == 1203 and err.message.endswith(
            "waited 0.7s; raise pool.transaction.size or pool.transaction.wait_timeout"
        ), err.message
        stats = h.tablet.pools.transaction.stats()
        assert (stats.rejected, stats.wait_timeouts) == (1, 1)
        # The transactions still work, and ending them leaks nothing.
        for tx in held:
            r = await c.execute("SELECT 1", transaction_id=tx)
            assert first_value(r.rows[0]) == b"1"
            await c.commit(tx)
        pool = h.tablet.pools.transaction
        # Each connection is reset (COM_RESET_CONNECTION) after the commit's reply, then idle.
        await wait_for(lambda: _true(pool.stats().in_use == 0), "both connections given back")
        stats = pool.stats()
        assert stats.open == stats.created == 2
        assert len(await h.processlist(APP_USER)) == 2  # the same two, idle in the pool

    # --- idle timeout and max lifetime ------------------------------------------------------

    def test_idle_connections_are_closed_on_mysqld(self) -> Deferred[None]:
        return run(self._idle)

    async def _idle(self) -> None:
        h = await self._harness({"pool.idle_timeout": "1s", "pool.query.size": 3})
        await gatherResults([h.client.execute("SELECT SLEEP(0.2)") for _ in range(3)])
        assert h.tablet.pools.query.stats().open == 3
        assert len(await h.processlist(APP_USER)) == 3
        # Unused for pool.idle_timeout: the tablet closes them (mysqld sees them go).
        await wait_for(lambda: self._app_count(h, 0), "idle connections closed on mysqld")
        stats = h.tablet.pools.query.stats()
        assert stats.open == 0 and stats.closed == 3
        r = await h.client.execute("SELECT 2")  # a new one is opened on demand
        assert first_value(r.rows[0]) == b"2"

    def test_connections_are_replaced_after_their_max_lifetime(self) -> Deferred[None]:
        return run(self._lifetime)

    async def _lifetime(self) -> None:
        h = await self._harness({"pool.max_lifetime": "1s", "pool.query.size": 1})
        c = h.client

        async def connection_id() -> int:
            r = await c.execute("SELECT CONNECTION_ID()")
            value = first_value(r.rows[0])
            assert value is not None
            return int(value)

        first = await connection_id()
        assert await self._connection_ids(h) == {first}
        # Busy all the time (never idle long), yet replaced once it is older than 1s.
        seen = {first}
        for _ in range(100):
            seen.add(await connection_id())
            if len(seen) > 1:
                break
            await sleep(0.1)
        assert len(seen) > 1, "the connection was never replaced"
        await wait_for(
            lambda: _not_in(self._connection_ids(h), first), "the old connection closed on mysqld"
        )
        assert h.tablet.pools.query.stats().created >= 2

    # --- cancel and kill --------------------------------------------------------------------

    def test_request_cancelled_by_the_gate_is_killed_on_mysqld(self) -> Deferred[None]:
        return run(self._cancel)

    async def _cancel(self) -> None:
        h = await self._harness({"query.timeout": "50s"})
        d = h.client.execute("SELECT SLEEP(62)")

        async def running() -> bool:
            return bool(await h.processlist(APP_USER, "SELECT SLEEP(62)%"))

        async def gone() -> bool:
            return not await running()

        await wait_for(running, "SELECT SLEEP(62) running on mysqld")
        d.cancel()  # the gate gives up: a CANCEL frame goes to the tablet
        err = await error_of(d)
        assert err.code == 1317, err
        await wait_for(gone, "the cancelled statement is no longer running on mysqld")
        kills = h.tablet.metrics.kills
        assert kills.labels(reason="cancelled")._value.get() == 1
        assert kills.labels(reason="timeout")._value.get() == 0
        await wait_for(
            lambda: _true(h.tablet.pools.query.stats().in_use == 0), "its connection given back"
        )
        r = await h.client.execute("SELECT 3")
        assert first_value(r.rows[0]) == b"3"

    def test_kill_stops_a_transactions_statement_or_drops_its_connection(self) -> Deferred[None]:
        return run(self._kill)

    async def _kill(self) -> None:
        h = await self._harness({"query.timeout": "50s"})
        c = h.client
        await h.sql("CREATE TABLE IF NOT EXISTS killed_tx (id INT PRIMARY KEY)")
        await h.sql("DELETE FROM killed_tx")
        tx = await c.begin()
        await c.execute("INSERT INTO killed_tx VALUES (1)", transaction_id=tx)
        (conn_id,) = await self._connection_ids(h)

        def sleeping(n: int) -> Any:
            async def check() -> bool:
                return bool(await h.processlist(APP_USER, f"SELECT SLEEP({n})%"))

            return check

        # kill: the statement stops on mysqld; the transaction and its connection stay.
        d = c.execute("SELECT SLEEP(63)", transaction_id=tx)
        await wait_for(sleeping(63), "SELECT SLEEP(63) running in the transaction")
        assert await c.kill(transaction_id=tx) is True
        try:
            await d  # MariaDB may end a killed SLEEP with 1317 or with the value 1
        except Exception as e:
            assert getattr(e, "code", None) == 1317, e
        await wait_for(lambda: _not(sleeping(63)()), "the killed statement ended on mysqld")
        r = await c.execute("SELECT COUNT(*) FROM killed_tx", transaction_id=tx)
        assert first_value(r.rows[0]) == b"1"  # its own uncommitted row: same transaction
        assert await self._connection_ids(h) == {conn_id}

        # kill with connection: the connection is dropped, the transaction rolled back.
        d = c.execute("SELECT SLEEP(64)", transaction_id=tx)
        await wait_for(sleeping(64), "SELECT SLEEP(64) running in the transaction")
        assert await c.kill(transaction_id=tx, connection=True) is True
        await error_of(d)
        await wait_for(
            lambda: _not_in(self._connection_ids(h), conn_id), "the killed connection gone"
        )
        assert (await h.sql("SELECT COUNT(*) FROM killed_tx"))[0][0] == b"0"
        err = await error_of(c.execute("SELECT 1", transaction_id=tx))
        assert f"transaction {tx} has ended (killed by the gate)" in err.message, err.message
        assert await c.kill(transaction_id=tx) is False  # nothing left to kill
        await wait_for(
            lambda: _true(h.tablet.pools.transaction.stats().in_use == 0),
            "the transaction pool has nothing lent out",
        )
        assert h.tablet.pools.transaction.stats().open == 0  # dropped, not reused


async def _not_in(ids: Any, conn_id: int) -> bool:
    return conn_id not in await ids


async def _not(check: Any) -> bool:
    return not await check


async def _true(value: bool) -> bool:
    return value

"""MySQLPool of vtwist clients against the real MariaDB: concurrency beyond the pool size,
exhaustion errors, replacement of a killed connection, and no leaked server connections
(counted in the processlist, for a user only this test uses)."""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest

from tests.integration.client.support import connect_to, reactor, wait_for
from tests.support import servers
from vtwist.protocols.mysql.client import MySQLClient
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.pool import MySQLPool

pytestmark = pytest.mark.integration

USER = "pooltest"
PASSWORD = "pool-pw"


class PoolTests(unittest.TestCase):
    timeout = 120

    async def _setup(self, **kw: Any) -> tuple[MySQLPool[MySQLClient], MySQLClient]:
        db = servers.shared_mariadb()
        admin = await connect_to(db)
        self.addCleanup(admin.close)
        await admin.query(f"DROP USER IF EXISTS {USER}@'127.0.0.1'")
        await admin.query(f"CREATE USER {USER}@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        await admin.query(f"GRANT ALL ON vtwist_test.* TO {USER}@'127.0.0.1'")
        args: dict[str, Any] = {
            "size": 4,
            "max_waiters": 32,
            "wait_timeout": 10.0,
            "clock": cast(IReactorTime, reactor),
            "reset_on_release": True,
            "ping_on_checkout_after": 0.5,
            "name": "mariadb-test",
        }
        args.update(kw)
        connect_fn = partial(connect_to, db, USER, PASSWORD)
        pool: MySQLPool[MySQLClient] = MySQLPool(
            lambda: Deferred.fromCoroutine(connect_fn()), **args
        )
        self.addCleanup(pool.close)
        return pool, admin

    async def _server_connections(self, admin: MySQLClient) -> int:
        r = await admin.query(
            f"SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{USER}'"
        )
        return int(r.rows[0][0])

    def test_concurrency_beyond_the_pool_size_and_no_leaks(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._concurrency())

    async def _concurrency(self) -> None:
        pool, admin = await self._setup()

        async def work(i: int) -> int:
            async with pool.connection() as client:
                await client.query(f"SET @mine = {i}")
                r = await client.query("SELECT SLEEP(0.05), CONNECTION_ID(), @mine")
                assert r.rows[0][2] == str(i).encode()  # nobody else's session state
                return int(r.rows[0][1])

        ids = await gatherResults([Deferred.fromCoroutine(work(i)) for i in range(20)])
        assert len(ids) == 20 and len(set(ids)) <= 4

        async def reset_done() -> bool:
            return pool.stats().checking == 0

        await wait_for(reset_done, "the released connections were reset")
        st = pool.stats()
        assert (st.in_use, st.waiters, st.open, st.idle) == (0, 0, 4, 4)
        assert st.created == 4 and st.wait_count >= 16
        # reset_on_release: the session variable did not survive the checkout.
        leftover = await pool.run(lambda c: c.query("SELECT @mine"))
        assert leftover.rows == [[None]]
        assert await self._server_connections(admin) == 4
        await pool.close()

        async def all_gone() -> bool:
            return await self._server_connections(admin) == 0

        await wait_for(all_gone, "the pool's connections left the processlist")
        assert pool.stats().open == 0

    def test_exhaustion_and_replacement(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._exhaustion())

    async def _exhaustion(self) -> None:
        pool, admin = await self._setup(size=1, max_waiters=1, wait_timeout=0.3)
        held = await pool.acquire()
        waiting = pool.acquire()
        with pytest.raises(MySQLError) as info:
            await pool.acquire()
        assert (info.value.code, info.value.sqlstate) == (1203, "42000")
        assert "wait queue is full" in info.value.message
        with pytest.raises(MySQLError) as info:
            await waiting
        assert info.value.code == 1203
        assert info.value.message.startswith("connection pool for mariadb-test exhausted: 1 in use")
        # mysqld kills the connection while it is lent; the pool replaces it.
        old_id = held.client.connection_id
        await admin.query(f"KILL {old_id}")

        async def lost() -> bool:
            return held.client.is_broken

        await wait_for(lost, "the killed connection noticed")
        held.release()
        fresh = await pool.acquire()
        assert fresh.client.connection_id != old_id and not fresh.client.is_broken
        fresh.release()
        st = pool.stats()
        assert (st.created, st.closed, st.open, st.wait_timeouts, st.rejected) == (2, 1, 1, 1, 1)
        assert await self._server_connections(admin) == 1

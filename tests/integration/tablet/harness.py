"""A real tablet in the test process: the vttablet wiring (``tap.Tablet``) against the
session's MariaDB, its RPC listener on a free loopback port, and a TabletRPCClient.

The health, role and publication services are not started: tests set the tablet state
themselves (serving primary by default). Dedicated MySQL users (``tablet_app``,
``tablet_dba``) make processlist counts exact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import deferLater

from tests.support import servers
from vtwist.config import load_config
from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.client import MySQLClient, connect
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.tablet.config import SCHEMA
from vtwist.tablet.tap import Tablet

reactor = cast(Any, global_reactor)

APP_USER = "tablet_app"
DBA_USER = "tablet_dba"
PASSWORD = "tablet-pw"
DATABASE = "vtwist_test"

_users_ready = False


async def admin(db: MariaDB) -> MySQLClient:
    """A connection as the launcher's all-privileges user."""
    return await connect(reactor, ("127.0.0.1", db.port), db.user, db.password, DATABASE)


async def ensure_users(db: MariaDB) -> None:
    """Create the tablet's app and dba users once per session."""
    global _users_ready
    if _users_ready:
        return
    conn = await admin(db)
    try:
        for user, grant in ((APP_USER, f"ALL ON {DATABASE}.*"), (DBA_USER, "ALL ON *.*")):
            await conn.query(f"DROP USER IF EXISTS {user}@'127.0.0.1'")
            await conn.query(f"CREATE USER {user}@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            await conn.query(f"GRANT {grant} TO {user}@'127.0.0.1'")
    finally:
        await conn.close()
    _users_ready = True


def tablet_config(db: MariaDB, **overrides: Any) -> dict[str, Any]:
    """Config values (TOML-typed) for a tablet in front of ``db``."""
    values: dict[str, Any] = {
        "alias": "zone1-0000000100",
        "keyspace": "commerce",
        "shard": "0",
        "tablet_type": "primary",
        "topo.address": "memory:",
        "mysql.host": "127.0.0.1",
        "mysql.port": db.port,
        "mysql.database": DATABASE,
        "mysql.app_user": APP_USER,
        "mysql.app_password": PASSWORD,
        "mysql.dba_user": DBA_USER,
        "mysql.dba_password": PASSWORD,
        "rpc.listen": "tcp:0:interface=127.0.0.1",
        "http.listen": "tcp:0:interface=127.0.0.1",
    }
    values.update(overrides)
    return values


class Harness:
    """One tablet and one RPC client to it; ``stop()`` undoes everything."""

    def __init__(self, tablet: Tablet, client: TabletRPCClient) -> None:
        self.tablet = tablet
        self.client = client
        self.service = tablet.service
        self.state = tablet.state
        self.db = servers.shared_mariadb()
        self.extra_clients: list[TabletRPCClient] = []

    @classmethod
    async def start(cls, overrides: dict[str, Any] | None = None) -> Harness:
        db = servers.shared_mariadb()
        await ensure_users(db)
        config = load_config(SCHEMA, None, overrides=tablet_config(db, **(overrides or {})))
        tablet = Tablet(config, reactor)
        tablet.state.update(serving=True, error="")
        tablet.rpc.startService()
        tablet.http.startService()
        port = await tablet.rpc.whenListening()
        address = cast(IPv4Address, port.getHost())
        endpoint = TCP4ClientEndpoint(cast(IReactorTCP, reactor), "127.0.0.1", address.port)
        client = await endpoint.connect(TabletRPCClientFactory(cast(IReactorTime, reactor)))
        assert isinstance(client, TabletRPCClient)
        await client.when_ready()
        return cls(tablet, client)

    async def another_client(self) -> TabletRPCClient:
        """A second RPC connection to the same tablet (closed by ``stop()``)."""
        port = await self.tablet.rpc.whenListening()
        address = cast(IPv4Address, port.getHost())
        endpoint = TCP4ClientEndpoint(cast(IReactorTCP, reactor), "127.0.0.1", address.port)
        client = await endpoint.connect(TabletRPCClientFactory(cast(IReactorTime, reactor)))
        assert isinstance(client, TabletRPCClient)
        await client.when_ready()
        self.extra_clients.append(client)
        return client

    async def http_port(self) -> int:
        port = await self.tablet.http.whenListening()
        return cast(IPv4Address, port.getHost()).port

    async def stop(self) -> None:
        for client in [self.client, *self.extra_clients]:
            await client.close()
        await self.tablet.rpc.stopService()
        await self.tablet.http.stopService()
        await self.service.shutdown()
        await self.tablet.pools.close()

    async def processlist(self, user: str = APP_USER, like: str = "%") -> list[tuple[Any, ...]]:
        """(id, command, info) of ``user``'s connections whose statement matches ``like``."""
        conn = await admin(self.db)
        try:
            r = await conn.query(
                "SELECT id, command, info FROM information_schema.processlist "
                f"WHERE user = '{user}' AND COALESCE(info, '') LIKE '{like}'"
            )
        finally:
            await conn.close()
        return [tuple(row) for row in r.rows]

    async def sql(self, statement: str) -> list[list[Any]]:
        """Run ``statement`` directly on mysqld (not through the tablet); its rows."""
        conn = await admin(self.db)
        try:
            r = await conn.query(statement)
        finally:
            await conn.close()
        return r.rows


async def sleep(seconds: float) -> None:
    await deferLater(cast(IReactorTime, reactor), seconds, lambda: None)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` every 50 ms until true (AssertionError after ``timeout``)."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await sleep(0.05)
    raise AssertionError(f"still not true after {timeout}s: {what}")


def first_value(row: bytes) -> bytes | None:
    """The first column of a raw text-row payload."""
    if row[0] == 0xFB:
        return None
    n = row[0]
    assert n < 251
    return row[1 : 1 + n]

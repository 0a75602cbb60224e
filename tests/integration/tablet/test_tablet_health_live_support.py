"""Helpers of the tablet health/role integration tests (real MariaDB and ZooKeeper).

The MariaDB instances here are PRIVATE to one test class (these tests stop them, restart
them and flip their read_only): never the session's shared instance. This module holds no
tests; its name only follows the file ownership pattern.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from tests.support.servers import scratch_dir, shared_zookeeper
from tests.unit.tablet.test_tablet_health_fakes import health_config
from tests.unit.topo.helpers import eventually_async
from vtwist.config import Config
from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.client import MySQLClient, connect
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.tablet.state import TabletState
from vtwist.topo import Keyspace, Shard, Tablet, TopoServer, open_topo
from vtwist.topo.errors import NoNodeError

reactor: Any = cast(Any, global_reactor)
T = TypeVar("T")

KS, SHARD, CELL = "commerce", "0", "zone1"

#: Fast probing and publishing: the tests wait for flips, they never sleep fixed times.
LIVE_CONFIG = """
[health]
interval = "200ms"
probe_timeout = "2s"
[publish]
min_interval = "100ms"
[role]
retry_interval = "200ms"
"""


def live_config() -> Config:
    return health_config(LIVE_CONFIG)


def blocking(fn: Callable[[], T]) -> Deferred[T]:
    """Run a blocking call (server start/stop, PyMySQL) off the reactor thread."""
    d: Deferred[T] = deferToThread(fn)
    return d


def private_mariadb(name: str, server_id: int = 1) -> MariaDB:
    """Start a MariaDB of its own (blocking): the caller stops it with ``destroy()``."""
    return MariaDB(scratch_dir(name), server_id=server_id).start()


def sql(m: MariaDB, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement as root over the private socket (blocking); the rows."""
    conn = m.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def dba_pool(m: MariaDB) -> MySQLPool[MySQLClient]:
    """The tablet's dba pool to ``m``, as the tap would build it (small, bounded)."""
    connect_fn = functools.partial(
        connect,
        reactor,
        (m.host, m.port),
        m.user,
        m.password,
        connect_timeout=2.0,
        read_timeout=5.0,
    )
    return MySQLPool(connect_fn, size=2, max_waiters=4, wait_timeout=2.0, clock=reactor)


async def topo_client(root: str) -> TopoServer:
    zk = shared_zookeeper()
    topo = open_topo(zk.address(root), reactor, session_timeout=4.0, op_timeout=5.0)
    await topo.connect(10)
    return topo


def new_root() -> str:
    return f"/tablet{uuid.uuid4().hex[:12]}"


async def create_shard(admin: TopoServer, primary: str | None = None, term: int = 0) -> Shard:
    await admin.create_keyspace(Keyspace(KS))
    shard = Shard.new(KS, SHARD)
    if primary is not None or term:
        shard = replace(shard, primary_alias=primary, primary_term=term)
    created: Shard = await admin.create_shard(shard)
    return created


def tablet_state(alias: str, tablet_type: str, m: MariaDB) -> TabletState:
    state = TabletState(
        alias=alias,
        keyspace=KS,
        shard=SHARD,
        cell=CELL,
        hostname="127.0.0.1",
        tablet_type=tablet_type,
        clock=reactor,
    )
    state.update(ports={"rpc": 0, "http": 0, "mysql": m.port})
    return state


async def read_node(admin: TopoServer, alias: str) -> Tablet | None:
    try:
        got: Tablet = await admin.get_tablet(alias)
        return got
    except NoNodeError:
        return None


async def node_until(
    admin: TopoServer, alias: str, check: Callable[[Tablet | None], bool], what: str
) -> Tablet | None:
    """Poll the topo node until ``check`` holds (fail after 15 s); the node seen last."""
    seen: list[Tablet | None] = [None]

    async def poll() -> bool:
        seen[0] = await read_node(admin, alias)
        return check(seen[0])

    await eventually_async(poll, what)
    return seen[0]

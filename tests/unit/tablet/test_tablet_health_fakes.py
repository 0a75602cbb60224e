"""Fakes shared by the health, publisher and role unit tests: a scripted mysqld behind a real
``MySQLPool``, an in-memory topo on a ``task.Clock``, and a pump that runs the clock's
zero-delay calls (the memory topo delivers its results through ``callLater(0)``).

This module holds no tests; its name only follows the file ownership pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from vtwist.config import Config, Schema, parse_config
from vtwist.protocols.mysql.client_commands import Result
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.tablet.health_keys import HEALTH_CHECKS, HEALTH_OPTIONS
from vtwist.tablet.state import TabletState
from vtwist.topo import Keyspace, MemoryTopoBackend, Shard, TopoServer, memory_topo
from vtwist.topo.memory import MemoryConn

ALIAS = "zone1-100"
OTHER = "zone1-200"
KS, SHARD = "commerce", "0"

SLAVE_COLUMNS = [
    "Connection_name",
    "Slave_IO_Running",
    "Slave_SQL_Running",
    "Last_IO_Error",
    "Last_SQL_Error",
    "Seconds_Behind_Master",
]


def pump(clock: Clock, rounds: int = 1000) -> None:
    """Run every call due now (and those they schedule for now), without moving time."""
    for _ in range(rounds):
        if not any(dc.getTime() <= clock.seconds() for dc in clock.getDelayedCalls()):
            return
        clock.advance(0)
    raise AssertionError("the clock never settles: a zero-delay loop?")


def advance(clock: Clock, seconds: float, step: float = 0.0625) -> None:
    """Move time forward in small steps (exact binary fractions, so timers due at whole
    seconds do run), running everything due on the way."""
    end = clock.seconds() + seconds
    pump(clock)
    while clock.seconds() < end - 1e-9:
        clock.advance(min(step, end - clock.seconds()))
        pump(clock)


def result(columns: list[str], rows: list[list[bytes | None]]) -> Result:
    """A text-protocol result set."""
    return Result(
        columns=[ColumnDefinition41(name=c, column_type=253) for c in columns],
        rows=[list(r) for r in rows],
    )


@dataclass
class FakeMysqld:
    """What the fake connections answer; flip the fields to script mysqld's behaviour."""

    up: bool = True
    hang: bool = False  # accept queries and never answer them
    read_only: bool = False
    gtid: str = "0-1-10"
    #: One dict per replication channel (keys of SLAVE_COLUMNS); empty: not a replica.
    channels: list[dict[str, str | None]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    clients: list[FakeClient] = field(default_factory=list)
    pending: list[Deferred[Result]] = field(default_factory=list)

    def replicating(self, lag: int | None = 0, io: str = "Yes", sql: str = "Yes") -> None:
        """Configure one replication channel with this state."""
        self.channels = [
            {
                "Connection_name": "",
                "Slave_IO_Running": io,
                "Slave_SQL_Running": sql,
                "Last_IO_Error": "" if io == "Yes" else "error connecting to master",
                "Last_SQL_Error": "",
                "Seconds_Behind_Master": None if lag is None else str(lag),
            }
        ]

    def stop(self) -> None:
        """mysqld goes away: open connections break, new ones are refused."""
        self.up = False
        for c in self.clients:
            c.broken = True

    def answer(self, sql: str) -> Deferred[Result]:
        self.queries.append(sql)
        if self.hang:
            d: Deferred[Result] = Deferred()
            self.pending.append(d)
            return d
        if not self.up:
            return fail(MySQLError(ErrorCode.CR_SERVER_LOST, "Lost connection to MySQL server"))
        if sql.startswith("SELECT @@global.read_only"):
            return succeed(
                result(["ro", "gtid"], [[b"1" if self.read_only else b"0", self.gtid.encode()]])
            )
        if sql == "SHOW ALL SLAVES STATUS":
            rows = [
                [None if ch[c] is None else str(ch[c]).encode() for c in SLAVE_COLUMNS]
                for ch in self.channels
            ]
            return succeed(result(SLAVE_COLUMNS, rows))
        if sql.startswith("SET GLOBAL read_only = "):
            self.read_only = sql.endswith("ON")
            return succeed(Result())
        return fail(MySQLError(ErrorCode.PARSE_ERROR, f"fake mysqld cannot run {sql!r}"))


class FakeClient:
    """A dba connection to ``FakeMysqld`` (the parts of MySQLClient the tablet uses)."""

    def __init__(self, mysqld: FakeMysqld) -> None:
        self.mysqld = mysqld
        self.broken = False
        self._busy = 0

    @property
    def is_broken(self) -> bool:
        return self.broken

    @property
    def busy(self) -> bool:
        return self._busy > 0

    @property
    def in_transaction(self) -> bool:
        return False

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._busy += 1

        def done(r: object) -> object:
            self._busy -= 1
            return r

        return d.addBoth(done)

    def ping(self) -> Deferred[None]:
        if self.broken or not self.mysqld.up:
            self.broken = True
            return fail(MySQLError(ErrorCode.CR_SERVER_GONE_ERROR, "MySQL server has gone away"))
        return succeed(None)

    def query(self, sql: str) -> Deferred[Result]:
        if self.broken:
            return fail(MySQLError(ErrorCode.CR_SERVER_GONE_ERROR, "MySQL server has gone away"))
        return self._track(self.mysqld.answer(sql))

    def reset_connection(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.broken = True
        return succeed(None)


def fake_pool(mysqld: FakeMysqld, clock: Clock, size: int = 4) -> MySQLPool[FakeClient]:
    """A real MySQLPool whose connections are ``FakeClient``s of ``mysqld``."""

    def connect() -> Deferred[FakeClient]:
        if not mysqld.up:
            return fail(
                MySQLError(
                    ErrorCode.CR_CONNECTION_ERROR,
                    "Can't connect to MySQL server on '127.0.0.1' (111 Connection refused)",
                )
            )
        client = FakeClient(mysqld)
        mysqld.clients.append(client)
        return succeed(client)

    return MySQLPool(connect, size=size, max_waiters=8, wait_timeout=2.0, clock=clock)


def make_state(clock: Clock, tablet_type: str = "primary", alias: str = ALIAS) -> TabletState:
    state = TabletState(
        alias=alias,
        keyspace=KS,
        shard=SHARD,
        cell="zone1",
        hostname="127.0.0.1",
        tablet_type=tablet_type,
        clock=clock,
    )
    state.update(ports={"rpc": 16100, "http": 15100, "mysql": 3306})
    return state


def health_config(text: str = "") -> Config:
    """A Config of the health keys alone (the tablet's SCHEMA includes the same options)."""
    return parse_config(Schema("vttablet", HEALTH_OPTIONS, checks=HEALTH_CHECKS), text)


class Topo:
    """An in-memory topo shared by several clients, all on one Clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.backend = MemoryTopoBackend()

    def client(self) -> TopoServer:
        topo = memory_topo(self.clock, self.backend)
        d = topo.connect(1)
        pump(self.clock)
        assert d.called
        return topo

    def run(self, d: Deferred[Any]) -> Any:
        """Wait (on the clock) for ``d`` and return its result, or raise its failure."""
        pump(self.clock)
        assert d.called, "the topo operation did not complete"
        out: list[Any] = []
        d.addBoth(out.append)
        value = out[0]
        if hasattr(value, "raiseException"):
            value.raiseException()
        return value

    def setup_shard(
        self, admin: TopoServer, primary: str | None = None, term: int = 0, create: bool = True
    ) -> Shard | None:
        self.run(admin.create_keyspace(Keyspace(KS)))
        if not create:
            return None
        shard = Shard.new(KS, SHARD)
        if primary is not None or term:
            shard = replace(shard, primary_alias=primary, primary_term=term)
        created: Shard = self.run(admin.create_shard(shard))
        return created

    def set_primary(self, admin: TopoServer, primary: str | None, term: int) -> Shard:
        """What a reparent does to the shard record (a CAS write)."""
        current: Shard = self.run(admin.get_shard(KS, SHARD))
        updated: Shard = self.run(
            admin.update_shard(replace(current, primary_alias=primary, primary_term=term))
        )
        return updated


def conn(topo: TopoServer) -> MemoryConn:
    c: Any = topo.conn
    assert isinstance(c, MemoryConn)
    return c

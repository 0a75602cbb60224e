"""Fakes for the query service's unit tests: a scripted mysqld, its clients, RPC contexts.

``FakeMySQL`` understands a tiny SQL of its own on every connection:

- ``SELECT rows N``: N one-column rows; ``SELECT ...`` anything else: one row;
- ``SELECT SLEEP ...``: runs until a ``KILL QUERY <id>`` (then ERROR 1317) or forever;
- ``FAIL code``: ERROR ``code``; ``BEGIN``/``COMMIT``/``ROLLBACK``: the transaction flag;
- ``WARN N``: an OK with N warnings; ``SHOW WARNINGS LIMIT k`` lists up to k of them
  (``DO ...`` keeps them)
  (``Warning``, 1000 + i, ``w<i> on <connection id>``); other statements clear them;
- ``KILL QUERY id``/``KILL CONNECTION id``: what mysqld does; anything else: OK.

Every statement is recorded per connection id, so tests can see what reached "mysqld".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from zope.interface import implementer

from vtwist.interfaces import IRowSink, ITabletRPCRequest
from vtwist.protocols.mysql.client import Result
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Ok
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.protocols.mysql.values import encode_text_row
from vtwist.tablet.metrics import TabletMetrics
from vtwist.tablet.policies import QueryPolicy
from vtwist.tablet.pools import TabletPools
from vtwist.tablet.query import QuerySettings, TabletQueryService
from vtwist.tablet.state import TabletState

COLUMN = ColumnDefinition41("c", 253)


def text_row(value: str) -> bytes:
    data = value.encode()
    return bytes([len(data)]) + data


class FakeClient:
    """One connection to the fake mysqld (the parts of ``MySQLClient`` the tablet uses)."""

    def __init__(self, server: FakeMySQL, connection_id: int) -> None:
        self.server = server
        self.connection_id = connection_id
        self.is_broken = False
        self.busy = False
        self.in_transaction = False
        self.paused = 0
        self.resets = 0
        self.sleeping: Deferred[Result] | None = None
        self.warnings = 0  # of the last statement (``WARN N``)

    def stream_query(self, sql: bytes | str, consumer: Callable[[Any], object]) -> Deferred[Result]:
        text = sql.decode() if isinstance(sql, bytes) else sql
        self.server.log.append((self.connection_id, text))
        if self.is_broken:
            return fail(MySQLError(ErrorCode.CR_SERVER_GONE_ERROR, "gone"))
        word = text.split()[0].upper()
        if text.upper().startswith("SHOW WARNINGS LIMIT "):
            n = min(self.warnings, int(text.split()[3]))
            consumer(ResultSetStart(3))
            for i in range(n):
                message = f"w{i} on {self.connection_id}".encode()
                consumer(Row(encode_text_row([b"Warning", str(1000 + i).encode(), message])))
            consumer(ResultSetDone())
            return succeed(Result(row_count=n))
        if word != "DO":  # (DO keeps the warnings before it, as mysqld does)
            self.warnings = int(text.split()[1]) if word == "WARN" else 0
        if word == "WARN":
            consumer(Ok(warnings=self.warnings))
            return succeed(Result(warnings=self.warnings))
        if word == "FAIL":
            return fail(MySQLError(int(text.split()[1]), "scripted failure"))
        if word in ("BEGIN", "COMMIT", "ROLLBACK") or text.upper().startswith("CALL LEAVE_OPEN"):
            # (CALL leave_open: a procedure whose START TRANSACTION has no COMMIT)
            self.in_transaction = word in ("BEGIN", "CALL")
            consumer(Ok())
            return succeed(Result(status=1 if self.in_transaction else 0))
        if text.upper().startswith("SELECT SLEEP"):
            self.busy = True
            self.sleeping = Deferred()
            return self.sleeping
        if word == "SELECT":
            parts = text.split()
            n = int(parts[2]) if len(parts) > 2 and parts[1] == "rows" else 1
            consumer(ResultSetStart(1))
            consumer(Column(COLUMN))
            for i in range(n):
                consumer(Row(text_row(str(i))))
            consumer(ResultSetDone())
            return succeed(Result(columns=[COLUMN], row_count=n))
        consumer(Ok(affected_rows=1))
        return succeed(Result(affected_rows=1))

    def stream_query_notify(
        self,
        sql: bytes | str,
        consumer: Callable[[Any], object],
        done: Callable[[Any], object],
        infile: bytes | None = None,
    ) -> None:
        if infile is not None:
            self.server.files.append((self.connection_id, infile))
        self.stream_query(sql, consumer).addBoth(done)

    def query(self, sql: str) -> Deferred[Result]:
        self.server.log.append((self.connection_id, sql))
        parts = sql.split()
        if parts[0] == "KILL":
            return self.server.kill(int(parts[2]), parts[1] == "CONNECTION")
        return succeed(Result())

    def wake(self, result: Result | None = None) -> None:
        """Let a sleeping statement finish normally (mysqld's SLEEP returning)."""
        d, self.sleeping = self.sleeping, None
        self.busy = False
        if d is not None:
            d.callback(result or Result(columns=[COLUMN], row_count=0))

    def _interrupt(self, error: MySQLError) -> None:
        d, self.sleeping = self.sleeping, None
        self.busy = False
        if d is not None:
            d.errback(error)

    def reset_connection(self) -> Deferred[None]:
        self.resets += 1
        self.in_transaction = False
        self.server.log.append((self.connection_id, "RESET"))
        return succeed(None)

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.is_broken = True
        self._interrupt(MySQLError(ErrorCode.CR_SERVER_LOST, "closed"))
        return succeed(None)

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass


class FakeMySQL:
    """The fake mysqld: hands out connections, executes kills, logs statements."""

    def __init__(self) -> None:
        self.clients: dict[int, FakeClient] = {}
        self.log: list[tuple[int, str]] = []
        self.files: list[tuple[int, bytes]] = []  # LOAD DATA LOCAL files, per connection
        self.kill_blocked = False  # KILL never answers (a stuck mysqld)
        self._next = 100

    def connect(self) -> Deferred[FakeClient]:
        self._next += 1
        client = FakeClient(self, self._next)
        self.clients[client.connection_id] = client
        return succeed(client)

    def kill(self, connection_id: int, connection: bool) -> Deferred[Result]:
        if self.kill_blocked:
            return Deferred()
        target = self.clients.get(connection_id)
        if target is None:
            return fail(MySQLError(ErrorCode.NO_SUCH_THREAD, "Unknown thread id"))
        target._interrupt(
            MySQLError(ErrorCode.QUERY_INTERRUPTED, "Query execution was interrupted")
        )
        if connection:
            target.is_broken = True
        return succeed(Result())

    def statements(self, connection_id: int | None = None) -> list[str]:
        return [s for cid, s in self.log if connection_id is None or cid == connection_id]


@implementer(ITabletRPCRequest)
class FakeRequest:
    """An ``ITabletRPCRequest`` whose cancellation the test triggers."""

    def __init__(self, request_id: int = 1, op: str = "execute") -> None:
        self.request_id = request_id
        self.op = op
        self.deadline: float | None = None
        self.cancelled = False
        self.cancel_reason: str | None = None
        self.peer = "test"
        self.hooks: list[Callable[[str], object]] = []
        self.infile_asks: list[int] = []  # max_bytes of each read_infile

    def read_infile(self, max_bytes: int) -> Deferred[bytes]:
        self.infile_asks.append(max_bytes)
        return succeed(b"1,a\n" if len(self.infile_asks) == 1 else b"")

    def on_cancel(self, hook: Callable[[str], object]) -> None:
        if self.cancelled:
            hook(self.cancel_reason or "cancelled")
        else:
            self.hooks.append(hook)

    def cancel(self, reason: str = "cancelled") -> None:
        self.cancelled = True
        self.cancel_reason = reason
        for hook in self.hooks:
            hook(reason)


@implementer(IRowSink)
class FakeSink:
    """An ``IRowSink`` recording fields, rows and the producer."""

    def __init__(self) -> None:
        self.fields: list[bytes] | None = None
        self.rows: list[bytes] = []
        self.producer: IPushProducer | None = None
        self.unregistered = False

    def send_fields(self, fields: Sequence[bytes]) -> None:
        assert self.fields is None
        self.fields = list(fields)

    def send_rows(self, rows: Sequence[bytes]) -> None:
        self.rows.extend(rows)

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True


def make_service(
    clock: Clock,
    *,
    tablet_type: str = "primary",
    serving: bool = True,
    query_size: int = 2,
    tx_size: int = 2,
    settings: QuerySettings | None = None,
    policy: QueryPolicy | None = None,
) -> tuple[TabletQueryService, FakeMySQL]:
    """A query service on the fake mysqld, with small pools and a fake clock."""
    server = FakeMySQL()
    state = TabletState(
        alias="zone1-100",
        keyspace="ks",
        shard="0",
        cell="zone1",
        hostname="127.0.0.1",
        tablet_type=tablet_type,
        clock=clock,
    )
    state.update(serving=serving, error="" if serving else "probe failed")

    def pool(name: str, size: int) -> MySQLPool[Any]:
        return MySQLPool(
            server.connect,
            size,
            10,
            1.0,
            None,
            None,
            clock=clock,
            ping_on_checkout_after=None,
            name=name,
        )

    pools = TabletPools(pool("query", query_size), pool("transaction", tx_size), pool("dba", 1))
    service = TabletQueryService(
        state=state,
        pools=pools,
        policy=policy or QueryPolicy(max_result_rows=100, warn_result_rows=50),
        metrics=TabletMetrics(),
        clock=clock,
        settings=settings or QuerySettings(query_timeout=10.0, transaction_timeout=30.0),
    )
    return service, server

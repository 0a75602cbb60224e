"""Fakes for the gate's unit tests: a topo cache, tablets served over real RPC (iosim), and
a recording result sink.

``FakeTablet`` is an ``ITabletService`` with a tiny SQL of its own: ``select ...`` answers
one row holding the tablet's alias, ``error N`` fails with ``MySQLError(N)``, ``sleep``
never answers (until cancelled), ``warn N`` (and ``select warn N``) answers N warnings with
their notes (``Warning``, 1000 + i, ``w<i> at <alias>``); anything else is an OK with one
affected row. It records
every operation as ``(op, args)``, and keeps transaction/reservation ids like a tablet.
Each tablet is reached through a real ``TabletRPCClient``/``TabletRPCServer`` pair over an
iosim pump; ``FakeLink`` plays the connector (health pushes are delivered directly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from zope.interface import implementer

from vtwist.gate.discovery import Discovery
from vtwist.gate.gate import Gate, GateSettings
from vtwist.gate.policies import RandomPolicy
from vtwist.gate.session import GateSession
from vtwist.interfaces import (
    IClientFile,
    IResultSink,
    ITabletRPCRequest,
    ITabletService,
    ITopoCache,
    ReplyEndsCommand,
)
from vtwist.protocols.mysql.constants import ColumnType, ServerStatus
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.server_types import ClientInfo
from vtwist.protocols.mysql.values import decode_text_row, encode_text_row
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.protocols.tabletrpc_ops import (
    HELD_GONE,
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    ManageArgs,
    Note,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    TransactionArgs,
)
from vtwist.protocols.tabletrpc_server import TabletRPCServerFactory
from vtwist.topo.records import Keyspace, Shard, Tablet

MORE_RESULTS = int(ServerStatus.MORE_RESULTS_EXISTS)

FIELD = ColumnDefinition41("tablet", ColumnType.VAR_STRING, 45, 100).encode()


@implementer(ITabletService)
class FakeTablet:
    """A recording tablet service (module docstring)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.calls: list[tuple[str, Any]] = []
        self.next_id = 100
        self.transactions: dict[int, int] = {}  # tid -> reserved id (0: none)
        self.reserved: set[int] = set()
        self.cancelled: list[str] = []
        self.files: list[bytes] = []  # LOAD DATA LOCAL files read whole
        self.pieces: list[bytes] = []
        #: What the manage action "status" reports as "replication" (None: not asked).
        self.replication: dict[str, Any] | None = None
        #: What ``begin`` fails with (the transaction pool exhausted...); None: it begins.
        self.begin_error: MySQLError | None = None
        self._health: dict[str, Any] = {}

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    async def _load(self, request: ITabletRPCRequest) -> QueryResult:
        """Read the streamed file in pieces of at most 4 bytes (each piece read is noted in
        ``pieces``); the result's affected rows are its lines."""
        data = b""
        while True:
            piece: bytes = await request.read_infile(4)
            self.pieces.append(piece)
            if not piece:
                break
            data += piece
        self.files.append(data)
        return QueryResult([], [], affected_rows=data.count(b"\n"))

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Any:
        """What mysqld would answer; in a transaction its status says IN_TRANS, except after
        ``call commits_inside`` (a procedure that ends the transaction itself)."""
        result = self._execute(request, args)
        if not args.transaction_id or args.sql.lower().startswith("call commits_inside"):
            return result

        def in_trans(r: Any) -> Any:
            return r._replace(status_flags=r.status_flags | 1) if isinstance(r, QueryResult) else r

        return result.addCallback(in_trans) if isinstance(result, Deferred) else in_trans(result)

    def _execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Any:
        self.calls.append(("execute", args))
        if args.infile_stream:  # LOAD DATA LOCAL: pull the file, as mysqld would ask for it
            return Deferred.fromCoroutine(self._load(request))
        sql = args.sql.strip().lower()
        if args.transaction_id:
            self._check_transaction(args.transaction_id)
        if args.reserved_id and args.reserved_id not in self.reserved:
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR, f"reserved {args.reserved_id} ended{HELD_GONE}"
            )
        if sql.startswith("error "):
            raise MySQLError(int(sql.split()[1]), "scripted error")
        for setting in args.settings or ():  # "set x = 'error N'": that setting fails
            if "'error " in setting:
                raise MySQLError(int(setting.split("'error ")[1].split("'")[0]), "bad setting")
        last = (args.settings or [""])[-1]
        if "'warn " in last and (args.options or {}).get("setting_warnings"):
            n = int(last.split("'warn ")[1].split("'")[0])  # "set x = 'warn N'": it warned
            return QueryResult([], [], warnings=n, notes=self.notes(n))
        if sql.startswith(("sleep", "select sleep")):
            d: Deferred[QueryResult] = Deferred()
            request.on_cancel(self.cancelled.append)
            return d
        if sql == "select last_insert_id()":  # (the gate's own question, never rewritten)
            return QueryResult([FIELD], [encode_text_row([b"77"])])
        if sql.startswith(("warn ", "select warn ")):
            n = int(sql.split()[-1])
            notes = self.notes(n)
            if sql.startswith("select"):
                return QueryResult(
                    [FIELD], [encode_text_row([self.alias.encode()])], 0, 0, n, 0, "", notes
                )
            return QueryResult([], [], warnings=n, notes=notes)
        if sql.startswith("select"):
            return QueryResult([FIELD], [encode_text_row([self.alias.encode()])])
        if sql.startswith("call two_sets"):  # a procedure returning two result sets
            second = QueryResult([FIELD], [encode_text_row([b"second"]), encode_text_row([b"x"])])
            return QueryResult(
                [FIELD], [encode_text_row([self.alias.encode()])], status_flags=10, more=(second,)
            )
        return QueryResult([], [], affected_rows=1, insert_id=7)

    def notes(self, n: int) -> tuple[Note, ...]:
        return tuple(Note("Warning", 1000 + i, f"w{i} at {self.alias}") for i in range(n))

    def stream_execute(self, request: ITabletRPCRequest, args: ExecuteArgs, sink: Any) -> Any:
        """``select rows N``: N rows holding their number; other selects: the alias."""
        self.calls.append(("stream_execute", args))
        words = args.sql.lower().split()
        if words[:2] == ["select", "sleep"]:
            d: Deferred[QueryResult] = Deferred()
            request.on_cancel(self.cancelled.append)
            return d
        sink.send_fields([FIELD])
        if words[:2] == ["select", "rows"]:
            for start in range(0, int(words[2]), 100):
                batch = range(start, min(start + 100, int(words[2])))
                sink.send_rows([encode_text_row([str(i).encode()]) for i in batch])
        else:
            sink.send_rows([encode_text_row([self.alias.encode()])])
        if words[:2] == ["select", "warn"]:
            n = int(words[2])
            return QueryResult([], [], warnings=n, notes=self.notes(n))
        return QueryResult([], [])

    def begin(self, request: ITabletRPCRequest, args: BeginArgs) -> int:
        self.calls.append(("begin", args))
        if self.begin_error is not None:
            raise self.begin_error
        tid = self._id()
        self.transactions[tid] = args.reserved_id
        return tid

    def commit(self, request: ITabletRPCRequest, args: TransactionArgs) -> int:
        self.calls.append(("commit", args))
        self._check_transaction(args.transaction_id)
        return self.transactions.pop(args.transaction_id)

    def rollback(self, request: ITabletRPCRequest, args: TransactionArgs) -> int:
        self.calls.append(("rollback", args))
        self._check_transaction(args.transaction_id)
        return self.transactions.pop(args.transaction_id)

    def _check_transaction(self, tid: int) -> None:
        """The tablet's answer for a transaction it ended (``end_transactions``)."""
        if tid not in self.transactions:
            raise MySQLError(ErrorCode.UNKNOWN_ERROR, f"transaction {tid} has ended{HELD_GONE}")

    def end_transactions(self) -> None:
        """End every open transaction, as ``transaction.timeout`` does to idle ones."""
        for rid in self.transactions.values():
            self.reserved.discard(rid)
        self.transactions.clear()

    def reserve(self, request: ITabletRPCRequest, args: ReserveArgs) -> ReserveResult:
        self.calls.append(("reserve", args))
        rid = self._id()
        self.reserved.add(rid)
        tid = args.transaction_id
        if args.begin:
            tid = self._id()
        if tid:
            self.transactions[tid] = rid
        return ReserveResult(rid, tid)

    def release(self, request: ITabletRPCRequest, args: ReleaseArgs) -> None:
        self.calls.append(("release", args))
        self.reserved.discard(args.reserved_id)
        for tid, rid in list(self.transactions.items()):
            if rid == args.reserved_id:
                del self.transactions[tid]

    def kill(self, request: ITabletRPCRequest, args: KillArgs) -> bool:
        self.calls.append(("kill", args))
        return True

    def manage(self, request: ITabletRPCRequest, args: ManageArgs) -> Deferred[dict[str, Any]]:
        self.calls.append(("manage", args))
        if args.action == "status" and self.replication is not None:
            return succeed({"action": "status", "replication": self.replication})
        return succeed({"action": args.action, **args.params})

    def health(self) -> Mapping[str, Any]:
        return self._health

    def subscribe_health(self, listener: Callable[[Mapping[str, Any]], object]) -> Any:
        return lambda: None

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def sql(self) -> list[str]:
        return [args.sql for op, args in self.calls if op == "execute"]


class FakeLink:
    """Plays ``TabletRPCConnector`` for one tablet: a real RPC client over iosim."""

    def __init__(self, clock: Clock, tablet: FakeTablet) -> None:
        self.clock = clock
        self.service = tablet
        factory = TabletRPCServerFactory(tablet, clock)
        self.client: TabletRPCClient
        self.client, _server, self.pump = connectedServerAndClient(
            lambda: factory.buildProtocol(None),
            lambda: TabletRPCClient(clock),
            clock=clock,
        )
        self.pump.flush()  # type: ignore[no-untyped-call]
        self.connected = False
        self.started = False
        self.stopped = False
        self._health: list[Callable[[dict[str, Any]], object]] = []
        self._state: list[Callable[[bool], object]] = []

    def require_client(self) -> TabletRPCClient:
        if not self.connected:
            raise MySQLError(ErrorCode.CR_CONN_HOST_ERROR, f"{self.service.alias} not connected")
        return self.client

    def subscribe_health(self, listener: Callable[[dict[str, Any]], object]) -> Any:
        self._health.append(listener)

    def subscribe_state(self, listener: Callable[[bool], object]) -> Any:
        self._state.append(listener)

    def startService(self) -> None:
        self.started = True

    def stopService(self) -> None:
        self.stopped = True
        self.set_connected(False)

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        for cb in list(self._state):
            cb(connected)

    def push(self, **health: Any) -> None:
        for cb in list(self._health):
            cb(dict(health))


@implementer(ITopoCache)
class FakeCache:
    """An ``ITopoCache`` stand-in the test edits directly (``set_tablets`` notifies)."""

    def __init__(self) -> None:
        self._keyspaces: dict[str, Keyspace] = {}
        self._shards: dict[str, dict[str, Shard]] = {}
        self._tablets: dict[str, dict[str, Tablet]] = {}
        self._listeners: list[Callable[[str, tuple[str, ...]], object]] = []
        self.topo_state = "connected"

    def state(self) -> str:
        return self.topo_state

    def keyspaces(self) -> dict[str, Keyspace]:
        return dict(self._keyspaces)

    def shards(self, keyspace: str) -> dict[str, Shard]:
        return dict(self._shards.get(keyspace, {}))

    def shard(self, keyspace: str, shard: str) -> Shard | None:
        return self._shards.get(keyspace, {}).get(shard)

    def vschema(self, keyspace: str) -> None:
        return None

    def tablets(self, cell: str | None = None) -> dict[str, Tablet]:
        if cell is None:
            return {a: t for ts in self._tablets.values() for a, t in ts.items()}
        return dict(self._tablets.get(cell, {}))

    def subscribe(self, listener: Callable[[str, tuple[str, ...]], object]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def add_keyspace(self, name: str, shards: Iterable[str] = ("0",)) -> None:
        self._keyspaces[name] = Keyspace(name)
        self._shards[name] = {s: Shard(name, s) for s in shards}
        for cb in list(self._listeners):
            cb("keyspaces", ())

    def set_tablets(self, cell: str, tablets: Iterable[Tablet]) -> None:
        self._tablets[cell] = {t.alias: t for t in tablets}
        for cb in list(self._listeners):
            cb("tablets", (cell,))


@implementer(IClientFile)
class ClientFile:
    """A client's LOAD DATA LOCAL file, all there: ``data``, or 3 bytes then ``error``."""

    def __init__(self, data: bytes | MySQLError) -> None:
        self.error = data if isinstance(data, MySQLError) else None
        self.data = b"abc" if isinstance(data, MySQLError) else data
        self.consumed = 0
        self.finished = False

    def read(self, max_bytes: int) -> Deferred[bytes]:
        piece = self.data[self.consumed : self.consumed + max_bytes]
        if not piece and self.error is not None:
            return fail(self.error)
        self.consumed += len(piece)
        return succeed(piece)

    def finish(self) -> Deferred[None]:
        self.finished = True
        self.consumed = len(self.data)
        return succeed(None)


@implementer(IResultSink)
class RecordingSink:
    """Records a reply: ``events`` of ("ok", affected, insert_id, status), ("start", names),
    ("rows", [decoded rows]), ("done", status), ("error", code, message).

    Like the server's sink it is ``closed`` once the reply ended (``ended`` then fires);
    ``fail`` records a MySQLError as ``error`` does and anything else in ``failures``
    (plus an ERR 1105), after the end in ``late_failures``."""

    binary = False
    cursor = False
    paused = False
    #: What ``local_infile`` answers: the client's file, or the error reading it gives
    #: after its first bytes.
    infile: bytes | MySQLError = b""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.files_asked: list[tuple[str, int]] = []
        self.closed = False
        self.ended: Deferred[None] = Deferred()
        self.failures: list[Failure] = []
        self.late_failures: list[Failure] = []
        self._ncols = 0

    def _end(self, status: int = 0) -> None:
        if not status & MORE_RESULTS and not self.closed:
            self.closed = True
            self.ended.callback(None)

    def ok(
        self,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        status: int = 0,
        warnings: int = 0,
        info: bytes = b"",
    ) -> None:
        self.events.append(("ok", affected_rows, last_insert_id, status))
        self._end(status)

    def start(self, columns: Sequence[ColumnDefinition41], binary: bool = False) -> None:
        self._ncols = len(columns)
        self.events.append(("start", [c.name for c in columns]))

    def row(self, payload: bytes) -> None:
        self.rows([payload])

    def rows(self, payloads: Iterable[bytes]) -> None:
        decoded = [
            [None if v is None else v.decode() for v in decode_text_row(p, self._ncols)]
            for p in payloads
        ]
        self.events.append(("rows", decoded))

    def done(
        self,
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> None:
        self.events.append(("done", status))
        self._end(status)

    def result_set(
        self,
        columns: Sequence[ColumnDefinition41],
        rows: Sequence[bytes],
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
        binary: bool = False,
    ) -> None:
        self.start(columns, binary)
        self.rows(rows)
        self.done(status, warnings, affected_rows, last_insert_id, info)

    def error(self, error: MySQLError) -> None:
        self.events.append(("error", error.code, error.message))
        self._end()

    def fail(self, reason: BaseException | Failure) -> None:
        failure = reason if isinstance(reason, Failure) else Failure(reason)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        if self.closed:
            self.late_failures.append(failure)
        elif isinstance(failure.value, MySQLError):
            self.error(failure.value)
        else:
            self.failures.append(failure)
            self.error(MySQLError(ErrorCode.UNKNOWN_ERROR, f"internal error: {failure.value}"))

    def local_infile(self, filename: str, max_bytes: int) -> ClientFile:
        self.files_asked.append((filename, max_bytes))
        self.file = ClientFile(self.infile)
        return self.file

    def register_producer(self, producer: IPushProducer) -> None:
        pass

    def unregister_producer(self) -> None:
        pass

    @property
    def table(self) -> list[list[str | None]]:
        """Every row written, in order."""
        return [r for ev in self.events if ev[0] == "rows" for r in ev[1]]

    @property
    def error_code(self) -> int | None:
        errs = [ev[1] for ev in self.events if ev[0] == "error"]
        return errs[-1] if errs else None


def finished(result: Deferred[None] | ReplyEndsCommand, sink: RecordingSink) -> Deferred[None]:
    """What the server waits for before the next command: the handler's Deferred, or the
    end of the reply in ``sink`` when the handler returned ``REPLY_ENDS_COMMAND``."""
    if isinstance(result, ReplyEndsCommand):
        return sink.ended
    return result


def tablet(
    alias: str,
    keyspace: str = "commerce",
    shard: str = "0",
    ttype: str = "replica",
    port: int = 16000,
) -> Tablet:
    return Tablet(alias, keyspace, shard, ttype, "127.0.0.1", rpc_port=port)


class Cluster:
    """A gate over a ``FakeCache`` with ``FakeTablet``s reached through ``FakeLink``s."""

    def __init__(
        self,
        *,
        max_lag: float | None = 30.0,
        settings: GateSettings | None = None,
        policy: Any = None,
    ) -> None:
        self.clock = Clock()
        self.cache: Any = FakeCache()
        self.cache.add_keyspace("commerce")
        self.services: dict[str, FakeTablet] = {}
        self.links: dict[str, FakeLink] = {}
        self.discovery = Discovery(
            self.cache, self.clock, self._link, cells=["zone1"], max_lag=max_lag
        )
        self.gate = Gate(
            self.cache,
            self.discovery,
            policy or RandomPolicy(lambda n: 0),
            self.clock,
            settings=settings,
        )
        self.discovery.startService()
        self.next_conn = 1

    def _link(self, record: Tablet) -> FakeLink:
        service = self.services.setdefault(record.alias, FakeTablet(record.alias))
        link = FakeLink(self.clock, service)
        self.links[record.alias] = link
        return link

    def add(self, *records: Tablet, serve: bool = True) -> None:
        current = list(self.cache.tablets("zone1").values())
        self.cache.set_tablets("zone1", [*current, *records])
        for r in records:
            if serve:
                self.serve(r.alias, r.tablet_type, primary_term=r.primary_term)

    def serve(self, alias: str, ttype: str, serving: bool = True, **health: Any) -> None:
        link = self.links[alias]
        if not link.connected:
            link.set_connected(True)
        link.push(serving=serving, tablet_type=ttype, **health)

    def remove(self, alias: str, *, expired: bool = False) -> None:
        """The tablet leaves the topo as a stopping tablet does: it says "not serving" on
        its health stream first. ``expired``: only its node vanishes (its ZooKeeper
        session expired), while it goes on serving."""
        link = self.links.get(alias)
        handle = self.discovery.handles.get(alias)
        if not expired and link is not None and link.connected and handle is not None:
            link.push(**{**(handle.health or {}), "serving": False, "error": "shutting down"})
        current = [t for a, t in self.cache.tablets("zone1").items() if a != alias]
        self.cache.set_tablets("zone1", current)

    def session(
        self,
        user: str = "app",
        database: str = "commerce",
        capabilities: int = 0,
        attrs: dict[str, str] | None = None,
    ) -> GateSession:
        info = ClientInfo(
            self.next_conn,
            user,
            "127.0.0.1",
            5000 + self.next_conn,
            capabilities=capabilities,
            attrs=attrs or {},
        )
        self.next_conn += 1
        session = self.gate.open_session(info)
        if database:
            session.init_db(database)
        return session

    def flush(self) -> None:
        for _ in range(20):
            moved = False
            for link in self.links.values():
                moved = link.pump.pump() or moved  # type: ignore[no-untyped-call]
            if not moved:
                return

    def run(
        self, session: GateSession, sql: str | bytes, sink: RecordingSink | None = None
    ) -> RecordingSink:
        sink = sink or RecordingSink()
        raw = sql.encode() if isinstance(sql, str) else sql
        d = finished(session.query(raw, sink), sink)
        self.flush()
        failures: list[Any] = [*sink.failures]
        d.addErrback(failures.append)
        if failures:
            failures[0].raiseException()
        assert d.called, f"query {sql!r} did not finish"
        return sink

    def wait(self, d: Deferred[Any]) -> Any:
        self.flush()
        out: list[Any] = []
        d.addBoth(out.append)
        assert out, "did not finish"
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        return out[0]

"""A recording fake ``ITabletService`` and helpers to wire a client and server over iosim.

The fake's ``execute`` understands a tiny SQL of its own:

- ``rows N``: N one-column rows at once;
- ``sleep S TAG``: answers ``TAG`` as its one row after S seconds of the clock (cancellable:
  the canceller and the request's cancel hook are recorded);
- ``error CODE``: fails with ``MySQLError(CODE)``; ``boom``: raises ``RuntimeError``;
- ``load N``: reads the streamed LOAD DATA LOCAL INFILE file with ``request.read_infile(N)``
  until its end and answers ``info`` ``"<length> <sha256>"`` (pieces and errors recorded).

``FakeInfileReader`` is the gate's side of such a file.

``stream_execute`` with ``rows N`` streams N rows through a push producer that records its
pauses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connectedServerAndClient
from zope.interface import implementer

from vtwist.interfaces import IInfileReader, IRowSink, ITabletRPCRequest, ITabletService
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.protocols.tabletrpc_ops import (
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    ManageArgs,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    TransactionArgs,
)
from vtwist.protocols.tabletrpc_server import TabletRPCServer, TabletRPCServerFactory

FIELD = b"\x03def\x00\x01t\x01t\x01c\x01c\x0c\x21\x00\x00\x01\x00\x00\xfd\x00\x00\x00\x00\x00"


def text_row(value: str) -> bytes:
    """A one-column text-row payload (length-encoded string)."""
    data = value.encode()
    assert len(data) < 251
    return bytes([len(data)]) + data


@implementer(IPushProducer)
class RowProducer:
    """Produces ``total`` rows into a sink, ``batch`` per reactor turn, honouring pauses."""

    def __init__(
        self,
        clock: Clock,
        sink: IRowSink,
        total: int,
        batch: int,
        done: Deferred[QueryResult],
    ) -> None:
        self.clock = clock
        self.sink = sink
        self.total = total
        self.batch = batch
        self.done = done
        self.sent = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.stopped = False
        self._scheduled = False

    def start(self) -> None:
        self.sink.registerProducer(self, True)
        self.sink.send_fields([FIELD])
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.paused and not self.stopped:
            self._scheduled = True
            self.clock.callLater(0, self._produce)

    def _produce(self) -> None:
        self._scheduled = False
        if self.paused or self.stopped:
            return
        n = min(self.batch, self.total - self.sent)
        self.sink.send_rows([text_row(str(self.sent + i)) for i in range(n)])
        self.sent += n
        if self.sent >= self.total:
            self.sink.unregisterProducer()
            self.done.callback(QueryResult([], [], affected_rows=0, info="streamed"))
            return
        self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        self._schedule()

    def stopProducing(self) -> None:
        self.stopped = True


@implementer(ITabletService)
class FakeTabletService:
    """Records what it was asked and how requests were cancelled."""

    def __init__(self, clock: Clock, stream_batch: int = 10) -> None:
        self.clock = clock
        self.stream_batch = stream_batch
        self.calls: list[tuple[str, Any]] = []
        self.cancel_hooks: list[tuple[int, str]] = []
        self.cancelled_deferreds: list[str] = []
        self.producers: list[RowProducer] = []
        self._health: dict[str, Any] = {"serving": True, "tablet_type": "primary", "seq": 0}
        self._listeners: list[Callable[[Mapping[str, Any]], object]] = []
        self.next_id = 100
        self.infile_pieces: list[int] = []  # sizes ``load`` read, b"" included
        self.infile_errors: list[BaseException] = []

    # --- ITabletService -------------------------------------------------------------------

    def execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs
    ) -> Deferred[QueryResult] | QueryResult:
        self.calls.append(("execute", args))
        words = args.sql.split()
        if words[0] == "rows":
            n = int(words[1])
            return QueryResult([FIELD], [text_row(str(i)) for i in range(n)], 0, 0, 0, 2, "")
        if words[0] == "sleep":
            return self._sleep(request, float(words[1]), words[2])
        if words[0] == "error":
            raise MySQLError(int(words[1]), f"fake error {words[1]}")
        if words[0] == "boom":
            raise RuntimeError("the fake exploded")
        if words[0] == "bad_result":
            return "not a result"  # type: ignore[return-value]
        if words[0] == "load":
            return self._load(request, int(words[1]))
        return QueryResult([], [], affected_rows=1, insert_id=7, warnings=1, info=args.sql)

    def _sleep(self, request: ITabletRPCRequest, seconds: float, tag: str) -> Deferred[QueryResult]:
        rid = request.request_id
        request.on_cancel(lambda reason: self.cancel_hooks.append((rid, reason)))

        def canceller(d: Deferred[QueryResult]) -> None:
            self.cancelled_deferreds.append(tag)
            if call.active():
                call.cancel()

        d: Deferred[QueryResult] = Deferred(canceller)
        call = self.clock.callLater(
            seconds, lambda: d.callback(QueryResult([FIELD], [text_row(tag)]))
        )
        return d

    def _load(self, request: ITabletRPCRequest, piece: int) -> Deferred[QueryResult]:
        rid = request.request_id
        request.on_cancel(lambda reason: self.cancel_hooks.append((rid, reason)))
        done: Deferred[QueryResult] = Deferred()
        digest = hashlib.sha256()
        total = 0

        def got(data: bytes) -> None:
            nonlocal total
            self.infile_pieces.append(len(data))
            if not data:
                info = f"{total} {digest.hexdigest()}"
                done.callback(QueryResult([], [], affected_rows=total, info=info))
                return
            total += len(data)
            digest.update(data)
            request.read_infile(piece).addCallbacks(got, failed)

        def failed(failure: Failure) -> None:
            assert failure.value is not None
            self.infile_errors.append(failure.value)
            done.errback(failure)

        request.read_infile(piece).addCallbacks(got, failed)
        return done

    def stream_execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink
    ) -> Deferred[QueryResult] | QueryResult:
        self.calls.append(("stream_execute", args))
        rid = request.request_id
        request.on_cancel(lambda reason: self.cancel_hooks.append((rid, reason)))
        words = args.sql.split()
        done: Deferred[QueryResult] = Deferred()
        producer = RowProducer(self.clock, sink, int(words[1]), self.stream_batch, done)
        self.producers.append(producer)
        producer.start()
        return done

    def begin(self, request: ITabletRPCRequest, args: BeginArgs) -> Deferred[int] | int:
        self.calls.append(("begin", args))
        self.next_id += 1
        return args.reserved_id or self.next_id

    def commit(self, request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:
        self.calls.append(("commit", args))
        return 0

    def rollback(self, request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:
        self.calls.append(("rollback", args))
        return 0

    def reserve(
        self, request: ITabletRPCRequest, args: ReserveArgs
    ) -> Deferred[ReserveResult] | ReserveResult:
        self.calls.append(("reserve", args))
        self.next_id += 1
        return ReserveResult(self.next_id, self.next_id if args.begin else 0)

    def release(self, request: ITabletRPCRequest, args: ReleaseArgs) -> Deferred[None] | None:
        self.calls.append(("release", args))
        return None

    def kill(self, request: ITabletRPCRequest, args: KillArgs) -> Deferred[bool] | bool:
        self.calls.append(("kill", args))
        return args.transaction_id == 42

    def manage(self, request: ITabletRPCRequest, args: ManageArgs) -> Deferred[dict[str, Any]]:
        self.calls.append(("manage", args))
        return succeed({"action": args.action, **args.params})

    def health(self) -> Mapping[str, Any]:
        return dict(self._health)

    def subscribe_health(
        self, listener: Callable[[Mapping[str, Any]], object]
    ) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- test controls --------------------------------------------------------------------

    @property
    def health_listeners(self) -> int:
        return len(self._listeners)

    def set_health(self, **changes: Any) -> None:
        self._health.update(changes)
        for listener in list(self._listeners):
            listener(dict(self._health))


@implementer(IInfileReader)
class FakeInfileReader:
    """A LOAD DATA LOCAL INFILE file given in ``pieces`` (each cut to what a read asks).

    With ``manual`` each read waits until the test calls ``fire()`` (or ``fail_read``);
    ``error`` is what reads raise once the pieces run out (None: the end of the file).
    """

    def __init__(
        self, pieces: list[bytes], manual: bool = False, error: BaseException | None = None
    ) -> None:
        self.pieces = list(pieces)
        self.manual = manual
        self.error = error
        self.asked: list[int] = []  # max_bytes of each read
        self.outstanding = 0
        self.most_outstanding = 0
        self.waiting: Deferred[bytes] | None = None

    def read(self, max_bytes: int) -> Deferred[bytes]:
        self.asked.append(max_bytes)
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        d: Deferred[bytes] = Deferred()
        d.addBoth(self._done)
        if self.manual:
            self.waiting = d
        else:
            self._answer(d, max_bytes)
        return d

    def _done(self, result: Any) -> Any:
        self.outstanding -= 1
        return result

    def _answer(self, d: Deferred[bytes], max_bytes: int) -> None:
        if not self.pieces:
            if self.error is not None:
                d.errback(self.error)
            else:
                d.callback(b"")
            return
        piece = self.pieces.pop(0)
        if len(piece) > max_bytes:
            piece, rest = piece[:max_bytes], piece[max_bytes:]
            self.pieces.insert(0, rest)
        d.callback(piece)

    def fire(self) -> None:
        """Answer the waiting read."""
        d, self.waiting = self.waiting, None
        assert d is not None, "no read is waiting"
        self._answer(d, self.asked[-1])

    def fail_read(self, error: BaseException) -> None:
        """Fail the waiting read."""
        d, self.waiting = self.waiting, None
        assert d is not None, "no read is waiting"
        d.errback(error)


class RecordingTransport(FakeTransport):
    """An iosim transport that remembers TCP_NODELAY instead of ignoring it."""

    nodelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.nodelay


class Pair:
    """A client and a server over an iosim pump sharing one Clock."""

    def __init__(
        self,
        service: FakeTabletService | None = None,
        clock: Clock | None = None,
        server_kw: Mapping[str, Any] | None = None,
        client_kw: Mapping[str, Any] | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.service = service or FakeTabletService(self.clock)
        self.factory = TabletRPCServerFactory(self.service, self.clock, **(server_kw or {}))
        client_kw = dict(client_kw or {})
        server: TabletRPCServer
        pump: IOPump
        self.client, server, pump = connectedServerAndClient(
            lambda: self.factory.buildProtocol(None),
            lambda: TabletRPCClient(self.clock, **client_kw),
            clientTransportFactory=lambda proto: RecordingTransport(proto, isServer=False),  # type: ignore[no-untyped-call]  # Twisted: FakeTransport.__init__ unannotated
            serverTransportFactory=lambda proto: RecordingTransport(proto, isServer=True),  # type: ignore[no-untyped-call]  # Twisted: FakeTransport.__init__ unannotated
            clock=self.clock,
        )
        self.server = server
        self.pump = pump

    def flush(self) -> None:
        """Move bytes (and run callLater(0)s) until both sides are idle."""
        self.pump.flush()  # type: ignore[no-untyped-call]  # Twisted: unannotated

    def advance(self, seconds: float) -> None:
        """Let time pass, then settle."""
        self.clock.advance(seconds)
        self.flush()


def result_of(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (raises its failure)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    value = out[0]
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value

"""Running one statement on a leased connection: results, streams, timeouts and kills.

``Runner.run(lease, sql, consumer, ...)`` sends the statement and waits for its reply. It
is stopped on mysqld (``KILL QUERY <connection id>`` over the dba pool, never by closing
the socket, which would leave mysqld running it) when:

- it runs longer than its timeout (``query.timeout``): the caller gets ERROR 1317 naming
  the key, even if mysqld answered normally after the kill (``SLEEP`` does);
- the RPC request is cancelled (gate cancel or kill, deadline, lost gate connection): the
  request's ``on_cancel`` hook kills it; the caller's Deferred is detached from the
  statement, which finishes in the background;
- a gate kills the transaction or reserved connection it runs on (``kill``).

A killed statement still running ``query.kill_grace`` seconds later gets its connection
closed. The lease stays held until the statement and its kill are both over, so the kill
cannot reach the statement of the connection's next borrower.

``Collector`` gathers a non-streamed result with raw rows (bounded by rows and bytes);
``StreamRelay`` hands rows to an ``IRowSink`` with the connection as its push producer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import IInfileReader, IRowSink, ITabletRPCRequest
from vtwist.protocols.mysql.client import MySQLClient, Result, StreamEvent
from vtwist.protocols.mysql.constants import ServerStatus
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Ok
from vtwist.protocols.tabletrpc_ops import QueryResult
from vtwist.tablet.metrics import TabletMetrics
from vtwist.tablet.policies import (
    killed_error,
    result_size_error,
    row_limit_error,
    several_results_error,
    timeout_error,
)
from vtwist.tablet.pools import Lease, Pool

log = Logger()

_NO_MORE = ~int(ServerStatus.MORE_RESULTS_EXISTS)
# The shared timeout timer is re-armed _EARLY before a deadline and kills what is due
# within _SLACK of now, so that rounding the delay never delays a kill.
_EARLY = 1e-6
_SLACK = 2e-6
_INTERRUPTED = (ErrorCode.QUERY_INTERRUPTED, ErrorCode.CR_SERVER_LOST, ErrorCode.STATEMENT_TIMEOUT)


class Collector:
    """Stream consumer keeping the raw rows of a reply's result sets, within ``max_rows``
    (per result set) and ``max_bytes`` (in all).

    A reply holds several results only for a CALL: the result sets of its procedure, then
    an OK. The first set (or OK) is the ``QueryResult``; the sets after it go in its
    ``more``, each with its own columns and rows."""

    __slots__ = ("current", "error", "extra", "max_bytes", "max_rows", "rows", "sets", "size")

    def __init__(self, max_rows: int, max_bytes: int) -> None:
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows: list[bytes] = []  # the first result set's
        self.current = self.rows  # the result set being received
        self.extra: list[list[bytes]] = []  # the rows of the sets after the first
        self.size = 0
        self.sets = 0  # result sets ended
        self.error: MySQLError | None = None

    def __call__(self, ev: StreamEvent) -> None:
        t = type(ev)
        if t is Row:
            if self.error is not None:
                return
            payload: bytes = ev.payload  # type: ignore[union-attr]
            self.current.append(payload)
            self.size += len(payload)
            self._check_limits()
        elif t is ResultSetDone:
            self._set_ended()

    def _set_ended(self) -> None:
        self.sets += 1
        if self.error is None:
            self.current = []
            self.extra.append(self.current)

    def row_batch(self, payloads: list[bytes]) -> None:
        """Several rows at once (the MySQL client's batch path): as many ``Row`` events."""
        if self.error is not None:
            return
        self.current.extend(payloads)
        self.size += sum(map(len, payloads))
        self._check_limits()

    def result_set(
        self, columns: Sequence[ColumnDefinition41], rows: list[bytes], done: ResultSetDone
    ) -> None:
        """A whole result set (the MySQL client's path for one received whole): its rows
        as ``row_batch``, its end as a ``ResultSetDone`` event."""
        self.row_batch(rows)
        self._set_ended()

    def _check_limits(self) -> None:
        if len(self.current) > self.max_rows:
            self.error = row_limit_error(self.max_rows)
        elif self.size > self.max_bytes:
            self.error = result_size_error(self.max_bytes)
        else:
            return
        self.rows, self.extra = [], []
        self.current = []

    def result(self, summary: Result) -> QueryResult:
        """The ``QueryResult`` of the reply: its first result, and the result sets after it
        (a CALL's) in ``more``."""
        if self.error is not None:
            raise self.error
        more: tuple[QueryResult, ...] = ()
        if self.sets > 1:
            sets = [r for r in summary.more if r.columns]
            more = tuple(
                QueryResult(
                    [c.encode() for c in r.columns], rows, 0, 0, r.warnings, r.status & _NO_MORE
                )
                for r, rows in zip(sets, self.extra, strict=False)
            )
        return QueryResult(
            [c.encode() for c in summary.columns],
            self.rows,
            summary.affected_rows,
            summary.last_insert_id,
            summary.warnings,
            summary.status & _NO_MORE,
            summary.info.decode("utf-8", "replace") if summary.info else "",
            (),
            more,
        )


@implementer(IPushProducer)
class ConnectionProducer:
    """The MySQL connection as the push producer of a stream's rows."""

    def __init__(self, client: MySQLClient) -> None:
        self.client = client
        self.stopped = False

    def pauseProducing(self) -> None:
        """The gate cannot take more: stop reading from mysqld."""
        if not self.stopped:
            self.client.pause_reading()

    def resumeProducing(self) -> None:
        """Read from mysqld again."""
        self.client.resume_reading()

    def stopProducing(self) -> None:
        """The stream was cancelled: drop the rest, but read it so the connection recovers."""
        self.stopped = True
        self.client.resume_reading()


class StreamRelay:
    """Stream consumer writing the first result's fields and rows into an ``IRowSink``."""

    BATCH = 256

    def __init__(self, sink: IRowSink, producer: ConnectionProducer) -> None:
        self.sink = sink
        self.producer = producer
        self.fields: list[bytes] = []
        self.batch: list[bytes] = []
        self.index = 0
        self.sets = 0  # result sets ended (a second one fails the stream at its end)
        self.fields_sent = False
        self.rows = 0

    def __call__(self, ev: StreamEvent) -> None:
        if self.index or self.producer.stopped:
            if type(ev) is ResultSetDone:
                self.sets += 1
            return
        t = type(ev)
        if t is Row:
            if not self.fields_sent:
                self._send_fields()
            self.batch.append(ev.payload)  # type: ignore[union-attr]
            self.rows += 1
            if len(self.batch) >= self.BATCH:
                self._flush()
        elif t is Column:
            self.fields.append(ev.definition.encode())  # type: ignore[union-attr]
        elif t is ResultSetDone:
            if not self.fields_sent:
                self._send_fields()
            self._flush()
            self.index += 1
            self.sets += 1
        elif t is Ok:
            self.index += 1

    def _send_fields(self) -> None:
        self.fields_sent = True
        self.sink.send_fields(self.fields)

    def _flush(self) -> None:
        if self.batch:
            batch, self.batch = self.batch, []
            self.sink.send_rows(batch)

    def result(self, summary: Result) -> QueryResult:
        """The OK part of the stream's reply (rows went through the sink); a streamed CALL
        that sent several result sets fails here, after the first one's rows (a stream
        relays one; ``Collector`` keeps them all)."""
        if self.sets > 1:
            raise several_results_error()
        return QueryResult(
            [],
            [],
            summary.affected_rows,
            summary.last_insert_id,
            summary.warnings,
            summary.status & _NO_MORE,
            summary.info.decode("utf-8", "replace") if summary.info else "",
        )


class _Running:
    """One statement in flight on a lease, and what stops it.

    It also relays the statement's outcome into ``out``, the Deferred the caller holds:
    cancelling ``out`` leaves the statement running (its cancel hook kills it on mysqld).
    """

    __slots__ = (
        "_grace",
        "_release_statement",
        "deadline",
        "finished",
        "kill_reason",
        "lease",
        "out",
        "runner",
        "timeout",
        "timeout_key",
    )

    def __init__(
        self, runner: Runner, lease: Lease, timeout: float | None, timeout_key: str
    ) -> None:
        self.runner = runner
        self.lease = lease
        self.timeout = timeout
        self.timeout_key = timeout_key
        self.finished = False
        self.kill_reason: str | None = None
        self.deadline: float | None = None  # when the timeout kills it (Runner's timer)
        self._grace: IDelayedCall | None = None
        self._release_statement = lease.hold()
        self.out: Deferred[Result] = Deferred(self._out_cancelled)

    @property
    def connection_id(self) -> int:
        """mysqld's id of the statement's connection (read only when killing)."""
        return self.lease.connection_id

    def _out_cancelled(self, out: Deferred[Result]) -> None:
        # The caller gave up (its request was cancelled): the statement goes on in the
        # background until its kill lands; only the timeout is no longer wanted.
        self.deadline = None

    def statement_over(self, result: Any) -> None:
        """The statement's Deferred fired: forget it on the runner, ``done``, then hand the
        outcome (timeouts and kills translated) to ``out`` unless the caller gave up."""
        runner = self.runner
        running = runner._running
        if running.get(self.lease) is self:
            del running[self.lease]
            if not running:
                runner._idle()
        self.done(result)
        self.deadline = None
        out = self.out
        if out.called:
            return  # the caller gave up: nobody waits for the outcome any more
        if isinstance(result, Failure):
            e = result.value
            if isinstance(e, MySQLError):
                out.errback(self._translate(e))
            else:
                out.errback(result)
        elif self.kill_reason == "timeout":
            # mysqld may answer a killed statement normally (SLEEP returns 1).
            out.errback(timeout_error(self.timeout or 0.0, self.timeout_key))
        else:
            out.callback(result)

    def _translate(self, e: MySQLError) -> MySQLError:
        reason = self.kill_reason
        if reason is None or e.code not in _INTERRUPTED:
            return e
        if reason == "timeout":
            return timeout_error(self.timeout or 0.0, self.timeout_key)
        return killed_error(reason)

    def cancelled(self, reason: str) -> None:
        """The gate cancelled the request (an ``on_cancel`` hook)."""
        self.kill("cancelled")

    def done(self, result: Any) -> Any:
        """The statement's reply is complete (or the connection broke)."""
        self.finished = True
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self._grace = None
        self._release_statement()
        return result

    def kill(self, reason: str) -> bool:
        """KILL QUERY this statement on mysqld (once); False if it is already over."""
        if self.finished or self.kill_reason is not None:
            return False
        self.kill_reason = reason
        runner = self.runner
        runner.metrics.kills.labels(reason=reason).inc()
        release_kill = self.lease.hold()
        d = runner.kill_query(self.connection_id)

        def killed(ok: bool) -> None:
            if not ok:
                # Perhaps still on its way to mysqld: never lend this connection again.
                self.lease.broken = True
            release_kill()

        d.addCallback(killed)
        if not self.finished:
            self._grace = runner.clock.callLater(runner.kill_grace, self._stuck, release_kill)
        return True

    def _stuck(self, release_kill: Callable[[], None]) -> None:
        self._grace = None
        # The kill did not land in time (mysqld stuck, dba pool exhausted): close the
        # connection; a kill still in flight can then only hit a connection that is gone.
        log.warn(
            "statement on connection {id} still running {grace}s after KILL QUERY; "
            "closing the connection",
            id=self.connection_id,
            grace=self.runner.kill_grace,
        )
        self.runner.metrics.kills.labels(reason="timeout_stuck").inc()
        self.lease.broken = True
        self.lease.client.close()
        release_kill()


class Runner:
    """Runs statements with timeouts and kills (see the module docstring).

    Timeouts share one timer, armed for the earliest deadline of the running statements
    and only moved earlier: a statement that ends leaves it alone (setting and cancelling
    a timer per statement costs more than the rest of the runner), so it may fire with
    nothing to do, and then re-arms itself for the earliest deadline left, if any. It is
    cancelled when no statement runs, so an idle tablet holds no timer.
    """

    def __init__(
        self, dba_pool: Pool, clock: IReactorTime, metrics: TabletMetrics, kill_grace: float
    ) -> None:
        self.dba_pool = dba_pool
        self.clock = clock
        self.metrics = metrics
        self.kill_grace = kill_grace
        self._running: dict[Lease, _Running] = {}
        self._timer: IDelayedCall | None = None
        self._timer_at = 0.0  # when the armed ``_timer`` fires

    def kill_query(self, connection_id: int, connection: bool = False) -> Deferred[bool]:
        """``KILL QUERY id`` (``KILL CONNECTION id`` with ``connection``) via the dba pool.

        Fires True once mysqld accepted it (or the thread was already gone), False when it
        could not be sent within ``kill_grace`` (logged); never fails.
        """
        what = "CONNECTION" if connection else "QUERY"

        async def kill() -> bool:
            try:
                async with self.dba_pool.connection() as dba:
                    await dba.query(f"KILL {what} {int(connection_id)}")
            except MySQLError as e:
                if e.code != ErrorCode.NO_SUCH_THREAD:  # 1094: it ended meanwhile, fine
                    log.warn("KILL {what} {id} failed: {e}", what=what, id=connection_id, e=e)
                    return False
            return True

        def failed(failure: Failure) -> bool:
            log.warn(
                "KILL {what} {id} not done within {grace}s: {e}",
                what=what,
                id=connection_id,
                grace=self.kill_grace,
                e=failure.getErrorMessage(),
            )
            return False

        d = Deferred.fromCoroutine(kill())
        d.addTimeout(self.kill_grace, self.clock)
        return d.addErrback(failed)

    def kill_lease(self, lease: Lease, reason: str) -> bool:
        """Kill the statement running on ``lease``; False if none is running."""
        running = self._running.get(lease)
        return running.kill(reason) if running is not None else False

    def busy(self, lease: Lease) -> bool:
        """Whether a statement runs on ``lease``."""
        return lease in self._running

    def start(
        self,
        lease: Lease,
        sql: bytes,
        consumer: Callable[[StreamEvent], object],
        *,
        timeout: float | None,
        timeout_key: str,
        request: ITabletRPCRequest | None,
        infile: bytes | IInfileReader | None = None,
    ) -> Deferred[Result]:
        """Run ``sql`` on ``lease`` feeding ``consumer``; fires with the reply's summary, or
        fails with MySQLError. Cancelling it detaches the caller from the statement, which
        finishes in the background (the request's cancel hook kills it on mysqld).
        ``infile``: the file of a LOAD DATA LOCAL INFILE statement (whole, or a reader the
        connection pulls it from as mysqld takes it).

        A plain callback chain, no coroutine: this is every query's path.
        """
        running = _Running(self, lease, timeout, timeout_key)
        self._running[lease] = running
        if infile is None:
            lease.client.stream_query_notify(sql, consumer, running.statement_over)
        else:
            lease.client.stream_query_notify(sql, consumer, running.statement_over, infile=infile)
        if timeout and not running.finished:
            now = self.clock.seconds()
            running.deadline = deadline = now + timeout
            timer = self._timer
            if timer is None:
                self._timer = self.clock.callLater(timeout, self._expire)
                self._timer_at = deadline
            elif deadline < self._timer_at:
                timer.reset(timeout)
                self._timer_at = deadline
        if request is not None:
            request.on_cancel(running.cancelled)
        return running.out

    def _idle(self) -> None:
        """No statement runs any more: drop the timeout timer (none is left behind)."""
        timer = self._timer
        if timer is not None:
            self._timer = None
            if timer.active():
                timer.cancel()

    def _expire(self) -> None:
        """The timeout timer fired: kill the statements past their deadline, re-arm for the
        earliest deadline left."""
        self._timer = None
        now = self.clock.seconds()
        earliest: float | None = None
        for running in list(self._running.values()):
            deadline = running.deadline
            if deadline is None:
                continue
            if deadline <= now + _SLACK:
                running.deadline = None
                running.kill("timeout")
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            # A hair early (float rounding must never make it late): _SLACK covers it.
            self._timer = self.clock.callLater(max(0.0, earliest - now - _EARLY), self._expire)
            self._timer_at = earliest

    async def run(
        self,
        lease: Lease,
        sql: bytes,
        consumer: Callable[[StreamEvent], object],
        *,
        timeout: float | None,
        timeout_key: str,
        request: ITabletRPCRequest | None,
        infile: bytes | IInfileReader | None = None,
    ) -> Result:
        """``start`` for coroutines: the reply's summary, or MySQLError."""
        return await self.start(
            lease,
            sql,
            consumer,
            timeout=timeout,
            timeout_key=timeout_key,
            request=request,
            infile=infile,
        )


def swallow(failure: Failure) -> None:
    """Errback ending a background chain whose errors were already reported."""
    log.failure("tablet background task failed", failure)

"""The tablet's query service: the ``ITabletService`` the tablet RPC server dispatches to.

``TabletQueryService`` runs the gate's requests on the tablet's pools:

- ``execute``/``stream_execute`` without ids: one autocommit statement on a query-pool
  connection, given back at once (reset first if the statement may have touched session
  state); with ``transaction_id``/``reserved_id``: on that held connection.
- ``begin`` takes a transaction-pool connection (or uses a reserved one) and returns the
  transaction id; ``commit``/``rollback`` end it and give the connection back, unless it is
  also reserved; ``reserve`` dedicates a connection prepared by ``settings`` statements
  (optionally with a transaction); ``release`` rolls back and frees it; ``kill`` stops the
  statement of a transaction/reservation (``connection``: drops the connection too).
- ``health``/``subscribe_health`` are the ``TabletState``'s snapshot and subscription.

Warnings: a statement whose reply counts warnings is followed, on the same connection and
before it is lent again, by ``SHOW WARNINGS LIMIT query.max_warnings``; the rows travel
as the result's ``notes``, from which the gate answers its client's SHOW WARNINGS.

Bind variables: ``:name`` in the SQL is replaced by the literal of ``bind_vars["name"]``
(a list becomes ``(a, b, ...)``); names not bound are left as they are.

Targets: ``keyspace[:shard][@type]`` must name this tablet's keyspace and shard; a request
for ``@primary`` on a tablet that is not the primary is refused (ERROR 1290), other types
are served by any tablet of the shard.

Session state: an autocommit statement that sets session state is refused (ERROR 1235,
"reserve a connection") rather than silently auto-reserved, because the execute result
cannot carry a new reserved id back to the gate; in a transaction or on a reserved
connection it is allowed, and that connection is reset before it returns to the pool.
Policies and error codes: ``policies``; timeouts and kills: ``runner``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from twisted.internet.defer import CancelledError, Deferred, fail, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.config import Config
from vtwist.interfaces import IInfileReader, IRowSink, ITabletRPCRequest, ITabletService
from vtwist.protocols.mysql.client import Result, StreamEvent
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.values import decode_text_row
from vtwist.protocols.tabletrpc_ops import (
    HELD_GONE,
    TRANSACTION_CHARACTERISTICS,
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
from vtwist.tablet import config as keys
from vtwist.tablet.metrics import TabletMetrics
from vtwist.tablet.policies import (
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_OTHER,
    KIND_ROLLBACK,
    QueryPolicy,
    Statement,
    bind,
    classify,
    multi_statement_error,
    not_serving_error,
    not_writable_error,
    session_state_error,
    transaction_statement_error,
)
from vtwist.tablet.pools import Lease, TabletPools
from vtwist.tablet.reserved import Held, HeldConnections
from vtwist.tablet.runner import Collector, ConnectionProducer, Runner, StreamRelay
from vtwist.tablet.state import TabletState

log = Logger()


@dataclass(frozen=True)
class QuerySettings:
    """The query service's limits (from the config, or given directly by tests)."""

    query_timeout: float = 30.0
    stream_timeout: float = 0.0
    kill_grace: float = 5.0
    transaction_timeout: float = 30.0
    reserved_idle_timeout: float = 1800.0
    remember_ended: int = 1000
    max_result_bytes: int = 16 * 1024 * 1024
    max_warnings: int = 64
    shutdown_grace: float = 3.0

    @classmethod
    def from_config(cls, config: Config) -> QuerySettings:
        """The settings of a loaded vttablet config."""
        return cls(
            query_timeout=config.value(keys.QUERY_TIMEOUT),
            stream_timeout=config.value(keys.STREAM_TIMEOUT),
            kill_grace=config.value(keys.KILL_GRACE),
            transaction_timeout=config.value(keys.TX_TIMEOUT),
            reserved_idle_timeout=config.value(keys.RESERVED_IDLE_TIMEOUT),
            remember_ended=config.value(keys.MAX_ENDED_IDS),
            max_result_bytes=config.value(keys.RPC_MAX_FRAME) - 64 * 1024,
            max_warnings=config.value(keys.MAX_WARNINGS),
            shutdown_grace=config.value(keys.SHUTDOWN_GRACE),
        )


_QUERY_TIMEOUT_KEY = keys.QUERY_TIMEOUT.key
DRAIN_POLL: Final = 0.05  # seconds between two looks at what still runs, when draining
# How the tablet ends a transaction: whatever completion_type the connection's session has
# (a client's setting, mysqld's global), it neither chains a new one nor disconnects.
_COMMIT: Final = b"COMMIT AND NO CHAIN NO RELEASE"
_ROLLBACK: Final = b"ROLLBACK AND NO CHAIN NO RELEASE"


def _setting_warnings(options: Mapping[str, object] | None) -> bool:
    """Whether the request asks for the warnings of its last setting (``ExecuteArgs``)."""
    return bool(options and options.get("setting_warnings"))


def _ignore(ev: StreamEvent) -> None:
    """Consumer of statements whose rows nobody wants (BEGIN, COMMIT, settings)."""


#: Distinct lists of settings whose checked form ``_prepared_settings`` keeps.
_SETTINGS_SEEN_MAX: Final = 1024


_ONE_CHARACTERISTIC: Final = "|".join(TRANSACTION_CHARACTERISTICS)
_START: Final = re.compile(f"(?:{_ONE_CHARACTERISTIC})(?:, (?:{_ONE_CHARACTERISTIC}))*")


def left_open_error() -> MySQLError:
    """ERROR 1105 for a statement that left a transaction open on a connection outside one
    (a procedure's START TRANSACTION without COMMIT), which the tablet rolled back: the
    gate's session is not in a transaction, so its COMMIT would not reach it (as Vitess)."""
    return MySQLError(
        ErrorCode.UNKNOWN_ERROR,
        "the statement left a transaction open (a procedure's START TRANSACTION without "
        "COMMIT or ROLLBACK), so vttablet rolled it back: end the transaction inside the "
        "procedure, or run the CALL inside a transaction (BEGIN first)",
    )


def _start_statement(options: Mapping[str, Any] | None) -> bytes:
    """What opens a transaction: BEGIN, or ``START TRANSACTION`` with the characteristics
    of option ``start`` (e.g. ``READ ONLY``, as the gate's client wrote them)."""
    start = options.get("start") if options else None
    if not start:
        return b"BEGIN"
    if type(start) is not str or _START.fullmatch(start) is None:
        raise MySQLError(
            ErrorCode.WRONG_ARGUMENTS,
            f"bad start option {start!r}: {', '.join(TRANSACTION_CHARACTERISTICS)}, "
            "comma-separated",
        )
    return b"START TRANSACTION " + start.encode()


def _infile(request: ITabletRPCRequest | None, args: ExecuteArgs) -> bytes | IInfileReader | None:
    """The file of a LOAD DATA LOCAL INFILE statement: pulled from the gate in pieces as
    mysqld takes it (``infile_stream``), or brought whole with the request."""
    if args.infile_stream and request is not None:
        return RequestFile(request)
    return args.infile


@implementer(IInfileReader)
class RequestFile:
    """A request's streamed LOAD DATA LOCAL file (``ITabletRPCRequest.read_infile``)."""

    __slots__ = ("request",)

    def __init__(self, request: ITabletRPCRequest) -> None:
        self.request = request

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See ``IInfileReader.read``."""
        d: Deferred[bytes] = self.request.read_infile(max_bytes)
        return d


def _found_rows(options: Mapping[str, Any] | None) -> bool:
    """Whether the gate's client asked for CLIENT_FOUND_ROWS (option ``found_rows``)."""
    return options is not None and options.get("found_rows") is True


def _note(row: bytes) -> Note:
    """A ``Note`` from one text row of ``SHOW WARNINGS`` (ValueError if it is not one)."""
    level, code, message = decode_text_row(row, 3)
    if level is None or code is None or message is None:
        raise ValueError("SHOW WARNINGS answered a NULL")
    return Note(level.decode("ascii", "replace"), int(code), message.decode("utf-8", "replace"))


def _encode(sql: str) -> bytes:
    # surrogateescape: a gate that decoded non-UTF-8 client bytes that way gets them back.
    return sql.encode("utf-8", "surrogateescape")


@implementer(ITabletService)
class TabletQueryService:
    """The ``ITabletService`` of one tablet (see the module docstring)."""

    def __init__(
        self,
        *,
        state: TabletState,
        pools: TabletPools,
        policy: QueryPolicy,
        metrics: TabletMetrics,
        clock: IReactorTime,
        settings: QuerySettings | None = None,
    ) -> None:
        self.state = state
        self.pools = pools
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.settings = settings or QuerySettings()
        s = self.settings
        self.runner = Runner(pools.dba, clock, metrics, s.kill_grace)
        self.held = HeldConnections(
            clock,
            transaction_timeout=s.transaction_timeout,
            reserved_idle_timeout=s.reserved_idle_timeout,
            remember=s.remember_ended,
            on_expire=self._expired,
        )
        self._settings_seen: dict[tuple[str, ...], tuple[bytes, ...]] = {}
        self.draining = False  # shutting down: only open transactions' statements run
        self._opening = 0  # transactions and reservations past their checks, not yet held

    # --- checks -------------------------------------------------------------------------

    def _refuse(self, reason: str, error: MySQLError) -> MySQLError:
        self.metrics.refused.labels(reason=reason).inc()
        return error

    def _check_serving(self) -> None:
        state = self.state
        if not state.serving:
            raise self._refuse("not_serving", not_serving_error(state.alias, state.error))

    def _check_write(self, stmt: Statement, held: bool = False) -> None:
        state = self.state
        if stmt.is_write and not state.writable():
            if held and self.draining and state.tablet_type == "primary":
                return  # shutting down: open transactions may end (``drain``)
            raise self._refuse(
                "read_only", not_writable_error(state.alias, state.tablet_type, state.serving)
            )

    def _check_target(self, target: str | None) -> None:
        if not target:
            return
        state = self.state
        where, _, tablet_type = target.partition("@")
        keyspace, _, shard = where.partition(":")
        if (keyspace and keyspace != state.keyspace) or (shard and shard != state.shard):
            raise self._refuse(
                "wrong_target",
                MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"target {target!r} is not served by tablet {state.alias} "
                    f"({state.keyspace}:{state.shard}); route it to a tablet of that shard",
                ),
            )
        if tablet_type == "primary" and state.tablet_type != "primary":
            raise self._refuse(
                "read_only", not_writable_error(state.alias, state.tablet_type, state.serving)
            )

    def _statement(self, sql: bytes, args: ExecuteArgs) -> tuple[bytes, Statement]:
        stmt = classify(sql)
        if stmt.multi:
            raise self._refuse("multi_statement", multi_statement_error())
        if stmt.kind in (KIND_BEGIN, KIND_COMMIT, KIND_ROLLBACK):
            raise self._refuse("transaction_statement", transaction_statement_error(stmt.kind))
        sql = bind(sql, args.bind_vars)
        try:
            self.policy.check_denylist(sql, stmt)
        except MySQLError as e:
            raise self._refuse("denylist", e) from None
        return sql, stmt

    def _timeout(self, args: ExecuteArgs, stream: bool) -> tuple[float | None, str]:
        s = self.settings
        if stream:
            timeout, key = (s.stream_timeout or None), keys.STREAM_TIMEOUT.key
        else:
            timeout, key = s.query_timeout, keys.QUERY_TIMEOUT.key
        opts = args.options or {}
        wanted = opts.get("query_timeout_ms")
        if type(wanted) is int and wanted > 0 and (timeout is None or wanted / 1000 < timeout):
            return wanted / 1000, "the statement's QUERY_TIMEOUT_MS"
        return timeout, key

    # --- execute ------------------------------------------------------------------------

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Deferred[QueryResult]:
        """See ``ITabletService.execute``.

        The common case (autocommit, a pooled connection idle right now) is a plain
        callback chain; the others (held connections, waiting for the pool) a coroutine.
        """
        if args.transaction_id or args.reserved_id:
            return Deferred.fromCoroutine(self._execute(request, args, None))
        start = self.clock.seconds()
        sql = args.sql.encode("utf-8", "surrogateescape")  # (``_encode``, inlined)
        kind = KIND_OTHER
        try:
            sql, stmt = self._statement(sql, args)
            kind = stmt.kind
            if args.target:
                self._check_target(args.target)
            self._check_serving()
            self._check_write(stmt)
            if stmt.sets_state:
                raise self._refuse("session_state", session_state_error(stmt.first_word))
            want = self._prepared_settings(args.settings) if args.settings else ()
        except MySQLError as e:
            self.metrics.error(e, sql)
            self.metrics.observe(kind, self.clock.seconds() - start)
            return fail(e)
        opts = args.options
        pool = self.pools.for_queries(_found_rows(opts)) if opts else self.pools.query
        pc = pool.try_acquire(want)
        if pc is None or pc.tag != want:
            held = None if pc is None else Lease(pool, pc)
            return Deferred.fromCoroutine(self._pooled_later(request, sql, stmt, args, start, held))
        lease = Lease(pool, pc)
        if args.options:
            timeout, key = self._timeout(args, False)
        else:  # (what ``_timeout`` answers without options)
            timeout, key = self.settings.query_timeout, _QUERY_TIMEOUT_KEY
        collector = Collector(self.policy.row_limit(args.max_rows), self.settings.max_result_bytes)
        d = self.runner.start(
            lease,
            sql,
            collector,
            timeout=timeout,
            timeout_key=key,
            request=request,
            infile=_infile(request, args),
        )
        done = d.addBoth(self._pooled_done, lease, stmt, sql, collector, start)
        return cast(Deferred[QueryResult], done)

    def _pooled_done(
        self,
        summary: Any,
        lease: Lease,
        stmt: Statement,
        sql: bytes,
        collector: Collector,
        start: float,
    ) -> QueryResult | Failure | Deferred[QueryResult]:
        """The end of ``execute``'s fast path: what ``_run``, ``_pooled`` and ``_execute``
        do after the statement, in the same order. A result with warnings fetches them
        (``_with_notes``) before the connection goes back."""
        give_back = True
        try:
            if isinstance(summary, Failure):
                if isinstance(summary.value, MySQLError):
                    self.metrics.error(summary.value, sql)
                return summary
            if collector.error is not None:
                self.metrics.rows_exceeded.inc()
            try:
                result = collector.result(summary)
                if lease.client.in_transaction:
                    raise left_open_error()  # (the pool's reset rolls it back)
            except MySQLError as e:
                self.metrics.error(e, sql)
                raise
            self._warn_rows(len(result.rows), sql)
            if result.warnings and self.settings.max_warnings:
                give_back = False
                return Deferred.fromCoroutine(self._notes_then_back(lease, stmt, result))
            return result
        finally:
            if give_back:
                lease.give_back(reset=stmt.maybe_dirty)
            self.metrics.observe(stmt.kind, self.clock.seconds() - start)

    async def _notes_then_back(
        self, lease: Lease, stmt: Statement, result: QueryResult
    ) -> QueryResult:
        try:
            return await self._with_notes(lease, result)
        finally:
            lease.give_back(reset=stmt.maybe_dirty)

    async def _with_notes(self, lease: Lease, result: QueryResult) -> QueryResult:
        """``result`` with what ``SHOW WARNINGS`` answers on ``lease`` (its statement's
        connection, before anything else runs there), at most ``max_warnings`` rows. The
        gate answers the client's SHOW WARNINGS from them: on a pooled connection the next
        borrower's statement would clear them, or show them to another session. A failure
        leaves the result without notes (logged)."""
        limit = self.settings.max_warnings
        collector = Collector(limit, self.settings.max_result_bytes)
        try:
            await self.runner.run(
                lease,
                b"SHOW WARNINGS LIMIT %d" % limit,
                collector,
                timeout=self.settings.query_timeout,
                timeout_key=_QUERY_TIMEOUT_KEY,
                request=None,
            )
            notes = tuple(_note(row) for row in collector.rows)
        except (MySQLError, ValueError) as e:
            log.info("SHOW WARNINGS after a statement failed: {e}", e=e)
            return result
        return result._replace(notes=notes)

    async def _pooled_later(
        self,
        request: ITabletRPCRequest,
        sql: bytes,
        stmt: Statement,
        args: ExecuteArgs,
        start: float,
        lease: Lease | None = None,
    ) -> QueryResult:
        """``execute`` when the query pool has no idle connection (wait for one), or when
        ``lease``'s connection must first be given the request's settings."""
        try:
            return await self._pooled(request, sql, stmt, args, None, lease)
        except MySQLError as e:
            self.metrics.error(e, sql)
            raise
        finally:
            self.metrics.observe(stmt.kind, self.clock.seconds() - start)

    def stream_execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink
    ) -> Deferred[QueryResult]:
        """See ``ITabletService.stream_execute`` (no row limit: that is what streams are for)."""
        return Deferred.fromCoroutine(self._execute(request, args, sink))

    async def _execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink | None
    ) -> QueryResult:
        start = self.clock.seconds()
        sql = _encode(args.sql)
        kind = KIND_OTHER
        try:
            sql, stmt = self._statement(sql, args)
            kind = stmt.kind
            if args.transaction_id or args.reserved_id:
                held = self.held.find(args.transaction_id, args.reserved_id)
                self._check_write(stmt, held=True)
                if stmt.maybe_dirty:
                    held.lease.dirty = True
                return await self._on_held(held, request, sql, args, sink, stmt)
            self._check_target(args.target)
            self._check_serving()
            self._check_write(stmt)
            if stmt.sets_state:
                raise self._refuse("session_state", session_state_error(stmt.first_word))
            return await self._pooled(request, sql, stmt, args, sink)
        except MySQLError as e:
            self.metrics.error(e, sql)
            raise
        finally:
            self.metrics.observe(kind, self.clock.seconds() - start)

    async def _pooled(
        self,
        request: ITabletRPCRequest,
        sql: bytes,
        stmt: Statement,
        args: ExecuteArgs,
        sink: IRowSink | None,
        lease: Lease | None = None,
    ) -> QueryResult:
        want = self._prepared_settings(args.settings) if args.settings else ()
        if lease is None:
            pool = self.pools.for_queries(_found_rows(args.options))
            lease = Lease(pool, pool.try_acquire(want) or await pool.acquire())
        try:
            warned = await self._give_settings(lease, request, want)
            result = await self._run(lease, request, sql, args, sink)
            if lease.client.in_transaction:
                raise left_open_error()  # (the pool's reset rolls it back)
            if warned and not result.warnings and _setting_warnings(args.options):
                # The gate checking a new setting (``DO 0`` after it, which keeps them).
                result = result._replace(warnings=warned)
                if self.settings.max_warnings:
                    result = await self._with_notes(lease, result)
            return result
        finally:
            lease.give_back(reset=stmt.maybe_dirty)

    def _prepared_settings(self, settings: list[str]) -> tuple[bytes, ...]:
        """``settings`` checked like ``reserve``'s, as bytes (cached: a session sends the
        same ones with each statement)."""
        key = tuple(settings)
        done = self._settings_seen.get(key)
        if done is None:
            done = tuple(self._settings(settings))
            if len(self._settings_seen) >= _SETTINGS_SEEN_MAX:
                self._settings_seen.clear()
            self._settings_seen[key] = done
        return done

    async def _give_settings(
        self, lease: Lease, request: ITabletRPCRequest, want: tuple[bytes, ...]
    ) -> int:
        """Make the pooled connection's session hold exactly ``want`` (its SET statements):
        reset it if it holds others, then run them; the warnings of the last one run (0
        when none ran). A failing one leaves the connection to be reset."""
        pc = lease.pc
        if pc.tag == want:
            return 0
        if pc.tag:
            await lease.client.reset_connection()
            pc.tag = ()
        lease.dirty = True  # until every statement has run
        warnings = 0
        for sql in want:
            warnings = (await self._plain(lease, request, sql)).warnings
        pc.tag = want
        lease.dirty = False
        return warnings

    async def _on_held(
        self,
        held: Held,
        request: ITabletRPCRequest,
        sql: bytes,
        args: ExecuteArgs,
        sink: IRowSink | None,
        stmt: Statement,
    ) -> QueryResult:
        self.held.start_use(held, args.sql)
        try:
            await held.lease.when_settled()  # a killed statement must be over first
            self._still_held(held)
            result = await self._run(held.lease, request, sql, args, sink)
            # (Only after a CALL: XA START leaves a reserved connection in its XA
            # transaction on purpose.)
            call = stmt.first_word == "call" and not held.transaction_id
            if call and held.lease.client.in_transaction:
                await self._plain(held.lease, request, _ROLLBACK)
                raise left_open_error()
            return result
        except MySQLError as e:
            if held.lease.client.is_broken and not held.closed:
                # mysqld rolled the transaction back with the connection (a LOAD DATA
                # LOCAL whose file broke off, mysqld gone...): say so from now on.
                self._broke(held, e)
            raise
        finally:
            self._end_use(held)

    def _broke(self, held: Held, error: MySQLError) -> None:
        kind = "transaction" if held.transaction_id else "reserved"
        self.metrics.ended.labels(kind=kind, reason="broken").inc()
        how = f"its connection to mysqld broke: {error.message}"
        if held.transaction_id:
            how = f"rolled back: {how}"
        log.info("{what} ended: {how}", what=held.describe(), how=how)
        self._release(held, how)

    def _still_held(self, held: Held) -> None:
        if held.closed:
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"{held.describe()} ended while the statement waited{HELD_GONE}",
            )

    def _end_use(self, held: Held) -> None:
        if not held.closed:
            self.held.end_use(held)

    async def _run(
        self,
        lease: Lease,
        request: ITabletRPCRequest | None,
        sql: bytes,
        args: ExecuteArgs,
        sink: IRowSink | None,
    ) -> QueryResult:
        timeout, key = self._timeout(args, sink is not None)
        if sink is None:
            collector = Collector(
                self.policy.row_limit(args.max_rows), self.settings.max_result_bytes
            )
            summary = await self.runner.run(
                lease,
                sql,
                collector,
                timeout=timeout,
                timeout_key=key,
                request=request,
                infile=_infile(request, args),
            )
            if collector.error is not None:
                self.metrics.rows_exceeded.inc()
            result = collector.result(summary)
            self._warn_rows(len(result.rows), sql)
        else:
            producer = ConnectionProducer(lease.client)
            relay = StreamRelay(sink, producer)
            sink.registerProducer(producer, True)
            try:
                summary = await self.runner.run(
                    lease, sql, relay, timeout=timeout, timeout_key=key, request=request
                )
            finally:
                lease.client.resume_reading()
                sink.unregisterProducer()
            self._warn_rows(relay.rows, sql)
            result = relay.result(summary)
        if result.warnings and self.settings.max_warnings:
            result = await self._with_notes(lease, result)
        return result

    def _warn_rows(self, rows: int, sql: bytes) -> None:
        warn = self.policy.warn_result_rows
        if warn and rows > warn:
            self.metrics.rows_warned.inc()
            log.warn(
                "result of {rows} rows exceeds query.warn_result_rows ({warn}): {sql}",
                rows=rows,
                warn=warn,
                sql=sql[:200].decode("utf-8", "replace"),
            )

    # --- transactions -------------------------------------------------------------------

    def _timed(self, kind: str, coro: Any) -> Deferred[Any]:
        start = self.clock.seconds()

        def done(result: Any) -> Any:
            self.metrics.observe(kind, self.clock.seconds() - start)
            if isinstance(result, Failure) and isinstance(result.value, MySQLError):
                self.metrics.error(result.value, kind.upper())
            return result

        return Deferred.fromCoroutine(coro).addBoth(done)

    async def _simple(self, held: Held, request: ITabletRPCRequest | None, sql: bytes) -> None:
        """Run a statement whose result nobody wants on a held connection."""
        self.held.start_use(held, sql.decode("utf-8", "replace"))
        try:
            await held.lease.when_settled()
            self._still_held(held)
            await self._plain(held.lease, request, sql)
        finally:
            self._end_use(held)

    async def _plain(self, lease: Lease, request: ITabletRPCRequest | None, sql: bytes) -> Result:
        s = self.settings
        return await self.runner.run(
            lease,
            sql,
            _ignore,
            timeout=s.query_timeout,
            timeout_key=keys.QUERY_TIMEOUT.key,
            request=request,
        )

    def begin(self, request: ITabletRPCRequest, args: BeginArgs) -> Deferred[int]:
        """See ``ITabletService.begin``."""
        return self._timed(KIND_BEGIN, self._begin(request, args))

    async def _begin(self, request: ITabletRPCRequest, args: BeginArgs) -> int:
        if args.reserved_id:
            held = self.held.find(0, args.reserved_id)
            if held.transaction_id:
                raise MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"{held.describe()} is already in a transaction; commit or roll it back",
                )
            await self._simple(held, request, _start_statement(args.options))
            tid = self.held.set_transaction(held)
            self.held.arm(held)
            return tid
        self._check_target(args.target)
        self._check_serving()
        settings = self._prepared_settings(args.settings) if args.settings else ()
        start = _start_statement(args.options)
        self._opening += 1  # (a drain waits for it: it was accepted while serving)
        try:
            held = await self._new_held(request, [*settings, start], _found_rows(args.options))
            tid = self.held.set_transaction(held)
        finally:
            self._opening -= 1
        self.held.arm(held)
        return tid

    async def _new_held(
        self, request: ITabletRPCRequest, statements: list[bytes], found_rows: bool = False
    ) -> Held:
        """A transaction-pool connection prepared by ``statements`` (given back on failure)."""
        pool = self.pools.for_transactions(found_rows)
        lease = Lease(pool, await pool.acquire())
        try:
            for sql in statements:
                await self._plain(lease, request, sql)
        except BaseException:
            lease.give_back(reset=True)
            raise
        return Held(lease, self.clock.seconds())

    def commit(self, request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int]:
        """See ``ITabletService.commit``."""
        return self._timed(KIND_COMMIT, self._finish(request, args, _COMMIT, "committed"))

    def rollback(self, request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int]:
        """See ``ITabletService.rollback``."""
        return self._timed(KIND_ROLLBACK, self._finish(request, args, _ROLLBACK, "rolled back"))

    async def _finish(
        self, request: ITabletRPCRequest, args: TransactionArgs, sql: bytes, how: str
    ) -> int:
        held = self.held.find(args.transaction_id)
        try:
            await self._simple(held, request, sql)
        except CancelledError:
            raise
        except BaseException as e:
            # A failed COMMIT leaves the transaction in an unknown state: end it.
            if not held.closed:
                why = e.message if isinstance(e, MySQLError) else type(e).__name__
                self._release(held, f"{sql.split()[0].decode().lower()} failed: {why}")
            raise
        self.held.end_transaction(held, how)
        if held.reserved_id:
            self.held.arm(held)
            return held.reserved_id
        self._release(held, how)
        return 0

    # --- reserved connections -----------------------------------------------------------

    def reserve(self, request: ITabletRPCRequest, args: ReserveArgs) -> Deferred[ReserveResult]:
        """See ``ITabletService.reserve``."""
        return self._timed(KIND_OTHER, self._reserve(request, args))

    def _settings(self, settings: list[str] | None) -> list[bytes]:
        out = []
        for text in settings or ():
            sql = _encode(text)
            stmt = classify(sql)
            if stmt.multi:
                raise self._refuse("multi_statement", multi_statement_error())
            if stmt.kind in (KIND_BEGIN, KIND_COMMIT, KIND_ROLLBACK):
                raise self._refuse("transaction_statement", transaction_statement_error(stmt.kind))
            self._check_write(stmt)
            try:
                self.policy.check_denylist(sql, stmt)
            except MySQLError as e:
                raise self._refuse("denylist", e) from None
            out.append(sql)
        return out

    async def _reserve(self, request: ITabletRPCRequest, args: ReserveArgs) -> ReserveResult:
        settings = self._settings(args.settings)
        if args.transaction_id:
            held = self.held.find(args.transaction_id)
            for sql in settings:
                await self._simple(held, request, sql)
            rid = held.reserved_id or self.held.set_reserved(held)
            self.held.arm(held)
            return ReserveResult(rid, held.transaction_id)
        self._check_target(args.target)
        self._check_serving()
        statements = settings + ([_start_statement(args.options)] if args.begin else [])
        self._opening += 1
        try:
            held = await self._new_held(request, statements, _found_rows(args.options))
            rid = self.held.set_reserved(held)
            tid = self.held.set_transaction(held) if args.begin else 0
        finally:
            self._opening -= 1
        self.held.arm(held)
        return ReserveResult(rid, tid)

    def release(self, request: ITabletRPCRequest, args: ReleaseArgs) -> Deferred[None]:
        """See ``ITabletService.release``: roll back and give the connection back."""
        return Deferred.fromCoroutine(self._release_op(args))

    async def _release_op(self, args: ReleaseArgs) -> None:
        held = self.held.find(args.transaction_id, args.reserved_id)
        self.runner.kill_lease(held.lease, "released")
        await self._release(held, "released by the gate")

    def _release(self, held: Held, how: str) -> Deferred[None]:
        """Forget ``held``'s ids and give its connection back (reset: rolls back)."""
        self.held.end(held, how)
        held.closed = True
        return held.lease.give_back(reset=True)

    def _expired(self, held: Held, how: str) -> None:
        kind = "transaction" if held.transaction_id else "reserved"
        self.metrics.ended.labels(kind=kind, reason="timeout").inc()
        log.info("{what} {how}", what=held.describe(), how=how)
        self._release(held, how)

    def kill(self, request: ITabletRPCRequest, args: KillArgs) -> Deferred[bool]:
        """See ``ITabletService.kill``: stop the statement of a transaction/reservation;
        with ``connection`` also drop the connection (its transaction rolls back)."""
        return Deferred.fromCoroutine(self._kill(args))

    async def _kill(self, args: KillArgs) -> bool:
        try:
            held = self.held.find(args.transaction_id, args.reserved_id)
        except MySQLError:
            return False  # nothing (any more) to kill
        if not args.connection:
            return self.runner.kill_lease(held.lease, "killed")
        self.metrics.ended.labels(
            kind="transaction" if held.transaction_id else "reserved", reason="killed"
        ).inc()
        self.metrics.kills.labels(reason="killed").inc()
        lease = held.lease
        self.held.end(held, "killed by the gate")
        held.closed = True
        lease.broken = True
        release = lease.hold()
        try:
            await self.runner.kill_query(lease.connection_id, connection=True)
        finally:
            release()
        lease.give_back()
        return True

    # --- tablet manager -----------------------------------------------------------------

    #: Runs ``manage`` actions (``vtwist.tablet.manager.TabletManager``; set by the tap).
    manager: Any = None

    def manage(self, request: ITabletRPCRequest, args: ManageArgs) -> Deferred[dict[str, Any]]:
        """See ``ITabletService.manage``: handed to the tablet manager."""
        if self.manager is None:
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"vttablet {self.state.alias} has no tablet manager; it cannot run {args.action!r}",
            )
        d: Deferred[dict[str, Any]] = self.manager.manage(request, args)
        return d

    # --- health -------------------------------------------------------------------------

    def health(self) -> Mapping[str, Any]:
        """See ``ITabletService.health``: the tablet state's snapshot."""
        return self.state.snapshot()

    def subscribe_health(
        self, listener: Callable[[Mapping[str, Any]], object]
    ) -> Callable[[], None]:
        """See ``ITabletService.subscribe_health``."""
        return self.state.subscribe(listener)

    # --- lifetime -----------------------------------------------------------------------

    def counts(self) -> tuple[int, int]:
        """(open transactions, reserved connections), for metrics."""
        return self.held.counts()

    def drain(self) -> Deferred[None]:
        """Shutting down, once the gates heard the tablet stops serving (new statements,
        transactions and reservations are refused as not serving): wait at most
        ``shutdown_grace`` seconds for statements running on pooled connections, open
        transactions and statements on reserved connections to end. Statements of open
        transactions still run, writes included, so they can commit."""
        self.draining = True
        return Deferred.fromCoroutine(self._drain("shutting down", "rolling back"))

    def quiesce(self) -> Deferred[None]:
        """A primary being demoted (planned reparent), once it refuses new work as not
        serving: ``drain``'s wait, so that open transactions can commit before mysqld
        turns read-only (what is left then fails at mysqld)."""
        was = self.draining
        self.draining = True

        def restore(result: object) -> object:
            self.draining = was
            return result

        d = Deferred.fromCoroutine(self._drain("demoting", "going read-only anyway"))
        return d.addBoth(restore)

    async def _drain(self, doing: str, then: str) -> None:
        deadline = self.clock.seconds() + self.settings.shutdown_grace
        while True:
            busy = self._busy()
            if not busy:
                return
            if self.clock.seconds() >= deadline:
                log.warn(
                    "{doing}: {busy} still running after shutdown.grace_period; {then}",
                    doing=doing,
                    busy=busy,
                    then=then,
                )
                return
            await deferLater(self.clock, DRAIN_POLL, lambda: None)

    def mysqld_hung(self) -> None:
        """The health probe timed out: mysqld stopped answering. On a replica or rdonly
        tablet, break off the statements running on pooled connections (they fail with
        2013, and the gate runs those reads on another tablet) instead of letting them wait
        for their timeouts. A primary's are left alone: they may be writes."""
        if self.state.tablet_type == "primary":
            return
        broken = sum(pool.abort_in_use() for pool in self.pools.statement_pools())
        if broken:
            log.warn(
                "mysqld stopped answering: broke off {n} statement(s) on pooled connections "
                "so that the gates run them elsewhere",
                n=broken,
            )

    def _busy(self) -> str:
        """What still runs (for ``drain``): "" when nothing does."""
        pools = self.pools.statement_pools()
        # Statements accepted while serving count from their checks on: those still
        # waiting for a pooled connection, and transactions still starting.
        statements = sum(s.in_use + s.waiters for s in (p.stats() for p in pools))
        held = list(self.held)
        transactions = sum(1 for h in held if h.transaction_id)
        reserved = sum(1 for h in held if h.busy and not h.transaction_id)
        parts = [
            f"{n} {what}"
            for n, what in (
                (statements, "pooled statement(s)"),
                (transactions, "transaction(s)"),
                (self._opening, "transaction(s) or reservation(s) starting"),
                (reserved, "statement(s) on reserved connections"),
            )
            if n
        ]
        return ", ".join(parts)

    def shutdown(self) -> Deferred[None]:
        """Roll back every held connection and give it back (the pools close after)."""
        ds = [self._release(held, "the tablet shut down") for held in list(self.held)]
        return gatherResults(ds, consumeErrors=True).addBoth(lambda _: None)

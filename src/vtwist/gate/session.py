"""One client session of the gate: the ``IQueryHandler`` the MySQL server calls.

Per statement (``classify``): gate-owned statements are answered here (``answers``);
BEGIN/COMMIT/ROLLBACK drive a tablet transaction; everything else is routed:

- target: the login database or ``USE``/COM_INIT_DB (``target``), else the only keyspace;
- writes, locking reads and transactions go to the primary; a write with a replica or
  rdonly target is refused (ERROR 1290, "use ks@primary"); plain reads go to the target's
  tablet type, or wherever the routing policy's ``redirect`` sends them;
- failover: a primary-bound statement outside a transaction waits in the gate's failover
  buffer (``buffer``) while its shard has no serving primary, or after the primary refused
  it as read-only (1290), then runs on the new primary;
- transactions: BEGIN is lazy, the first statement opens the tablet transaction on the
  primary and later ones are pinned to it until COMMIT/ROLLBACK. With autocommit off a
  write, a locking read, SAVEPOINT or a read of tables at a primary target opens one
  implicitly, as in MySQL and Vitess (``session.autocommit_off_reads_in_transaction`` false
  leaves reads before the first write on pooled connections); one that has only read ends
  quietly when its tablet ends it or stops serving. DDL and the like (``_commits``) commit
  the open transaction first and open none. One transaction spans one shard: another
  keyspace or shard inside it is refused;
- settings (a SET of session system variables only, ``classify.replayable_setting``): the
  tablet checks it on a pooled connection, then it travels with every pooled statement,
  transaction and stream of the session (tablet ``settings``), and no connection is held;
  user variables set to literals become one such setting (``uservars``);
- other session state (other user variables, SET TRANSACTION for the next one, temporary tables,
  GET_LOCK...): the statement runs on a reserved tablet connection, and from then on every
  statement of the session does (reserved per tablet on first use). Settings and ``SET``
  statements are replayed when a new tablet connection is reserved; temporary tables and
  locks live on the tablet where they were made, and the session prefers that tablet.
  COM_RESET_CONNECTION, COM_CHANGE_USER and the end of the session release everything.
  ``SET NAMES utf8mb4`` and ``SET autocommit`` are the gate's own (the tablets' pools are
  utf8mb4 already).
- prepared statements are the gate's: the parameter count from the SQL, the columns from a
  field-only query (``SELECT * FROM (...) LIMIT 0``; none if that fails); an execute is
  the statement with its values interpolated, routed as a text query.
- warnings: the session's own (``diagnostics``), from the notes the tablet fetched after a
  statement with warnings, or the error the gate answered; SHOW WARNINGS/ERRORS and their
  counts are answered here.
- LOAD DATA LOCAL INFILE: the statement goes to the tablet with the client's file as a
  reader (``IResultSink.local_infile``, at most ``max_local_infile_size`` bytes in all):
  the tablet pulls the file in pieces as mysqld takes it, so neither holds it whole; the
  reply waits until the client has sent all of it.
- statistics: each statement's time, rows and failure go to the gate's ``query_stats``
  by digest (a prepared statement's computed once), and each error sent to the client to
  its recent errors (``querystats``).

Results are relayed without decoding rows; column definitions are decoded once (cached).
Tablet-side client errors (2003, 2013: link down) reach the client as ERROR 1105 naming the
tablet, since the client's own connection is fine.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.gate import answers
from vtwist.gate.buffer import refused
from vtwist.gate.classify import (
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_DDL,
    KIND_ROLLBACK,
    KIND_SAVEPOINT,
    KIND_SELECT,
    KIND_SET,
    OWNED_AUTOCOMMIT,
    OWNED_CONNECTION_ID,
    OWNED_COUNT_WARNINGS,
    OWNED_DATABASE,
    OWNED_DATABASE_DDL,
    OWNED_DATABASES,
    OWNED_KEYSPACES,
    OWNED_KILL,
    OWNED_KILL_QUERY,
    OWNED_LOAD_LOCAL,
    OWNED_PROCESSLIST,
    OWNED_QUERY_TIMEOUT,
    OWNED_REPLICATION_STATUS,
    OWNED_SERVER_ADMIN,
    OWNED_SET_NAMES,
    OWNED_SHARDS,
    OWNED_SHOW_WARNINGS,
    OWNED_TABLETS,
    OWNED_TARGET,
    OWNED_USE,
    OWNED_VERSION,
    OWNED_VERSION_COMMENT,
    OWNED_WORKLOAD,
    QueryInfo,
    chains_by_default,
    classify,
    database_ddl,
    directive_timeout_ms,
    replayable_setting,
    reusable,
    sets_last_insert_id,
    transaction_characteristics,
    transaction_end,
)
from vtwist.gate.diagnostics import Diagnostics, keeps, reads_counts
from vtwist.gate.discovery import NoServingTabletError, TabletHandle
from vtwist.gate.qualify import needs_database
from vtwist.gate.rewrite import SessionValues, mentions_session_values, with_session_values
from vtwist.gate.session_parts import (
    Held,
    LinkLostError,
    Pin,
    Prepared,
    Relay,
    link_error,
    read_only_target,
    sql_text,
    wire_target,
)
from vtwist.gate.target import PRIMARY, RDONLY, REPLICA, Target, check_keyspace, parse_target
from vtwist.gate.uservars import fits, set_literals, set_statement
from vtwist.interfaces import (
    REPLY_ENDS_COMMAND,
    IClientFile,
    IQueryHandler,
    IResultSink,
    ReplyEndsCommand,
)
from vtwist.protocols.mysql.constants import Capability, ServerStatus
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.literals import count_placeholders, interpolate
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
from vtwist.protocols.mysql.splitter import split_statements
from vtwist.protocols.mysql.values import decode_text_row
from vtwist.protocols.tabletrpc_ops import Note, QueryResult, Scalar, held_gone

if TYPE_CHECKING:
    from vtwist.gate.gate import Gate
    from vtwist.protocols.mysql.server import MySQLServerProtocol

log = Logger()

_TX_KINDS = frozenset({KIND_BEGIN, KIND_COMMIT, KIND_ROLLBACK})


def _starts_transaction(info: QueryInfo) -> bool:
    """With autocommit off, whether ``info`` opens the session's implicit transaction
    wherever the session reads: a write, a locking read or a savepoint (SQLAlchemy's
    ``begin_nested`` sends SAVEPOINT first; on a pooled connection it would be lost before
    its RELEASE). Reads of tables may too (``GateSession._opens_transaction``). Not a
    statement that commits implicitly (``_commits``): it ends a transaction, and opens none."""
    return (info.is_write or info.locks or info.kind == KIND_SAVEPOINT) and not _commits(info)


#: A setting that changes the connection's character sets.
_CHARSET_SETTING: Final = re.compile(
    r"\bNAMES\b|\bCHARACTER\s+SET\b|\bCHARSET\b|character_set_|collation_connection", re.I
)

#: First words, besides DDL's, of statements that commit implicitly in MySQL.
_COMMITTING_WORDS: Final = frozenset(
    {"grant", "revoke", "analyze", "optimize", "repair", "check", "lock", "flush"}
)


def _commits(info: QueryInfo) -> bool:
    """Whether MySQL commits the open transaction before running ``info``, and leaves none
    open after it: DDL (CREATE, ALTER, DROP, RENAME, TRUNCATE; not of TEMPORARY tables,
    which are session state), GRANT, REVOKE, LOCK TABLES, FLUSH and the table maintenance
    statements. On a tablet's transaction connection, whose autocommit is on, the
    statements after it would commit one by one, so the gate commits the transaction first
    and runs it outside."""
    if info.kind == KIND_DDL:
        return not info.sets_state
    return info.first_word in _COMMITTING_WORDS


def table_locks_autocommit_off() -> MySQLError:
    """ERROR 1235 for a write under LOCK TABLES with autocommit off: the tablet opens a
    transaction with START TRANSACTION, which would release the session's table locks."""
    return MySQLError(
        ErrorCode.NOT_SUPPORTED_YET,
        "a write under LOCK TABLES with autocommit off is not supported through vtgate (the "
        "transaction it opens would release the table locks); SET autocommit = 1 before LOCK "
        "TABLES, or lock rows with SELECT ... FOR UPDATE in a transaction instead",
    )


def _gone(error: MySQLError) -> bool:
    """Whether ``error`` says the session's tablet transaction is gone: the tablet ended it
    (``held_gone``) or the link to the tablet broke under it."""
    return held_gone(error) or isinstance(error, LinkLostError)


def _reads_tables(info: QueryInfo) -> bool:
    """A SELECT that reads tables of a keyspace: what starts a transaction's snapshot in
    MySQL with autocommit off (``SELECT 1``, ``@@`` variables and system schemas do not)."""
    return info.kind == KIND_SELECT and needs_database(info)


AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
IN_TRANS = int(ServerStatus.IN_TRANS)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
ER_KILL_DENIED = 1095
MAX_SETTINGS = 64  # replayed SET statements kept per session
MAX_INFO_CHARS = 100  # SHOW PROCESSLIST's Info, as mysqld truncates it


@implementer(IQueryHandler)
class GateSession:
    """One client session (module docstring)."""

    def __init__(self, gate: Gate, info: ClientInfo) -> None:
        self.gate = gate
        self.info = info
        self.target: Target | None = None
        self.autocommit = True
        self.explicit_tx = False
        # The open transaction is an implicit one a read opened and has only read so far
        # (``_reads_ended``): if its tablet ends it, nothing of it is lost.
        self.reads_only = False
        # LOCK TABLES ran on a reserved connection and no UNLOCK TABLES or BEGIN since.
        self.table_locks = False
        self.tx: Pin | None = None
        self.reserved: dict[str, Held] = {}
        self.settings: list[str] = []
        # User variables set to literals (``uservars``): lowercase name -> the literal as
        # written; one SET of them all is among ``settings``.
        self.user_vars: dict[bytes, bytes] = {}
        self.multi = info.multi_statements
        # Options on every tablet call that may pick a pooled connection: a client that
        # asked for CLIENT_FOUND_ROWS gets connections opened with it (tablet ``found_rows``).
        self.tablet_options: dict[str, Scalar] | None = (
            {"found_rows": True} if info.capabilities & Capability.FOUND_ROWS else None
        )
        self.command = "Sleep"
        self.since = gate.clock.seconds()
        self.current: str | None = None
        self.closed = False
        # SET workload='olap': SELECTs stream, without the row limit (dump programs start so)
        self.olap = info.attrs.get("program_name") in gate.settings.olap_programs
        self.tx_start = ""  # characteristics of the START TRANSACTION not opened yet
        self.last_insert_id = 0  # LAST_INSERT_ID() of this session (``rewrite``)
        self.row_count = -1  # ROW_COUNT(): what the previous statement reported
        self.diagnostics = Diagnostics()  # SHOW WARNINGS and the like (``diagnostics``)
        self._info: QueryInfo | None = None  # the statement running
        self._reads_counts = False  # it read @@warning_count or @@error_count (rewritten)
        self._infile: IClientFile | None = None  # the LOAD DATA LOCAL file of the statement
        self.query_timeout_ms = 0  # SET query_timeout (Vitess's, milliseconds; 0: default)
        self._timeout_ms = 0  # the statement's: that, or its /*vt+ QUERY_TIMEOUT_MS=n */
        self._more = 0  # MORE_RESULTS_EXISTS of the statement running
        self._inflight: Deferred[Any] | None = None
        self._digest: bytes | None = None  # the running execute's, from its prepare
        self._rows = (0, 0)  # rows sent and affected by the statement running

    @property
    def connection_id(self) -> int:
        """The gate connection id (CONNECTION_ID(), SHOW PROCESSLIST, KILL)."""
        return self.info.connection_id

    @property
    def in_transaction(self) -> bool:
        """True between BEGIN (or an implicit start) and COMMIT/ROLLBACK."""
        return self.explicit_tx or self.tx is not None

    def status(self) -> int:
        """AUTOCOMMIT and IN_TRANS as the session stands."""
        return (AUTOCOMMIT if self.autocommit else 0) | (IN_TRANS if self.in_transaction else 0)

    # --- COM_QUERY --------------------------------------------------------------------------

    def query(self, sql: bytes, sink: IResultSink) -> Deferred[None] | ReplyEndsCommand:
        """Run ``sql`` (several statements when multi-statements are on)."""
        statements = (split_statements(sql) if self.multi else [sql]) or [sql]
        if len(statements) != 1:
            return Deferred.fromCoroutine(self._query(statements, sink))
        return self._run_single(statements[0], None, sink)

    def _run_single(
        self, sql: bytes, info: QueryInfo | None, sink: IResultSink
    ) -> Deferred[None] | ReplyEndsCommand:
        """The one statement of a COM_QUERY or COM_STMT_EXECUTE: on the fast path the
        command ends with its reply (``REPLY_ENDS_COMMAND``: no Deferred per query)."""
        sql, info = self._classified(sql, info)
        if self._plain(info):
            return self._fast(sql, info, sink, 0, ends=True)
        d = Deferred.fromCoroutine(self._statement(sql, info, sink, 0))
        return d.addErrback(self._query_failed, sink)

    def _classified(self, sql: bytes, info: QueryInfo | None) -> tuple[bytes, QueryInfo]:
        """``sql`` as it is sent on, and its classification (``info`` if already known):
        ``CONNECTION_ID()``, ``@@autocommit`` and ``@@workload`` become this session's
        values (``rewrite``)."""
        if info is None:
            info = classify(sql)
        timeout_ms = directive_timeout_ms(sql)
        self._timeout_ms = self.query_timeout_ms if timeout_ms is None else timeout_ms
        self._reads_counts = False
        if info.owned is None and mentions_session_values(sql):
            self._reads_counts = reads_counts(sql)
            values = SessionValues(
                self.connection_id,
                self.autocommit,
                "OLAP" if self.olap else "OLTP",
                self.last_insert_id,
                self.row_count,
                self.diagnostics.warning_count,
                self.diagnostics.error_count,
                self.query_timeout_ms,
            )
            sql = with_session_values(sql, values)
            info = replace(info, sql=sql)
        return sql, info

    def _query_failed(self, failure: Failure, sink: IResultSink) -> None:
        e = failure.value
        if isinstance(e, MySQLError):
            self._failed(e)
            sink.error(e)
            return
        failure.raiseException()  # anything else goes on to the server

    def _failed(self, e: MySQLError) -> None:
        """A statement fails with ``e``: counted, kept for SHOW WARNINGS/ERRORS and among the
        gate's recent errors."""
        gate = self.gate
        gate.metrics.errors.labels(code=str(e.code)).inc()
        self.diagnostics.failed(e.code, e.message)
        info = self._info
        gate.query_stats.error(
            gate.clock.seconds(),
            self.info.user,
            self._database(),
            e.code,
            e.message,
            info.sql if info is not None else b"",
        )

    def _database(self) -> str:
        """The session's target as ``SELECT DATABASE()`` shows it ("" for none)."""
        target = self.target
        return target.database() if target is not None else ""

    async def _query(self, statements: list[bytes], sink: IResultSink) -> None:
        for i, statement in enumerate(statements):
            more = MORE if i < len(statements) - 1 else 0
            try:
                await self._run_statement(statement, None, sink, more)
            except MySQLError as e:
                self._failed(e)
                sink.error(e)
                return

    def _run_statement(
        self, sql: bytes, info: QueryInfo | None, sink: IResultSink, more: int
    ) -> Deferred[None]:
        """One statement (``info``: its classification if known): the common case on the
        fast path (``_fast``), anything else through ``_statement``."""
        sql, info = self._classified(sql, info)
        if self._plain(info):
            return cast(Deferred[None], self._fast(sql, info, sink, more))
        return Deferred.fromCoroutine(self._statement(sql, info, sink, more))

    async def _statement(self, sql: bytes, info: QueryInfo, sink: IResultSink, more: int) -> None:
        gate = self.gate
        gate.questions += 1
        start = gate.clock.seconds()
        self.command, self.since, self.current = "Query", start, sql_text(sql)
        self._more = more
        self._info = info
        try:
            if info.owned is not None:
                await self._owned(info, sink, more)
            elif info.kind == KIND_BEGIN:
                characteristics = transaction_characteristics(info.sql)
                await self._commit_open()
                self.explicit_tx = True
                self.reads_only = False
                self.table_locks = False  # as in MySQL, a transaction releases them
                self.tx_start = characteristics  # (the tablet transaction opens lazily)
                sink.ok(status=self.status() | more)
            elif info.kind in (KIND_COMMIT, KIND_ROLLBACK):
                chain, release = transaction_end(info.sql)
                characteristics = self.tx.characteristics if self.tx else self.tx_start
                await self._finish(info.kind == KIND_COMMIT)
                if chain:  # AND CHAIN: a new one at once, with the same characteristics
                    self.explicit_tx = True
                    self.tx_start = characteristics
                sink.ok(status=self.status() | more)
                if release:  # RELEASE: the server closes the connection after its OK
                    self._close_when_idle()
            elif info.kind == KIND_SET and chains_by_default(info.sql):
                raise MySQLError(
                    ErrorCode.NOT_SUPPORTED_YET,
                    "completion_type other than NO_CHAIN is not supported through vtgate; "
                    "write COMMIT AND CHAIN or COMMIT RELEASE instead",
                    "42000",
                )
            elif info.kind == KIND_SET and info.sets_state and self._hold_user_vars(info.sql):
                sink.ok(status=self.status() | more)
            else:
                result = await self._routed(info, sink, more)
                if info.first_word in ("lock", "unlock"):  # LOCK|UNLOCK TABLES, done
                    self.table_locks = info.first_word == "lock"
                if result is not None:
                    self._send(result, sink, more)
        except BaseException:
            self._ended(info, start, True)
            raise
        self._ended(info, start, False)

    # --- the fast path ---------------------------------------------------------------------

    def _plain(self, info: QueryInfo) -> bool:
        """True for the common statement: routed (not gate-owned, not BEGIN/COMMIT/ROLLBACK),
        autocommit outside a transaction, no session state or reserved connection, not
        streamed. ``_fast`` runs it as a chain of callbacks (no coroutine per layer)."""
        return (
            info.owned is None
            and not info.sets_state
            and not self.explicit_tx
            and self.tx is None
            and not self.reserved
            and info.kind not in _TX_KINDS
            and (self.autocommit or not self._opens_transaction(info))
            and not (info.kind == KIND_SELECT and (self.olap or self._dump_read(info.sql)))
        )

    def _fast(
        self, sql: bytes, info: QueryInfo, sink: IResultSink, more: int, ends: bool = False
    ) -> Deferred[None] | ReplyEndsCommand:
        """``_statement`` for a ``_plain`` statement, with the same bookkeeping, routing,
        failover buffering (handed to ``buffer`` when no primary serves or the primary
        refuses it), metrics and results, as callbacks. With ``ends`` (the command's only
        statement) it returns ``REPLY_ENDS_COMMAND`` and ends the reply itself, a failure
        included (``_end_into``); else a Deferred firing when the statement is over."""
        gate = self.gate
        gate.questions += 1
        start = gate.clock.seconds()
        text = sql_text(sql)  # info.sql is sql
        self.command, self.since, self.current = "Query", start, text
        self._more = more
        self._info = info
        try:
            target = self.target
            if target is None:
                target = Target("", "", gate.settings.default_tablet_type)
            if info.is_write and target.tablet_type != PRIMARY:
                raise read_only_target(target)
            if info.is_read:
                target = self._redirected(info, target)
                tablet_type = target.tablet_type
            else:
                tablet_type = PRIMARY if (info.is_write or info.locks) else target.tablet_type
            keyspace, shard = gate.resolve(target, info)
            where = wire_target(keyspace, shard, tablet_type)
            try:
                handle = gate.route(keyspace, shard, tablet_type, info)
            except NoServingTabletError:
                if tablet_type != PRIMARY:
                    raise
                route, run = self._steps(info, keyspace, shard, tablet_type, where, None)
                d: Deferred[Any] = Deferred.fromCoroutine(
                    gate.buffer.run(keyspace, shard, route, run, track=self._track)
                )
            else:
                by = (handle, handle.generation, handle.primary_term)
                d = self._attempt(handle, info, text, keyspace, tablet_type, where)
                # A Deferred of its own: it fires when the statement is over, not when the
                # tablet answers (a refused statement then waits in the buffer); cancelling
                # it cancels what the statement waits for, as with a coroutine's. With
                # ``ends`` the sink is told instead (a client that leaves is handled by
                # ``close``, which kills the statement).
                done: Deferred[None] | IResultSink = (
                    sink if ends else Deferred(lambda _: d.cancel())
                )
                d.addBoth(
                    self._answered,
                    handle,
                    d,
                    by if tablet_type == PRIMARY else None,
                    (info, keyspace, shard, where),
                    (sink, more, start),
                    done,
                )
                return REPLY_ENDS_COMMAND if ends else cast(Deferred[None], done)
        except BaseException:
            self._ended(info, start, True)
            if ends:
                self._end_into(Failure(), sink)  # type: ignore[no-untyped-call]
                return REPLY_ENDS_COMMAND
            return fail()
        d.addBoth(self._fast_done, sink, more, info, start)
        if ends:
            d.addBoth(self._end_into, sink)
            return REPLY_ENDS_COMMAND
        waiting: Deferred[None] = Deferred(lambda _: d.cancel())  # (as ``done`` above)
        d.addBoth(_settle, waiting)
        return waiting

    def _end_into(self, result: object, sink: IResultSink) -> None:
        """The end of a statement run with ``ends``: a failure goes to the sink (counted,
        as ``_query_failed`` does); once the sink is closed (client gone) it is dropped."""
        if not isinstance(result, Failure):
            return
        e = result.value
        if isinstance(e, MySQLError):
            if sink.closed:
                return
            self._failed(e)
        sink.fail(result)

    def _answered(
        self,
        result: Any,
        handle: TabletHandle,
        d: Deferred[Any],
        by: tuple[TabletHandle, int, int] | None,
        retry: tuple[QueryInfo, str, str, str],
        reply: tuple[IResultSink, int, float],
        done: Deferred[None] | IResultSink,
    ) -> Deferred[Any] | None:
        """The tablet answered ``_fast``'s attempt: ``_landed``, then for a primary's
        refusal ``_refused``, then ``_fast_done`` and ``_settle``, as one callback (each
        step's exception goes to the next as a Failure, as along a callback chain). A
        refused statement waits in the buffer: the rest then follows on ``d``."""
        info, keyspace, shard, where = retry
        sink, more, start = reply
        try:
            result = self._landed(result, handle, d)
        except BaseException:
            result = Failure()  # type: ignore[no-untyped-call]
        if isinstance(result, Failure):
            try:
                if by is not None:
                    result = self._refused(result, by, info, keyspace, shard, where)
                else:
                    result = self._read_elsewhere(result, handle, info, keyspace, shard, where)
            except BaseException:
                result = Failure()  # type: ignore[no-untyped-call]
            if isinstance(result, Deferred):
                d.addBoth(self._fast_done, sink, more, info, start)
                if isinstance(done, Deferred):
                    d.addBoth(_settle, done)
                else:
                    d.addBoth(self._end_into, sink)
                return result
        try:
            result = self._fast_done(result, sink, more, info, start)
        except BaseException:
            result = Failure()  # type: ignore[no-untyped-call]
        if isinstance(done, Deferred):
            _settle(result, done)
        else:
            self._end_into(result, sink)
        return None

    def _attempt(
        self,
        handle: TabletHandle,
        info: QueryInfo,
        text: str,
        keyspace: str,
        tablet_type: str,
        where: str,
    ) -> Deferred[QueryResult]:
        """``run``/``_execute``/``_call`` of ``_steps`` without a reservation, as callbacks."""
        self.gate.metrics.count_query(keyspace, tablet_type, info.kind)
        d: Deferred[QueryResult] = handle.client().execute(
            text,
            target=where,
            deadline=self._deadline(),
            options=self._statement_options(),
            settings=self.settings or None,
        )
        self._inflight = d
        handle.inflight += 1
        return d  # ``_answered`` follows

    def _landed(self, result: Any, handle: TabletHandle, d: Deferred[Any]) -> Any:
        handle.inflight -= 1
        if self._inflight is d:
            self._inflight = None
        if isinstance(result, Failure):
            e = result.value
            if isinstance(e, MySQLError):
                error = link_error(handle, e)
                if error is not None:
                    return Failure(error)  # type: ignore[no-untyped-call]
        return result

    def _refused(
        self,
        failure: Failure,
        by: tuple[TabletHandle, int, int],
        info: QueryInfo,
        keyspace: str,
        shard: str,
        where: str,
    ) -> Any:
        # The first attempt's refusal: the buffer waits and retries, as in ``buffer.run``.
        e = failure.value
        if not isinstance(e, MySQLError) or not refused(e):
            return failure
        route, run = self._steps(info, keyspace, shard, PRIMARY, where, None)
        return Deferred.fromCoroutine(
            self.gate.buffer.resume(keyspace, shard, route, run, e, by, track=self._track)
        )

    def _read_elsewhere(
        self,
        failure: Failure,
        refuser: TabletHandle,
        info: QueryInfo,
        keyspace: str,
        shard: str,
        where: str,
    ) -> Failure | Deferred[QueryResult]:
        """A replica or rdonly tablet refused a read without running it (it is shutting
        down, or stopped serving since it was chosen), or its link broke under it (it died,
        or stalled and the gate gave up on it): once more on another serving tablet of that
        type, if there is one; else ``failure``."""
        e = failure.value
        if not isinstance(e, MySQLError) or not (refused(e) or isinstance(e, LinkLostError)):
            return failure
        tablet_type = refuser.tablet_type
        try:
            handle = self.gate.route(keyspace, shard, tablet_type, info, exclude=refuser)
        except NoServingTabletError:
            return failure
        d = self._attempt(handle, info, sql_text(info.sql), keyspace, tablet_type, where)
        return d.addBoth(self._landed, handle, d)

    def _fast_done(
        self, result: Any, sink: IResultSink, more: int, info: QueryInfo, start: float
    ) -> Failure | None:
        failed = isinstance(result, Failure)
        try:
            if not failed:
                self._send(result, sink, more)
        except BaseException:
            failed = True
            raise
        finally:
            self._ended(info, start, failed)
        return result if isinstance(result, Failure) else None

    def _ended(self, info: QueryInfo, start: float, failed: bool) -> None:
        """A statement is over: its latency metric, its digest's statistics, the session's
        command back to Sleep."""
        gate = self.gate
        now = gate.clock.seconds()
        gate.metrics.observe(info.kind, now - start)
        digest, self._digest = self._digest, None
        if gate.digests:
            stats = gate.query_stats
            sent, affected = self._rows
            stats.record(
                self.info.user,
                self._database(),
                digest if digest is not None else stats.digest(info.sql),
                now - start,
                now,
                sent,
                affected,
                failed,
            )
        self._rows = (0, 0)
        self.command, self.since, self.current = "Sleep", now, None
        if self.reads_only and self.tx is not None and not self.tx.handle.serving:
            self.release_reads()  # its tablet stopped serving while this statement ran

    def _noted(self, result: QueryResult, result_set: bool) -> None:
        """Keep what this session's ``LAST_INSERT_ID()`` and ``ROW_COUNT()`` answer next
        (``rewrite``): the last id generated, and -1 after a result set or else the
        affected rows; and its warnings (``diagnostics``)."""
        if result.insert_id:
            self.last_insert_id = result.insert_id
        self.row_count = -1 if result_set else result.affected_rows
        diagnostics = self.diagnostics
        if result.warnings or diagnostics.warning_count:
            info = self._info
            keep = info is not None and (self._reads_counts or keeps(info))
            diagnostics.noted(result.warnings, result.notes, keep)

    def _send(self, result: QueryResult, sink: IResultSink, more: int) -> None:
        self._noted(result, bool(result.fields))
        status = self.status() | more
        if result.more:  # a CALL's result sets
            self._rows = (len(result.rows) + sum(len(r.rows) for r in result.more), 0)
            sets = [result, *result.more]
            for r in sets[:-1]:
                sink.result_set(self.gate.columns(r.fields), r.rows, status | MORE, r.warnings)
            last = sets[-1]
            sink.result_set(self.gate.columns(last.fields), last.rows, status, last.warnings)
        elif result.fields:
            self._rows = (len(result.rows), 0)
            sink.result_set(self.gate.columns(result.fields), result.rows, status, result.warnings)
        else:
            self._rows = (0, result.affected_rows)
            sink.ok(
                result.affected_rows,
                result.insert_id,
                status,
                result.warnings,
                result.info.encode("utf-8", "surrogateescape"),
            )

    # --- routing ----------------------------------------------------------------------------

    def _current_target(self) -> Target:
        if self.target is not None:
            return self.target
        return Target("", "", self.gate.settings.default_tablet_type)

    def _opens_transaction(self, info: QueryInfo) -> bool:
        """With autocommit off and no transaction open, whether ``info`` may open the
        implicit one: ``_starts_transaction``, or ``_read_opens``."""
        return _starts_transaction(info) or self._read_opens(info)

    def _read_opens(self, info: QueryInfo) -> bool:
        """A read of tables at a primary target with
        ``session.autocommit_off_reads_in_transaction`` (``_routed`` decides for reads the
        routing policy redirects)."""
        return (
            self.gate.settings.autocommit_off_reads_in_transaction
            and self._current_target().tablet_type == PRIMARY
            and _reads_tables(info)
        )

    def _redirected(self, info: QueryInfo, target: Target) -> Target:
        try:
            where = self.gate.policy.redirect(info)
        except Exception:
            log.failure("routing policy redirect failed; not redirecting")
            return target
        if not where:
            return target
        new = parse_target(where, target.tablet_type)
        keyspace = new.keyspace or target.keyspace
        shard = new.shard or (target.shard if keyspace == target.keyspace else "")
        return Target(keyspace, shard, new.tablet_type, True)

    async def _routed(
        self,
        info: QueryInfo,
        sink: IResultSink | None = None,
        more: int = 0,
        metadata: bool = False,
    ) -> QueryResult | None:
        """Route and run ``info``; with ``sink`` (olap workload, SELECT) the result is
        streamed into it and None returned. ``metadata``: the gate's own field-only query,
        which never opens the implicit transaction."""
        target = self._current_target()
        if info.is_write and target.tablet_type != PRIMARY:
            raise read_only_target(target)
        redirected: Target | None = None
        if self.in_transaction and _commits(info):
            await self._commit_open()  # as MySQL does: COMMIT first, none open after
        if not self.autocommit and not self.in_transaction:
            # Under LOCK TABLES no transaction opens: its START TRANSACTION would release
            # the locks, so a write is refused and a read runs under them.
            locked = self.table_locks and bool(self.reserved)
            if _starts_transaction(info):
                if locked:
                    raise table_locks_autocommit_off()
                self.explicit_tx = True  # implicit transaction: ends at COMMIT/ROLLBACK
                self.reads_only = False
            elif not metadata and not locked and self._read_opens(info):
                redirected = self._redirected(info, target)
                self.explicit_tx = self.reads_only = redirected.tablet_type == PRIMARY
        if self.in_transaction:
            pin = self.tx
            current = (pin.keyspace, pin.shard) if pin is not None else None
            keyspace, shard = self.gate.resolve(target, info, current)
            return await self._in_transaction(info, keyspace, shard, self._streams(info, sink))
        if info.is_read:
            target = redirected or self._redirected(info, target)
            tablet_type = target.tablet_type
        else:
            tablet_type = PRIMARY if (info.is_write or info.locks) else target.tablet_type
        keyspace, shard = self.gate.resolve(target, info)
        where = wire_target(keyspace, shard, tablet_type)
        stream = self._streams(info, sink)
        route, run = self._steps(info, keyspace, shard, tablet_type, where, stream)
        if tablet_type != PRIMARY:
            handle = route()
            try:
                return await run(handle)
            except MySQLError as e:
                again = refused(e) or (isinstance(e, LinkLostError) and stream is None)
                if not again or info.sets_state or self.reserved:
                    raise
                # Refused without running, or the link broke under a read whose rows did
                # not start (``_read_elsewhere``): once more elsewhere.
                try:
                    other = self.gate.route(keyspace, shard, tablet_type, info, exclude=handle)
                except NoServingTabletError:
                    raise e from None
                return await run(other)
        # Outside a transaction a primary-bound statement waits out a failover (buffer).
        return await self.gate.buffer.run(
            keyspace, shard, route, run, retry_refused=stream is None, track=self._track
        )

    def _steps(
        self,
        info: QueryInfo,
        keyspace: str,
        shard: str,
        tablet_type: str,
        where: str,
        stream: IResultSink | None,
    ) -> tuple[Callable[[], TabletHandle], Callable[[TabletHandle], Awaitable[QueryResult | None]]]:
        """Routing and running one statement outside a transaction, for ``buffer.run``."""

        def route() -> TabletHandle:
            return self.gate.route(keyspace, shard, tablet_type, info, prefer=list(self.reserved))

        async def run(handle: TabletHandle) -> QueryResult | None:
            self.gate.metrics.count_query(keyspace, tablet_type, info.kind)
            if self.reserved or (info.sets_state and not self._setting(info)):
                rid = await self._reservation(handle, where)
                result = await self._execute(handle, info.sql, where, reserved_id=rid, sink=stream)
                await self._held_done(handle, info, where, reserved_id=rid)
                return result
            if info.sets_state:
                # A setting: prepare a pooled connection with it (and the earlier ones),
                # which checks it; from now on it travels with the session's statements.
                text = sql_text(info.sql)
                checked = await self._execute(
                    handle,
                    b"DO 0",
                    where,
                    settings=[*self.settings, text],
                    option="setting_warnings",  # (its own warnings, if it has any)
                )
                self.settings.append(text)
                if checked is None:
                    return QueryResult([], [])
                return QueryResult([], [], warnings=checked.warnings, notes=checked.notes)
            return await self._execute(
                handle, info.sql, where, sink=stream, settings=self.settings or None
            )

        return route, run

    def _track(self, d: Deferred[Any]) -> None:
        self._inflight = d  # KILL QUERY and disconnecting end a buffered wait too

    def _streams(self, info: QueryInfo, sink: IResultSink | None) -> IResultSink | None:
        if sink is None or info.kind != KIND_SELECT:
            return None
        return sink if self.olap or self._dump_read(info.sql) else None

    def _dump_read(self, sql: bytes) -> bool:
        """A SELECT marked as a dump tool's table read (``session.olap_markers``), such as
        ``SELECT /*!40001 SQL_NO_CACHE */ * FROM `t```: streamed as in OLAP."""
        for marker in self.gate.settings.olap_markers:
            at = sql.find(marker, 0, 160)  # (most SELECTs: one bounded search)
            if at >= 0:
                return sql[:at].strip().upper() == b"SELECT"
        return False

    async def _in_transaction(
        self, info: QueryInfo, keyspace: str, shard: str, sink: IResultSink | None
    ) -> QueryResult | None:
        where = wire_target(keyspace, shard, PRIMARY)
        pin = self.tx
        earlier = pin is not None  # opened by an earlier statement
        if info.kind != KIND_SELECT or info.locks or info.sets_state:
            self.reads_only = False
        if pin is None:
            # Nothing of the transaction ran yet: opening it waits out a failover (or a
            # primary's tablet restarting) in the buffer, as a statement outside one does.
            try:
                pin = await self.gate.buffer.run(
                    keyspace,
                    shard,
                    lambda: self.gate.route(keyspace, shard, PRIMARY, info),
                    lambda handle: self._begin(handle, keyspace, shard, where),
                    track=self._track,
                )
            except MySQLError as e:
                if not self.reads_only:
                    raise
                self.explicit_tx = self.reads_only = False  # nothing opened
                if e.code != ErrorCode.TOO_MANY_USER_CONNECTIONS:
                    raise
                raise MySQLError(
                    e.code,
                    f"{e.message} (with autocommit off this read opens a transaction, as in "
                    "MySQL; the gate's session.autocommit_off_reads_in_transaction = false "
                    "runs such reads on pooled connections instead)",
                    e.sqlstate,
                ) from None
        elif pin.handle.stopped or pin.handle.generation != pin.generation:
            # (A tablet that left the topo but whose link is up lets the transaction end.)
            if self._reads_ended():
                return await self._routed(info, sink)
            self._unpin()
            self.explicit_tx = False
            self.reserved.pop(pin.handle.alias, None)
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"the transaction was rolled back: the link to tablet {pin.handle.alias} was "
                "lost; run the transaction again",
            )
        elif (pin.keyspace, pin.shard) != (keyspace, shard):
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"a transaction is open on {pin.keyspace}/{pin.shard}; COMMIT or ROLLBACK "
                f"before using {keyspace}/{shard} (a transaction spans one shard)",
            )
        self.gate.metrics.count_query(keyspace, PRIMARY, info.kind)
        handle = pin.handle
        if info.sets_state and handle.alias not in self.reserved:
            reply = await self._call(
                handle,
                handle.client().reserve(
                    transaction_id=pin.transaction_id, target=where, deadline=self._deadline()
                ),
            )
            self._hold(handle, reply.reserved_id)
        try:
            result = await self._execute(
                handle, info.sql, where, transaction_id=pin.transaction_id, sink=sink
            )
        except MySQLError as e:
            # An earlier read opened it and its tablet ended it (transaction.timeout while
            # the client sat idle, as autocommit-off clients that only read do; a demoted
            # primary's connections killed): this read starts a new one. (One opened by
            # this statement is not retried.)
            if earlier and _gone(e) and self._reads_ended():
                return await self._routed(info, sink)
            if e.code == ErrorCode.LOCK_DEADLOCK:
                await self._ended_in_mysqld()
            raise
        await self._held_done(handle, info, where, transaction_id=pin.transaction_id)
        if result is not None and not result.status_flags & IN_TRANS and self.tx is pin:
            # mysqld says the transaction is over (a procedure's COMMIT, or anything else
            # that ended it there): so it is for the session, as in MySQL. Its connection
            # goes back (autocommit on, it would commit what follows one at a time).
            await self._ended_in_mysqld()
        return result

    async def _ended_in_mysqld(self) -> None:
        """mysqld ended the transaction itself (a statement of it lost a deadlock, 1213,
        and mysqld rolled it back whole; or a statement ended it), and its connection
        (autocommit on, on the tablet) would commit what follows one statement at a time.
        End it here too, as MySQL leaves the session: with autocommit off the next statement
        opens a new one, else none is open."""
        with contextlib.suppress(MySQLError):  # (if it cannot, the tablet ends it itself)
            await self._finish(False)

    def release_reads(self) -> None:
        """Roll back the open transaction if an autocommit-off read opened it, it has only
        read and no command of the session runs (``Gate._release_reads``: its tablet stops
        serving). Nothing of it is lost; the session's next read opens a new one."""
        if self.command == "Sleep":
            self._drop_reads()

    def _drop_reads(self) -> None:
        """Roll back the open transaction if an autocommit-off read opened it and it has
        only read (``_reads_ended``), without waiting for the tablet's answer."""
        pin = self.tx
        if pin is None or not self._reads_ended():
            return
        try:
            d = pin.handle.client().rollback(pin.transaction_id, deadline=self._deadline())
        except MySQLError:
            return  # its link is down: the tablet ends it
        d.addErrback(lambda _: None)  # ended there already, or the link broke: all the same

    def _reads_ended(self) -> bool:
        """If the open transaction only read (``reads_only``) and holds no session state,
        forget it and say True (its tablet ended it, or the caller rolls it back): nothing
        of it is lost."""
        if not self.reads_only or self.reserved:
            return False
        self._unpin()
        self.explicit_tx = self.reads_only = False
        return True

    async def _begin(self, handle: TabletHandle, keyspace: str, shard: str, where: str) -> Pin:
        client = handle.client()
        options = self.tablet_options
        if self.tx_start:  # START TRANSACTION READ ONLY and the like
            options = {**(options or {}), "start": self.tx_start}
        held = self._live_reservation(handle)
        if held is not None:
            tid = await self._call(
                handle,
                client.begin(
                    target=where,
                    reserved_id=held.reserved_id,
                    deadline=self._deadline(),
                    options=options,
                ),
            )
        elif self.reserved:
            reply = await self._call(
                handle,
                client.reserve(
                    list(self.settings),
                    begin=True,
                    target=where,
                    deadline=self._deadline(),
                    options=options,
                ),
            )
            self._hold(handle, reply.reserved_id)
            tid = reply.transaction_id
        else:
            tid = await self._call(
                handle,
                client.begin(
                    target=where,
                    deadline=self._deadline(),
                    options=options,
                    settings=self.settings or None,
                ),
            )
        self.tx = Pin(handle, keyspace, shard, tid, handle.generation, self.tx_start)
        self.tx_start = ""  # (kept until the transaction opened: a refused begin is retried)
        handle.pinned += 1
        return self.tx

    async def _reservation(self, handle: TabletHandle, where: str) -> int:
        held = self._live_reservation(handle)
        if held is not None:
            return held.reserved_id
        reply = await self._call(
            handle,
            handle.client().reserve(
                list(self.settings),
                target=where,
                deadline=self._deadline(),
                options=self.tablet_options,
            ),
        )
        rid: int = reply.reserved_id
        self._hold(handle, rid)
        return rid

    def _hold(self, handle: TabletHandle, reserved_id: int) -> None:
        self.reserved[handle.alias] = Held(handle, reserved_id, handle.generation)

    def _live_reservation(self, handle: TabletHandle) -> Held | None:
        held = self.reserved.get(handle.alias)
        if held is None:
            return None
        if held.handle is handle and held.alive:
            return held
        # The tablet dropped it (restart, reconnect): its SETs are replayed on a new one;
        # temporary tables and locks are gone, as after a reconnect to mysqld.
        log.info(
            "session {id}: reserved connection on {alias} was lost; reserving anew",
            id=self.connection_id,
            alias=handle.alias,
        )
        del self.reserved[handle.alias]
        return None

    def _hold_user_vars(self, sql: bytes) -> bool:
        """``SET @a = <literal>, ...`` while the session holds no tablet connection (no
        reservation, no open tablet transaction): keep the values and send them as one of
        the session's settings (``uservars``), within the bounds; False: it runs on a
        reserved connection, as any other state does."""
        if self.reserved or self.tx is not None:  # (an open transaction's connection:
            return False  # it takes the SET itself, as any state)
        values = set_literals(sql)
        if values is None or not fits(self.user_vars, values):
            return False
        if not self.user_vars and len(self.settings) >= MAX_SETTINGS:
            return False
        old = set_statement(self.user_vars) if self.user_vars else None
        self.user_vars.update(values)
        new = set_statement(self.user_vars)
        if old is None:
            self.settings.append(new)
        else:
            self.settings = [new if text == old else text for text in self.settings]
        return True

    def _setting(self, info: QueryInfo) -> bool:
        """True when ``info`` can join this session's settings instead of reserving a
        connection (``replayable_setting``, and room left under ``MAX_SETTINGS``)."""
        return len(self.settings) < MAX_SETTINGS and replayable_setting(info)

    async def _held_done(
        self,
        handle: TabletHandle,
        info: QueryInfo,
        where: str,
        *,
        transaction_id: int = 0,
        reserved_id: int = 0,
    ) -> None:
        """After ``info`` ran on a transaction's or reserved connection: remember a SET for
        replay, and after ``LAST_INSERT_ID(expr)`` (``SELECT``, ``DO``, ``SET @v = ...``
        report no id) ask that connection for the value it now holds, which this
        session's ``LAST_INSERT_ID()`` answers from then on."""
        self._remember(info)
        if not info.sets_state or not sets_last_insert_id(info.sql):
            return
        result = await self._execute(
            handle,
            b"SELECT LAST_INSERT_ID()",
            where,
            transaction_id=transaction_id,
            reserved_id=reserved_id,
        )
        if result is not None and result.rows:
            [value] = decode_text_row(result.rows[0], 1)
            if value is not None and value.isdigit():
                self.last_insert_id = int(value)

    def _remember(self, info: QueryInfo) -> None:
        # Plain SETs are replayed on the next tablet connection the session reserves.
        if info.kind == KIND_SET and info.sets_state and len(self.settings) < MAX_SETTINGS:
            self.settings.append(sql_text(info.sql))

    def _deadline(self, stream: bool = False) -> float:
        """When the tablet call of the running statement is given up: the gate's
        ``session.query_timeout`` (``session.stream_timeout`` for a streamed one), or a
        second after the statement's own timeout (``_timeout_ms``; the tablet kills it on
        mysqld then, and says so) if sooner."""
        settings = self.gate.settings
        timeout = settings.stream_timeout if stream else settings.query_timeout
        if self._timeout_ms:
            timeout = min(timeout, self._timeout_ms / 1000 + 1.0)
        return self.gate.clock.seconds() + timeout

    def _statement_options(self) -> dict[str, Scalar] | None:
        """The tablet options of the running statement: the session's, plus its timeout
        (``query_timeout_ms``) when it has one."""
        if not self._timeout_ms:
            return self.tablet_options
        return {**(self.tablet_options or {}), "query_timeout_ms": self._timeout_ms}

    async def _execute(
        self,
        handle: TabletHandle,
        sql: bytes,
        where: str,
        *,
        transaction_id: int = 0,
        reserved_id: int = 0,
        sink: IResultSink | None = None,
        settings: list[str] | None = None,
        option: str = "",
    ) -> QueryResult | None:
        """One statement on ``handle``: pooled (prepared by ``settings``), or on a transaction
        or reserved connection; streamed to ``sink`` when given. ``option``: a tablet option
        set to True for it, besides the session's."""
        client = handle.client()
        if sink is not None:
            await self._stream(handle, sql, where, transaction_id, reserved_id, sink, settings)
            return None
        options = self._statement_options()
        if option:
            options = {**(options or {}), option: True}
        d = client.execute(
            sql_text(sql),
            target=where,
            transaction_id=transaction_id,
            reserved_id=reserved_id,
            deadline=self._deadline(),
            options=options,
            settings=settings,
            infile=self._file(),
        )
        result: QueryResult = await self._call(handle, d)
        return result

    def _file(self) -> IClientFile | None:
        """The running LOAD DATA LOCAL's file, for a tablet: refused once some of it went to
        another (a retry, after a tablet failed while it read the file)."""
        file = self._infile
        if file is not None and file.consumed:
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                "LOAD DATA LOCAL INFILE failed after part of its file was sent to a tablet, so "
                "it cannot be retried on another; run it again",
            )
        return file

    async def _stream(
        self,
        handle: TabletHandle,
        sql: bytes,
        where: str,
        transaction_id: int,
        reserved_id: int,
        sink: IResultSink,
        settings: list[str] | None = None,
    ) -> None:
        relay = Relay(self.gate, sink)
        sink.register_producer(relay)
        try:
            d = handle.client().stream_execute(
                sql_text(sql),
                relay.on_chunk,
                target=where,
                transaction_id=transaction_id,
                reserved_id=reserved_id,
                deadline=self._deadline(stream=True),
                options=self._statement_options(),
                settings=settings,
            )
            result: QueryResult = await self._call(handle, d)
        finally:
            if not sink.closed:
                sink.unregister_producer()
        status = self.status() | self._more
        self._noted(result, relay.started)
        if relay.started:
            sink.done(status, result.warnings)
        else:
            sink.ok(result.affected_rows, result.insert_id, status, result.warnings)

    async def _call(self, handle: TabletHandle, d: Deferred[Any]) -> Any:
        self._inflight = d
        handle.inflight += 1
        try:
            return await d
        except MySQLError as e:
            error = link_error(handle, e)
            if error is not None:
                raise error from None
            raise
        finally:
            handle.inflight -= 1
            if self._inflight is d:
                self._inflight = None

    # --- transactions -----------------------------------------------------------------------

    def _unpin(self) -> Pin | None:
        """The session's transaction is over (or about to be): forget its pin."""
        pin, self.tx = self.tx, None
        if pin is not None:
            pin.handle.pinned -= 1
        return pin

    async def _commit_open(self) -> None:
        if self.in_transaction:
            await self._finish(True)

    async def _finish(self, commit: bool) -> None:
        pin = self._unpin()
        reads_only = self.reads_only and not self.reserved
        self.explicit_tx = self.reads_only = False
        self.tx_start = ""  # a START TRANSACTION ... that opened nothing ends with it
        if pin is None:
            return
        handle = pin.handle
        client = handle.client()
        op = client.commit if commit else client.rollback
        try:
            kept = await self._call(handle, op(pin.transaction_id, deadline=self._deadline()))
        except MySQLError as e:
            # The tablet ends the transaction (and its connection) when COMMIT fails.
            self.reserved.pop(handle.alias, None)
            if reads_only and _gone(e):
                return  # it only read: ended on the tablet, nothing was lost
            raise
        if kept:
            self._hold(handle, kept)
        else:
            self.reserved.pop(handle.alias, None)

    # --- gate-owned statements --------------------------------------------------------------

    async def _owned(self, info: QueryInfo, sink: IResultSink, more: int) -> None:
        gate = self.gate
        owned = info.owned
        result: answers.Result | None = None
        if owned == OWNED_VERSION_COMMENT:
            column = info.arg or "@@version_comment"
            result = answers.single(column, gate.settings.version_comment)
        elif owned == OWNED_VERSION:
            result = answers.single(info.arg or "VERSION()", gate.settings.server_version)
        elif owned == OWNED_CONNECTION_ID:
            column = info.arg or "CONNECTION_ID()"
            result = answers.single(column, self.connection_id, integer=True)
        elif owned == OWNED_DATABASE:
            db = self.target.database() if self.target is not None else None
            result = answers.single(info.arg or "DATABASE()", db)
        elif owned == OWNED_PROCESSLIST:
            result = answers.processlist(self._processlist())
        elif owned == OWNED_TABLETS:
            wanted = _like(info.arg)
            result = answers.tablets(h for h in gate.discovery.all() if wanted(h.hostname))
        elif owned == OWNED_SHARDS:
            wanted = _like(info.arg)
            pairs = ((k, s) for k in gate.keyspaces() for s in gate.shards(k))
            result = answers.shards((k, s) for k, s in pairs if wanted(f"{k}/{s}"))
        elif owned == OWNED_REPLICATION_STATUS:
            result = await self._replication_status(info.arg)
        elif owned == OWNED_TARGET:
            result = answers.single("Target", self.target.database() if self.target else "")
        elif owned in (OWNED_KEYSPACES, OWNED_DATABASES):
            wanted = _like(info.arg)
            header = "Database"
            if owned == OWNED_DATABASES and info.arg:
                header = f"Database ({info.arg[5:]})"  # as mysqld names it
            result = answers.keyspaces((k for k in gate.keyspaces() if wanted(k)), header)
        elif owned in (OWNED_KILL, OWNED_KILL_QUERY):
            self._kill(int(info.arg), owned == OWNED_KILL_QUERY)
        elif owned == OWNED_USE:
            self._use(info.arg)
        elif owned == OWNED_AUTOCOMMIT:
            on = info.arg == "1"
            if on and not self.autocommit:
                await self._commit_open()
            self.autocommit = on
        elif owned == OWNED_SET_NAMES:
            # The tablets' connections are utf8mb4 already, unless an earlier SET NAMES (or
            # CHARACTER SET, character_set_*) of the session is in force on them: a setting,
            # or a reserved connection's. Then this one must reach them too.
            if self.reserved or any(_CHARSET_SETTING.search(t) for t in self.settings):
                await self._routed(replace(info, owned=None, sets_state=True))
        elif owned == OWNED_WORKLOAD:
            self.olap = info.arg == "olap"
        elif owned == OWNED_QUERY_TIMEOUT:
            self.query_timeout_ms = int(info.arg)
        elif owned == OWNED_LOAD_LOCAL:
            await self._load_local(info, sink, more)
            return
        elif owned == OWNED_SERVER_ADMIN:
            raise MySQLError(
                ErrorCode.NOT_SUPPORTED_YET,
                f"{info.arg} is not supported through the gate: the tablets and vtorc manage "
                "replication, binary logs and mysqld itself (vtwist reparent, vtwist down); "
                "an operator runs it on mysqld directly",
                "42000",
            )
        elif owned == OWNED_DATABASE_DDL:
            note = self._database_ddl(info)
            self.diagnostics.noted(1, [note], False)
            sink.ok(status=self.status() | more, warnings=1)
            return
        elif owned == OWNED_SHOW_WARNINGS:
            which, offset, limit = info.arg.split(":")
            shown = int(limit) if limit else None
            result = self.diagnostics.show(which == "errors", int(offset), shown)
        elif owned == OWNED_COUNT_WARNINGS:
            result = self.diagnostics.count(info.arg == "errors")
        if owned not in (OWNED_SHOW_WARNINGS, OWNED_COUNT_WARNINGS):
            self.diagnostics.noted(0, (), keeps(info))
        if result is None:
            sink.ok(status=self.status() | more)
            return
        columns, rows = result
        sink.result_set(columns, rows, self.status() | more)

    def _database_ddl(self, info: QueryInfo) -> Note:
        """CREATE or DROP DATABASE (SCHEMA): a database is a keyspace, which the topo makes,
        so the gate answers (as Vitess refuses them) and nothing reaches a tablet: creating
        a keyspace that exists with IF NOT EXISTS is a note (a dump's ``CREATE DATABASE /*!32312
        IF NOT EXISTS*/ ks`` restores), dropping one is refused (it would drop its tables on
        every tablet), and a name that is no keyspace is created nowhere and dropped nowhere.
        The note of a statement that did nothing, or MySQLError."""
        verb, guarded, name = database_ddl(info.sql)
        exists = name in self.gate.keyspaces()
        if verb == "CREATE":
            if not exists:
                raise MySQLError(
                    ErrorCode.NOT_SUPPORTED_YET,
                    f"CREATE DATABASE is not supported through the gate: a database is a "
                    f"keyspace, and '{name}' is not one; add keyspaces in the topo (vtwist "
                    "topo, or the local cluster's config)",
                    "42000",
                )
            message = f"Can't create database '{name}'; database exists"
            if not guarded:
                raise MySQLError(ErrorCode.DB_CREATE_EXISTS, message)
            return Note("Note", ErrorCode.DB_CREATE_EXISTS, message)
        if exists:
            raise MySQLError(
                ErrorCode.NOT_SUPPORTED_YET,
                f"DROP DATABASE is not supported through the gate: '{name}' is a keyspace, "
                "and dropping it would drop its tables on every tablet; drop the tables "
                "themselves, or remove the keyspace from the topo",
                "42000",
            )
        message = f"Can't drop database '{name}'; database doesn't exist"
        if not guarded:
            raise MySQLError(ErrorCode.DB_DROP_EXISTS, message)
        return Note("Note", ErrorCode.DB_DROP_EXISTS, message)

    async def _load_local(self, info: QueryInfo, sink: IResultSink, more: int) -> None:
        """LOAD DATA LOCAL INFILE: ask the client for the file and run the statement as a
        write with it (``_execute`` hands the reader to the tablet, which pulls the file in
        pieces when mysqld asks for it). The client sends the whole file before it reads
        the reply: what the tablet did not take (mysqld refused the statement first) is
        read and dropped before the reply."""
        limit = self.gate.settings.max_local_infile_size
        if not limit:
            raise MySQLError(
                ErrorCode.NOT_ALLOWED_COMMAND,
                "LOAD DATA LOCAL INFILE is turned off on this gate "
                "(session.max_local_infile_size = 0)",
            )
        if not self.info.capabilities & Capability.LOCAL_FILES:
            raise MySQLError(
                ErrorCode.NOT_ALLOWED_COMMAND,
                "LOAD DATA LOCAL INFILE needs a client that allows local files "
                "(e.g. mariadb --local-infile=1, PyMySQL local_infile=True)",
            )
        if sink.binary:
            raise MySQLError(
                ErrorCode.UNSUPPORTED_PS,
                "LOAD DATA LOCAL INFILE cannot be a prepared statement; send it as a query",
            )
        self._infile = file = sink.local_infile(info.arg, limit)
        try:
            result = await self._routed(info)
        except BaseException:
            await self._file_read(file, limit)  # its failure first: it is the cause
            raise
        finally:
            self._infile = None
        await self._file_read(file, limit)
        if result is not None:
            self._send(result, sink, more)

    @staticmethod
    async def _file_read(file: IClientFile, limit: int) -> None:
        """Wait for the end of the client's file (dropping what the tablet did not take);
        raise its failure, if it failed (too long, or the client stalled or went away)."""
        try:
            await file.finish()
            await file.read(1)  # b"" now, or the file's error
        except MySQLError as e:
            if e.code != ErrorCode.NET_PACKET_TOO_LARGE:
                raise
            raise MySQLError(
                e.code,
                f"{e.message} (session.max_local_infile_size is {limit}): split the file, or "
                "raise that gate option",
            ) from None

    async def _replication_status(self, pattern: str) -> answers.Result:
        """SHOW VITESS_REPLICATION_STATUS: every replica and rdonly tablet whose keyspace
        matches ``pattern`` (LIKE), asked for its replication status at once (the manage
        action ``status``); one that cannot answer shows why as its LastError."""
        wanted = _like("like:" + pattern)
        handles = [
            h
            for h in self.gate.discovery.all()
            if h.tablet_type in (REPLICA, RDONLY) and wanted(h.keyspace)
        ]
        deadline = self._deadline()

        async def ask(h: TabletHandle) -> tuple[TabletHandle, dict[str, Any] | None, str]:
            try:
                report: dict[str, Any] = await h.client().manage("status", deadline=deadline)
            except MySQLError as e:
                return h, None, e.message
            return h, report, ""

        reports = [await d for d in [Deferred.fromCoroutine(ask(h)) for h in handles]]
        return answers.replication_status(reports)

    def _processlist(self) -> list[list[object]]:
        now = self.gate.clock.seconds()
        rows: list[list[object]] = []
        for conn_id in sorted(self.gate.sessions):
            s = self.gate.sessions[conn_id]
            current = s.current[:MAX_INFO_CHARS] if s.current is not None else None
            rows.append(
                [
                    conn_id,
                    s.info.user,
                    f"{s.info.host}:{s.info.port}" if s.info.port else s.info.host,
                    s.target.database() if s.target is not None else None,
                    s.command,
                    int(now - s.since),
                    "executing" if s.command == "Query" else "",
                    current,
                ]
            )
        return rows

    def _kill(self, conn_id: int, query_only: bool) -> None:
        other = self.gate.sessions.get(conn_id)
        if other is None:
            raise MySQLError(ErrorCode.NO_SUCH_THREAD, f"Unknown thread id: {conn_id}")
        if other.info.user != self.info.user:
            raise MySQLError(
                ER_KILL_DENIED,
                f"You are not owner of thread {conn_id}; only its user ({other.info.user}) "
                "can kill it",
            )
        other.kill_query()
        if not query_only and other is not self:
            proto = self._client_connection(conn_id)
            if proto is not None:
                proto.close()

    def _client_connection(self, conn_id: int) -> MySQLServerProtocol | None:
        """The MySQL server's protocol of client connection ``conn_id``; None if gone."""
        server = self.gate.server
        return server.connections.get(conn_id) if server is not None else None

    def _close_when_idle(self) -> None:
        """Close this session's client connection once its command's reply is sent."""
        proto = self._client_connection(self.connection_id)
        if proto is not None:
            proto.close_when_idle(lambda: True)

    def kill_query(self) -> bool:
        """Stop the session's statement in flight (its tablet KILLs the query); true if any."""
        d = self._inflight
        if d is None or d.called:
            return False
        d.cancel()
        return True

    def _use(self, name: str) -> None:
        target = parse_target(name, self.gate.settings.default_tablet_type)
        check_keyspace(target, set(self.gate.keyspaces()))
        self.target = target
        if target.tablet_type != PRIMARY:
            # (Autocommit off, an earlier read opened a transaction on the primary: reads
            # now go to the new target's tablets, as they would have without it.)
            self._drop_reads()

    # --- other commands ---------------------------------------------------------------------

    def init_db(self, schema: str) -> Deferred[None]:
        """COM_INIT_DB and the login database: the session's target (waiting for the
        first topo read, at most ``topo_wait`` s, when the gate has just started)."""
        if self.gate.topo_ready:
            try:
                self._use(schema)
            except MySQLError as e:
                self.gate.metrics.errors.labels(code=str(e.code)).inc()
                raise
            return succeed(None)
        return Deferred.fromCoroutine(self._init_db_later(schema))

    async def _init_db_later(self, schema: str) -> None:
        await self.gate.when_topo_ready(self.gate.settings.topo_wait)
        try:
            self._use(schema)
        except MySQLError as e:
            self.gate.metrics.errors.labels(code=str(e.code)).inc()
            raise

    def field_list(self, table: str, wildcard: str) -> Deferred[Sequence[ColumnDefinition41]]:
        """COM_FIELD_LIST: the columns of a field-only query on ``table`` (empty on error)."""
        quoted = "`" + table.replace("`", "``") + "`"
        return Deferred.fromCoroutine(self._fields(f"SELECT * FROM {quoted} LIMIT 0".encode()))

    async def _fields(self, sql: bytes) -> list[ColumnDefinition41]:
        try:
            result = await self._routed(classify(sql), metadata=True)
        except MySQLError:
            return []
        return [self.gate.column(f) for f in result.fields] if result is not None else []

    def prepare(self, sql: bytes) -> Deferred[PrepareInfo]:
        """COM_STMT_PREPARE: parameter count from the SQL; columns from a field query."""
        return Deferred.fromCoroutine(self._prepare(sql))

    async def _prepare(self, sql: bytes) -> PrepareInfo:
        count = count_placeholders(sql)
        info = classify(sql)
        columns: list[ColumnDefinition41] = []
        if (
            self.gate.settings.prepare_fields
            and info.kind == KIND_SELECT
            and info.owned is None
            and not info.locks
            and not info.sets_state
            and not self.in_transaction
        ):
            body = interpolate(sql, [None] * count).rstrip().rstrip(b";")
            columns = await self._fields(b"SELECT * FROM (" + body + b") AS vt_fields LIMIT 0")
        digest = self.gate.query_stats.digest(sql) if self.gate.digests else b""
        return PrepareInfo(count, columns=columns, state=Prepared(info, reusable(info), digest))

    def execute(
        self, statement: Statement, params: Sequence[object], sink: IResultSink, cursor: bool
    ) -> Deferred[None] | ReplyEndsCommand:
        """COM_STMT_EXECUTE: the statement with its values bound, routed as a text query."""
        sql = interpolate(statement.sql, params)
        info: QueryInfo | None = None
        prepared = statement.prepared.state
        if isinstance(prepared, Prepared) and prepared.digest:
            self._digest = prepared.digest
        if isinstance(prepared, Prepared) and prepared.reusable:
            template = prepared.info
            info = QueryInfo(
                sql, template.kind, template.first_word, template.is_write, template.locks
            )
        return self._run_single(sql, info, sink)

    def close_statement(self, statement: Statement) -> Deferred[None]:
        """Nothing to do: statements are the gate's own."""
        return succeed(None)

    def reset_connection(self) -> Deferred[None]:
        """Roll back, release reserved connections, forget settings; keep the target."""
        return Deferred.fromCoroutine(self._reset())

    async def _reset(self) -> None:
        pin = self._unpin()
        reserved, self.reserved = self.reserved, {}
        self.explicit_tx = self.reads_only = self.table_locks = False
        self.tx_start = ""
        self.autocommit = True
        self.settings = []
        self.user_vars = {}
        self.last_insert_id = 0  # as mysqld after COM_RESET_CONNECTION
        self.row_count = -1
        self.diagnostics = Diagnostics()
        waits: list[Deferred[Any]] = []
        for held in reserved.values():
            if not held.alive:
                continue
            if pin is not None and pin.handle is held.handle:
                pin = None  # releasing the reservation rolls its transaction back
            waits.append(self._quietly(held.handle, "release", reserved_id=held.reserved_id))
        if pin is not None and pin.handle.generation == pin.generation:
            waits.append(self._quietly(pin.handle, "rollback", pin.transaction_id))
        for d in waits:
            await d

    def _quietly(self, handle: TabletHandle, op: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        try:
            client = handle.client()
        except MySQLError:
            return succeed(None)  # link down: the tablet ends what we held on its side
        d: Deferred[Any] = getattr(client, op)(*args, deadline=self._deadline(), **kwargs)

        def failed(failure: Any) -> None:
            log.info(
                "{op} on tablet {alias} failed: {why}",
                op=op,
                alias=handle.alias,
                why=failure.getErrorMessage(),
            )

        return d.addErrback(failed)

    def change_user(self, info: ClientInfo) -> Deferred[None]:
        """A new user: reset the session; the target follows ``info.database``."""
        self.info = info
        if info.database:
            self._use(info.database)
        return self.reset_connection()

    def ping(self) -> Deferred[None]:
        """COM_PING: the gate answers."""
        return succeed(None)

    def statistics(self) -> Deferred[str]:
        """COM_STATISTICS: uptime, sessions, statements."""
        gate = self.gate
        uptime = int(gate.clock.seconds() - gate.started)
        return succeed(
            f"Uptime: {uptime}  Threads: {len(gate.sessions)}  Questions: {gate.questions}  "
            f"Tablets: {len(gate.discovery.handles)}"
        )

    def set_multi_statements(self, on: bool) -> Deferred[None]:
        """COM_SET_OPTION: split COM_QUERY text into statements or not."""
        self.multi = on
        return succeed(None)

    def close(self) -> None:
        """The client left: stop its statement, release what it held."""
        if self.closed:
            return
        self.closed = True
        self.kill_query()
        self.gate.session_closed(self)
        d = Deferred.fromCoroutine(self._reset())
        d.addErrback(
            lambda f: log.failure("releasing session {id} failed", f, id=self.connection_id)
        )


def _like(arg: str) -> Callable[[str], bool]:
    """What a gate-owned SHOW's ``like:<pattern>`` arg keeps (anything without one)."""
    if not arg.startswith("like:"):
        return lambda name: True
    pattern = answers.like(arg[5:])
    return lambda name: pattern.match(name) is not None


def _settle(result: Any, done: Deferred[None]) -> None:
    # Fires the fast path's own Deferred, unless a canceller that does not fire at once
    # already ended it with CancelledError.
    if done.called:
        return
    if isinstance(result, Failure):
        done.errback(result)
    else:
        done.callback(result)

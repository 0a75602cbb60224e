"""What the MySQL client collects from mysqld's replies: results, statements, command handlers.

This module owns the value types a caller of ``client.MySQLClient`` gets back (``Result``,
``PreparedStatement``) and one small *handler* per kind of command. A handler turns the
reply events of the sans-IO ``Connection`` (``Ok``, ``Err``, ``ResultSetStart``, ``Column``,
``Row``, ``ResultSetDone``, ``StmtPrepareOK``...) into a result; it does no I/O: the Twisted
glue (``client_protocol``) sends ``first()``, feeds every reply event to ``event()``, and
calls ``complete()`` each time the connection is back in IDLE. ``complete()`` may return a
further command to send (``COM_RESET_CONNECTION`` is followed by ``SET NAMES``), so a
compound command runs without another command slipping in between.

A handler never raises out of ``event``: a mysqld ERR, a row that does not decode, a result
over the size limit or a consumer that raised is recorded in ``error`` and the rest of the
reply is still read (and dropped), so the connection stays in step and can be reused.

LOAD DATA LOCAL INFILE: when mysqld asks for the file (``LocalInfileRequest``), a
``ResultHandler`` whose ``infile`` is ``bytes`` answers with the whole file in
``LocalInfileData`` packets of at most ``INFILE_CHUNK`` bytes and the empty packet that
ends it. One whose ``infile`` is an ``IInfileReader`` answers nothing: it leaves the
reader in ``infile_stream`` (``take_infile_stream``), and the glue reads the file piece by
piece and sends it (``infile_packets`` per piece, then the empty packet), or closes the
connection if the reader fails, so that mysqld never takes a truncated file for a whole one.
This module does no I/O and imports no Twisted: the reader is only ever held, not called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from vtwist.protocols.mysql.commands import (
    ComQuery,
    ComResetConnection,
    ComStmtExecute,
    ComStmtPrepare,
)
from vtwist.protocols.mysql.constants import ColumnFlag, ColumnType
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ColumnDefinition41,
    Err,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.values import (
    ColumnSpec,
    ExecuteParams,
    WireParams,
    decode_binary_row,
    decode_text_row,
    encode_execute_params,
    parse_text_value,
)
from vtwist.protocols.mysql.wire import Message

if TYPE_CHECKING:
    from vtwist.interfaces import IInfileReader

__all__ = [
    "CHARSETS",
    "CommandHandler",
    "Consumer",
    "ExecuteHandler",
    "NoReplyHandler",
    "PrepareHandler",
    "PreparedStatement",
    "ResetHandler",
    "Result",
    "ResultHandler",
    "SimpleHandler",
    "StreamEvent",
    "WholeConsumer",
    "column_specs",
    "infile_packets",
]

_UNSIGNED: Final = int(ColumnFlag.UNSIGNED)
#: Bytes per packet of a LOCAL INFILE file sent to mysqld (below its max_allowed_packet).
INFILE_CHUNK: Final = 1 << 20
_NO_PARAMS_EXECUTE: Final = ComStmtExecute(0)  # never sent (see ExecuteHandler.__init__)

# Character sets the client can ask for, with the collation id sent in the login packet
# (one byte, so only ids < 256). Names are also spliced into ``SET NAMES``: only these.
CHARSETS: Final[dict[str, int]] = {
    "utf8mb4": 45,  # utf8mb4_general_ci: MariaDB's default and valid on MySQL 8
    "utf8mb3": 33,
    "utf8": 33,
    "latin1": 8,
    "ascii": 11,
    "binary": 63,
}

StreamEvent = ResultSetStart | Column | Row | ResultSetDone | Ok
"""What a streaming consumer receives: each result is either an ``Ok`` (no result set) or
``ResultSetStart``, ``Column`` x n, ``Row`` x any (the raw payload), ``ResultSetDone``."""

WholeConsumer = Callable[[Sequence[ColumnDefinition41], list[bytes], ResultSetDone], object]
"""A consumer's ``result_set`` method (see ``Consumer``)."""

Consumer = Callable[[StreamEvent], object]
"""A streaming consumer: called once per event, in order; its return value is ignored.

A consumer whose class also has a ``row_batch(payloads: list[bytes])`` method gets the
rows already received in one call instead of a ``Row`` event each (cheaper for many rows).
One whose class has a ``result_set(columns, rows, done)`` method gets a result set
received whole (up to ``client_protocol.ROW_BATCH`` rows) in one call instead of its
events: the column definitions (a tuple: the same one again for the same columns), the
row payloads (a list it must not modify) and the ``ResultSetDone``; bigger or partly
received results still come as events. Rows already
received are delivered together either way, so a pause asked for in the middle takes
effect after them."""


def column_specs(columns: Sequence[ColumnDefinition41]) -> list[ColumnSpec]:
    """``(type, unsigned)`` per column, as ``values.decode_binary_row`` wants them."""
    return [(ColumnType(c.column_type), bool(c.flags & _UNSIGNED)) for c in columns]


def infile_packets(data: bytes) -> list[Message]:
    """Bytes of a LOCAL INFILE file as ``LocalInfileData`` packets of at most
    ``INFILE_CHUNK`` bytes (none for ``b""``: the empty packet ends the file)."""
    chunk = INFILE_CHUNK
    if len(data) <= chunk:
        return [LocalInfileData(data)] if data else []
    return [LocalInfileData(data[i : i + chunk]) for i in range(0, len(data), chunk)]


@dataclass
class Result:
    """One result of a command: either an OK (no columns) or a result set.

    ``rows`` hold ``bytes | None`` per value for a text query, Python values (see
    ``values``) for a query run with ``python=True`` and for every prepared statement
    execution; they are empty for streamed results (``row_count`` still counts them).
    ``affected_rows``/``last_insert_id``/``info`` come from the OK (for a result set, only
    from a DEPRECATE_EOF terminator). ``more`` holds the results that followed this one for
    the same command (multi-statements, ``CALL``), in order; it is set on the first result.
    """

    columns: list[ColumnDefinition41] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = 0
    warnings: int = 0
    info: bytes = b""
    row_count: int = 0
    more: list[Result] = field(default_factory=list)

    def all_results(self) -> list[Result]:
        """This result followed by the ``more`` ones."""
        return [self, *self.more]


@dataclass(eq=False)
class PreparedStatement:
    """A statement prepared on one connection (use it only with that connection).

    ``params`` and ``columns`` are the definitions mysqld sent (``params`` count the ``?``).
    ``bound_types`` are the parameter types last sent to mysqld: an execute with the same
    types sends new-params-bound = 0 and lets the server reuse them.
    """

    statement_id: int
    sql: bytes
    params: list[ColumnDefinition41] = field(default_factory=list)
    columns: list[ColumnDefinition41] = field(default_factory=list)
    warnings: int = 0
    bound_types: tuple[tuple[int, bool], ...] | None = None
    closed: bool = False

    @property
    def num_params(self) -> int:
        """How many ``?`` placeholders the statement has."""
        return len(self.params)


class CommandHandler:
    """Base handler: one command, the reply events, the result (see the module docstring)."""

    error: BaseException | None = None
    #: The reader of a LOAD DATA LOCAL INFILE file that mysqld asked for and the glue must
    #: stream now (set by ``event``; see the module docstring and ``take_infile_stream``).
    infile_stream: IInfileReader | None = None
    #: Set by handlers that take the rows already buffered in one call (``rows``), not a
    #: ``Row`` event each.
    takes_row_batches: bool = False

    #: Set by handlers that take a result set received whole in one call (``result_set``).
    takes_results: bool = False

    def rows(self, payloads: list[bytes]) -> None:
        """Rows of the current result, in order (only when ``takes_row_batches``)."""
        raise NotImplementedError

    def result_set(
        self, columns: Sequence[ColumnDefinition41], rows: list[bytes], done: ResultSetDone
    ) -> None:
        """A whole result set: its events in one call (only when ``takes_results``)."""
        raise NotImplementedError

    def first(self) -> Message:
        """The command to send."""
        raise NotImplementedError

    def event(self, ev: Message) -> Message | list[Message] | None:
        """A reply event; returns what to send back right away (rarely), else None."""
        if isinstance(ev, Err):
            self.fail(ev.to_error())
        return None

    def complete(self) -> Message | None:
        """The connection is idle again: the next command of a compound one, or None."""
        return None

    def take_infile_stream(self) -> IInfileReader | None:
        """The reader whose file mysqld is waiting for, once (None if there is none): the
        glue sends its pieces, then the empty packet, and reads the reply as usual."""
        reader = self.infile_stream
        self.infile_stream = None
        return reader

    def result(self) -> Any:
        """What the command's Deferred fires with."""
        return None

    def fail(self, error: BaseException) -> None:
        """Record the first error; the command fails with it once its reply is read."""
        if self.error is None:
            self.error = error


class SimpleHandler(CommandHandler):
    """A command answered by OK or ERR (ping, init db, stmt reset...); fires with the Ok."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.ok: Ok | None = None

    def first(self) -> Message:
        """The command."""
        return self.message

    def event(self, ev: Message) -> Message | list[Message] | None:
        """Keep the OK."""
        if isinstance(ev, Ok):
            self.ok = ev
        return super().event(ev)

    def result(self) -> Ok | None:
        """The OK packet."""
        return self.ok


class NoReplyHandler(SimpleHandler):
    """A command mysqld does not answer (COM_STMT_CLOSE, COM_QUIT)."""


class ResetHandler(SimpleHandler):
    """COM_RESET_CONNECTION, then ``SET NAMES`` (MySQL bug 97633: the reset reverts the
    connection charset to the server default instead of the one from the login packet)."""

    def __init__(self, charset: str) -> None:
        super().__init__(ComResetConnection())
        self.charset = charset
        self._names_sent = False

    def complete(self) -> Message | None:
        """After the reset's OK, restore the charset."""
        if self._names_sent or self.error is not None:
            return None
        self._names_sent = True
        return ComQuery(b"SET NAMES " + self.charset.encode("ascii"))


class PrepareHandler(CommandHandler):
    """COM_STMT_PREPARE: fires with a ``PreparedStatement``."""

    def __init__(self, sql: bytes) -> None:
        self.sql = sql
        self.stmt: PreparedStatement | None = None
        self._num_params = 0

    def first(self) -> Message:
        """The command."""
        return ComStmtPrepare(self.sql)

    def event(self, ev: Message) -> Message | list[Message] | None:
        """Statement id and counts, then parameter definitions, then column definitions."""
        if isinstance(ev, StmtPrepareOK):
            self.stmt = PreparedStatement(ev.statement_id, self.sql, warnings=ev.warnings)
            self._num_params = ev.num_params
        elif isinstance(ev, Column) and self.stmt is not None:
            if len(self.stmt.params) < self._num_params:
                self.stmt.params.append(ev.definition)
            else:
                self.stmt.columns.append(ev.definition)
        return super().event(ev)

    def result(self) -> PreparedStatement:
        """The statement."""
        assert self.stmt is not None
        return self.stmt


_CONSUMER_METHODS: dict[type, tuple[bool, bool]] = {}
_CONSUMER_METHODS_ENTRIES: Final = 64


def _consumer_methods(kind: type) -> tuple[bool, bool]:
    """Whether consumers of class ``kind`` have ``row_batch`` and ``result_set`` methods
    (looked up once per class: a handler is made for every query)."""
    known = _CONSUMER_METHODS.get(kind)
    if known is None:
        known = (
            callable(getattr(kind, "row_batch", None)),
            callable(getattr(kind, "result_set", None)),
        )
        if len(_CONSUMER_METHODS) >= _CONSUMER_METHODS_ENTRIES:
            _CONSUMER_METHODS.clear()
        _CONSUMER_METHODS[kind] = known
    return known


class ResultHandler(CommandHandler):
    """COM_QUERY / COM_STMT_EXECUTE: collects the results, or streams them to a consumer.

    ``binary`` rows are decoded with the result's column types; text rows are split into
    ``bytes | None`` and, with ``python``, parsed into the same Python values. A collected
    reply larger than ``max_result_size`` bytes of row payload fails with ER_TOO_BIG_SELECT
    (1104) after the rest was read and dropped: use ``stream_query`` for big results.
    """

    _current: Result | None = None
    _specs: Sequence[ColumnSpec] = ()
    _size = 0
    _consume_rows: Callable[[list[bytes]], object] | None = None
    _consume_results: WholeConsumer | None = None
    #: The file a LOAD DATA LOCAL INFILE of this command sends when mysqld asks for it:
    #: whole, or a reader the glue streams it from (None: such a request is refused with an
    #: empty file, and the command fails).
    infile: bytes | IInfileReader | None = None
    #: False: ``result()`` is None and result sets taken whole leave no ``Result`` behind
    #: (a streaming caller that only wants the events).
    summary = True

    def __init__(
        self,
        message: Message,
        binary: bool,
        python: bool,
        max_result_size: int,
        consumer: Consumer | None = None,
        summary: bool = True,
        infile: bytes | IInfileReader | None = None,
    ) -> None:
        # (``_current``, ``_specs``, ``_size``, ``_consume_*``, ``takes_*`` and ``summary``
        # start as the class defaults: one handler is made per query.)
        if not summary:
            self.summary = False
        if infile is not None:
            self.infile = infile
        self.message = message
        self.binary = binary
        self.python = python
        self.max_result_size = max_result_size
        self.consumer = consumer
        self.results: list[Result] = []
        if consumer is not None:
            batches, wholes = _consumer_methods(type(consumer))
            if batches:
                self._consume_rows = consumer.row_batch  # type: ignore[attr-defined]
                self.takes_row_batches = True
            if wholes:
                self._consume_results = consumer.result_set  # type: ignore[attr-defined]
                self.takes_results = True

    def first(self) -> Message:
        """The command."""
        return self.message

    def rows(self, payloads: list[bytes]) -> None:
        """Rows of the current result, for a consumer with a ``row_batch`` method."""
        assert self._current is not None and self._consume_rows is not None
        self._current.row_count += len(payloads)
        if self.error is None:
            try:
                self._consume_rows(payloads)
            except Exception as e:  # the consumer's bug: read to the end, then fail
                self.fail(e)

    def result_set(
        self, columns: Sequence[ColumnDefinition41], rows: list[bytes], done: ResultSetDone
    ) -> None:
        """A whole result set, for a consumer with a ``result_set`` method."""
        assert self._consume_results is not None
        if self.summary:
            self.results.append(
                Result(
                    list(columns),
                    [],
                    done.affected_rows,
                    done.last_insert_id,
                    done.status,
                    done.warnings,
                    done.info,
                    len(rows),
                )
            )
        if self.error is None:
            try:
                self._consume_results(columns, rows, done)
            except Exception as e:  # the consumer's bug: read to the end, then fail
                self.fail(e)

    def event(self, ev: Message) -> Message | list[Message] | None:
        """One reply event."""
        t = type(ev)
        consumer = self.consumer
        if t is Row:
            if consumer is None:
                self._row(ev)  # type: ignore[arg-type]
                return None
            # A streamed row goes straight to the consumer (the hot path of a relay).
            assert self._current is not None
            self._current.row_count += 1
            if self.error is None:
                try:
                    consumer(ev)  # type: ignore[arg-type]
                except Exception as e:  # the consumer's bug: read to the end, then fail
                    self.fail(e)
            return None
        if t is Column:
            assert self._current is not None
            self._current.columns.append(ev.definition)  # type: ignore[attr-defined]
        elif t is ResultSetStart:
            self._current = Result()
            self.results.append(self._current)
        elif t is ResultSetDone:
            assert isinstance(ev, ResultSetDone)
            self._done(ev)
        elif t is Ok:
            assert isinstance(ev, Ok)
            res = Result(
                affected_rows=ev.affected_rows,
                last_insert_id=ev.last_insert_id,
                status=ev.status,
                warnings=ev.warnings,
                info=ev.info,
            )
            self.results.append(res)
        elif t is LocalInfileRequest:
            return self._send_file()
        else:
            if t is Err:
                self._on_err()
            return super().event(ev)
        if consumer is not None and self.error is None:  # (``_deliver``, inlined)
            try:
                consumer(ev)  # type: ignore[arg-type]
            except Exception as e:  # the consumer's bug: read the reply to its end, then fail
                self.fail(e)
        return None

    def _send_file(self) -> list[Message] | None:
        """mysqld asked for the LOCAL INFILE: ``infile`` in chunks, then the empty packet
        that ends it (all of it if the file is empty or refused). A reader is left in
        ``infile_stream`` for the glue, which streams it (nothing to send now)."""
        data = self.infile
        if data is not None and not isinstance(data, bytes):
            self.infile = None  # streamed once
            self.infile_stream = data
            return None
        if data is None:
            self.fail(
                MySQLError(
                    ErrorCode.CR_UNKNOWN_ERROR,
                    "mysqld asked for a LOCAL INFILE file that this statement did not bring",
                )
            )
            data = b""
        self.infile = None  # sent once
        chunks = infile_packets(data)
        chunks.append(LocalInfileData(b""))
        return chunks

    def _on_err(self) -> None:
        """mysqld answered ERR (a hook: ``event`` still records the error)."""

    def _row(self, ev: Row) -> None:
        res = self._current
        assert res is not None
        res.row_count += 1
        if self.consumer is not None:
            self._deliver(ev)
            return
        if self.error is not None:
            return
        payload = ev.payload
        self._size += len(payload)
        if self._size > self.max_result_size:
            self.fail(
                MySQLError(
                    1104,
                    f"result is over max_result_size ({self.max_result_size} bytes of rows); "
                    "stream it (stream_query/stream_execute) or raise max_result_size",
                    "42000",
                )
            )
            self.results.clear()  # drop what was collected: it is useless now
            return
        try:
            if not self._specs and res.columns:
                self._specs = column_specs(res.columns)
            if self.binary:
                res.rows.append(decode_binary_row(payload, self._specs))
            elif self.python:
                raw = decode_text_row(payload, len(res.columns))
                res.rows.append(
                    [parse_text_value(v, t, u) for v, (t, u) in zip(raw, self._specs, strict=True)]
                )
            else:
                res.rows.append(decode_text_row(payload, len(res.columns)))
        except (RemoteProtocolError, ValueError, TypeError) as e:
            self.fail(MySQLError(ErrorCode.CR_MALFORMED_PACKET, f"cannot decode a row: {e}"))

    def _done(self, ev: ResultSetDone) -> None:
        res = self._current
        assert res is not None
        res.status = ev.status
        res.warnings = ev.warnings
        res.affected_rows = ev.affected_rows
        res.last_insert_id = ev.last_insert_id
        res.info = ev.info
        self._current = None
        self._specs = ()

    def _deliver(self, ev: StreamEvent) -> None:
        if self.consumer is None or self.error is not None:
            return
        try:
            self.consumer(ev)
        except Exception as e:  # the consumer's bug: read the reply to its end, then fail
            self.fail(e)

    def result(self) -> Result | None:
        """The first result, with the following ones in ``more`` (None without
        ``summary``)."""
        if not self.summary:
            return None
        first, *more = self.results or [Result()]
        first.more = more
        return first


class ExecuteHandler(ResultHandler):
    """COM_STMT_EXECUTE of ``stmt`` with ``params`` (binary rows, always decoded).

    The values are encoded at once (ValueError/TypeError if they cannot be sent); whether
    the types are bound is decided when the command is really sent: only when they differ
    from those mysqld last received for the statement, else new-params-bound = 0.
    """

    def __init__(
        self,
        stmt: PreparedStatement,
        params: Sequence[object],
        max_result_size: int,
        consumer: Consumer | None = None,
        summary: bool = True,
    ) -> None:
        if len(params) != len(stmt.params):
            raise ValueError(
                f"statement has {stmt.num_params} parameters, got {len(params)} values"
            )
        # (Positional arguments: one handler is made per execute.) With parameters
        # ``first`` builds the command when it is sent: no placeholder.
        super().__init__(
            _NO_PARAMS_EXECUTE if params else ComStmtExecute(stmt.statement_id),
            True,
            True,
            max_result_size,
            consumer,
            summary,
        )
        self.stmt = stmt
        self._encoded: WireParams | None = None
        if params:
            # Parameters a server decoded come with their wire form: relay it as it is.
            wire = params.wire if type(params) is ExecuteParams else None
            if wire is None:
                bitmap, specs, values = encode_execute_params(params)
                wire = (bitmap, tuple((int(t), u) for t, u in specs), values)
            self._encoded = wire

    def first(self) -> Message:
        """The COM_STMT_EXECUTE, binding types only when they changed."""
        if self._encoded is None:
            return self.message
        bitmap, types, values = self._encoded
        bind = types != self.stmt.bound_types
        self.stmt.bound_types = types
        # (stmt_id, flags, iteration count, bitmap, new-params-bound, types, values)
        return ComStmtExecute(self.stmt.statement_id, 0, 1, bitmap, bind, types, values)

    def _on_err(self) -> None:
        """An ERR forgets the bound types (bind them again next time)."""
        self.stmt.bound_types = None

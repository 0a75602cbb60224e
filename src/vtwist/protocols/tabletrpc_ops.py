"""Sans-IO definition of the tablet RPC operations: arguments, results, validation.

Each operation has an ``OpSpec``: how its REQUEST ``args`` map is validated into an args
tuple (unknown keys ignored, wrong types -> ``MySQLError`` 1210), how the tablet's result is
checked into wire form, and how the gate checks it back (-> ``MySQLError`` 2027). The
frames and messages that carry them are in ``tabletrpc_codec``. No Twisted here.

=================  ======================================  ================================
op                 args (wire keys)                        result
=================  ======================================  ================================
execute            sql, bind, target, tx, rsv, max_rows,   ``QueryResult``
                   opts, settings, infile, infile_stream
stream_execute     same + window (chunks of credit)        CHUNKs, then ``QueryResult``
                                                           (OK part only)
begin              target, rsv, opts, settings             transaction id
commit, rollback   tx, target                              reserved id kept (0: none)
reserve            target, settings, begin, tx, opts       ``ReserveResult``
release            tx, rsv, target                         nil
kill               req | tx | rsv, conn, target            bool (something was killed)
stream_health      (none)                                  HEALTH frames until cancelled
manage             action, params (map of scalars/lists)   a map (the action's report)
=================  ======================================  ================================

``manage`` carries the tablet-manager actions that reparents and vtorc use (see
``vtwist.tablet.manager``): the action name and its parameters, answered by a map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeAlias

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_codec import MAX_REQUEST_ID, is_bytes_list

OP_EXECUTE = "execute"
OP_STREAM_EXECUTE = "stream_execute"
OP_BEGIN = "begin"
OP_COMMIT = "commit"
OP_ROLLBACK = "rollback"
OP_RESERVE = "reserve"
OP_RELEASE = "release"
OP_KILL = "kill"
OP_STREAM_HEALTH = "stream_health"
OP_MANAGE = "manage"

ER_NOT_SUPPORTED_YET = 1235

Scalar: TypeAlias = bool | int | float | str | bytes | None
BindValue: TypeAlias = Scalar | list[Scalar]


# --- results --------------------------------------------------------------------------------


#: What option ``start`` of begin/reserve may hold, comma-separated (START TRANSACTION's).
#: How a tablet's ERROR 1105 ends when the transaction or reserved connection it is sent has
#: ended (its idle timeout, a kill, a broken mysqld connection) or is unknown (the tablet
#: restarted): what ran in it is gone, and the caller may start over (``held_gone``).
HELD_GONE: Final = "; start a new one"


def held_gone(error: MySQLError) -> bool:
    """Whether ``error`` is a tablet's answer that the held connection is gone (``HELD_GONE``)."""
    return error.code == ErrorCode.UNKNOWN_ERROR and error.message.endswith(HELD_GONE)


TRANSACTION_CHARACTERISTICS: Final = ("READ ONLY", "READ WRITE", "WITH CONSISTENT SNAPSHOT")


class Note(NamedTuple):
    """One row of ``SHOW WARNINGS``: level (``Note``, ``Warning``, ``Error``), code, message."""

    level: str
    code: int
    message: str


class QueryResult(NamedTuple):
    """A query's result with rows kept in the MySQL wire encoding.

    ``fields`` are raw ColumnDefinition41 payloads and ``rows`` raw text-row payloads (both
    without the 4-byte packet header); then the OK packet's content; then ``notes``, what
    ``SHOW WARNINGS`` answered on the statement's connection right after it, when it had
    warnings (the tablet fetches them before the connection is lent again; at most its
    ``query.max_warnings``). A streamed result has empty ``fields``/``rows`` here, they
    travel in chunks. ``more``: the result sets that followed the first one (a ``CALL`` of
    a procedure that returns several), each with its own ``fields`` and ``rows``.
    """

    fields: list[bytes]
    rows: list[bytes]
    affected_rows: int = 0
    insert_id: int = 0
    warnings: int = 0
    status_flags: int = 0
    info: str = ""
    notes: Sequence[Note] = ()
    more: Sequence[QueryResult] = ()


class ReserveResult(NamedTuple):
    """Ids given by ``reserve``: the reserved connection and, with ``begin``, its transaction."""

    reserved_id: int
    transaction_id: int


def _bad_result(op: str) -> MySQLError:
    return MySQLError(
        ErrorCode.CR_MALFORMED_PACKET,
        f"tablet sent a malformed {op} result; check that gate and tablet versions match",
    )


def _is_note(wire: Any) -> bool:
    return (
        type(wire) is list
        and len(wire) == 3
        and type(wire[0]) is str
        and type(wire[1]) is int
        and type(wire[2]) is str
    )


def _decode_query_result(wire: Any, nested: bool = False) -> QueryResult:
    if (
        type(wire) is list
        and len(wire) == 9
        and is_bytes_list(wire[0])
        and is_bytes_list(wire[1])
        and type(wire[2]) is int
        and type(wire[3]) is int
        and type(wire[4]) is int
        and type(wire[5]) is int
        and min(wire[2], wire[3], wire[4], wire[5]) >= 0
        and type(wire[6]) is str
        and type(wire[7]) is list
        and type(wire[8]) is list
    ):
        notes = wire[7]
        if notes:
            if not all(map(_is_note, notes)):
                raise _bad_result("query")
            wire[7] = tuple(Note(*n) for n in notes)
        else:
            wire[7] = ()
        more = wire[8]
        if more:
            if nested:  # only the first result carries the others
                raise _bad_result("query")
            wire[8] = tuple(_decode_query_result(r, True) for r in more)
        else:
            wire[8] = ()
        return QueryResult(*wire)
    raise _bad_result("query")


def _decode_id(wire: Any) -> int:
    if type(wire) is int and 0 <= wire <= MAX_REQUEST_ID:
        return wire
    raise _bad_result("id")


def _decode_reserve(wire: Any) -> ReserveResult:
    if type(wire) is list and len(wire) == 2:
        return ReserveResult(_decode_id(wire[0]), _decode_id(wire[1]))
    raise _bad_result("reserve")


def _decode_none(wire: Any) -> None:
    if wire is not None:
        raise _bad_result("empty")


def _decode_bool(wire: Any) -> bool:
    if type(wire) is bool:
        return wire
    raise _bad_result("kill")


def _encode_query_result(value: Any) -> Any:
    if isinstance(value, QueryResult):
        return value
    raise TypeError(f"expected QueryResult, got {type(value).__name__}")


def _encode_id(value: Any) -> Any:
    if type(value) is int and 0 <= value <= MAX_REQUEST_ID:
        return value
    raise TypeError(f"expected an id (int >= 0), got {value!r}")


def _encode_reserve(value: Any) -> Any:
    if isinstance(value, ReserveResult):
        return [_encode_id(value.reserved_id), _encode_id(value.transaction_id)]
    raise TypeError(f"expected ReserveResult, got {type(value).__name__}")


def _encode_none(value: Any) -> Any:
    if value is None:
        return None
    raise TypeError(f"expected None, got {type(value).__name__}")


def _decode_map(wire: Any) -> dict[str, Any]:
    if type(wire) is dict and all(type(k) is str for k in wire):
        return wire
    raise _bad_result("manage")


def _encode_map(value: Any) -> Any:
    if isinstance(value, dict) and all(type(k) is str for k in value):
        return value
    raise TypeError(f"expected a map with string keys, got {type(value).__name__}")


def _encode_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise TypeError(f"expected bool, got {type(value).__name__}")


# --- operation arguments --------------------------------------------------------------------


class ExecuteArgs(NamedTuple):
    """Arguments of ``execute`` and ``stream_execute``.

    ``target`` is ``keyspace:shard@type`` (None: whatever the tablet serves);
    ``transaction_id``/``reserved_id`` 0 mean "use a pooled connection"; ``max_rows`` 0
    means the tablet's limit; ``options`` are free-form scalars. The tablet reads
    ``query_timeout_ms`` (a shorter deadline for this statement) and ``found_rows`` (True:
    the gate's client asked for CLIENT_FOUND_ROWS, so a pooled statement runs on a
    connection opened with it; ``begin`` and ``reserve`` read it too, and also ``start``:
    the characteristics of the START TRANSACTION that opens the transaction), and
    ``setting_warnings`` (True: when the last of ``settings`` ran on the connection first
    and warned, the result reports its warnings, as SHOW WARNINGS after it answers);
    ``window`` is the stream's credit in chunks (streams only); ``settings`` are SET
    statements of the caller's session that a pooled connection must have run first (the
    tablet keeps connections prepared with the same settings apart and reuses them);
    ``infile`` is the whole file of a ``LOAD DATA LOCAL INFILE`` statement, which the gate
    read from its client: the tablet sends it when mysqld asks for the file;
    ``infile_stream`` (never with ``infile``) says the file is not in the request: the
    tablet pulls it from the gate in pieces when mysqld asks for it
    (``ITabletRPCRequest.read_infile``; INFILE_MORE/INFILE_DATA in ``tabletrpc_codec``).
    The gate sets it only for a tablet whose HELLO announced ``infile_stream``.
    """

    sql: str
    bind_vars: dict[str, BindValue] | None = None
    target: str | None = None
    transaction_id: int = 0
    reserved_id: int = 0
    max_rows: int = 0
    options: dict[str, Scalar] | None = None
    window: int = 0
    settings: list[str] | None = None
    infile: bytes | None = None
    infile_stream: bool = False


class BeginArgs(NamedTuple):
    """Arguments of ``begin``: a transaction on a pooled or on a reserved connection
    (``settings``: SET statements run on a pooled one first, as for ``execute``)."""

    target: str | None = None
    reserved_id: int = 0
    options: dict[str, Scalar] | None = None
    settings: list[str] | None = None


class TransactionArgs(NamedTuple):
    """Arguments of ``commit`` and ``rollback``."""

    transaction_id: int
    target: str | None = None


class ReserveArgs(NamedTuple):
    """Arguments of ``reserve``: a dedicated connection, prepared by ``settings`` statements.

    ``begin`` also opens a transaction on it; ``transaction_id`` reserves the connection an
    open transaction already holds.
    """

    target: str | None = None
    settings: list[str] | None = None
    begin: bool = False
    transaction_id: int = 0
    options: dict[str, Scalar] | None = None


class ReleaseArgs(NamedTuple):
    """Arguments of ``release``: give back a reserved connection (rolling back its work)."""

    transaction_id: int = 0
    reserved_id: int = 0
    target: str | None = None


class KillArgs(NamedTuple):
    """Arguments of ``kill``.

    With ``request_id``: stop that in-flight request of this same connection. Otherwise kill
    the query running for ``transaction_id``/``reserved_id`` (``connection``: also drop the
    connection and its transaction).
    """

    request_id: int = 0
    transaction_id: int = 0
    reserved_id: int = 0
    connection: bool = False
    target: str | None = None


class ManageArgs(NamedTuple):
    """Arguments of ``manage``: a tablet-manager ``action`` and its ``params``."""

    action: str
    params: dict[str, Any]


class StreamHealthArgs(NamedTuple):
    """``stream_health`` takes no argument."""


# Wire keys of each args field; unknown keys are ignored for forward compatibility.
_WIRE_KEYS: dict[str, str] = {
    "sql": "sql",
    "bind_vars": "bind",
    "target": "target",
    "transaction_id": "tx",
    "reserved_id": "rsv",
    "max_rows": "max_rows",
    "options": "opts",
    "window": "window",
    "settings": "settings",
    "infile": "infile",
    "infile_stream": "infile_stream",
    "begin": "begin",
    "request_id": "req",
    "connection": "conn",
    "action": "action",
    "params": "params",
}


def args_to_wire(args: NamedTuple) -> dict[str, Any]:
    """The wire form of an args tuple (fields left at None/0/False are omitted; an empty
    ``infile`` is an empty file, so it stays)."""
    return {
        _WIRE_KEYS[k]: v
        for k, v in zip(args._fields, args, strict=True)
        if v or (k == "infile" and v is not None)
    }


def _bad_arg(op: str, key: str, want: str) -> MySQLError:
    return MySQLError(
        ErrorCode.WRONG_ARGUMENTS,
        f"Incorrect arguments to tablet RPC {op}: {key!r} must be {want}; "
        "check that gate and tablet versions match",
    )


def _get_id(op: str, wire: dict[str, Any], key: str) -> int:
    v = wire.get(key, 0)
    if type(v) is not int or not 0 <= v <= MAX_REQUEST_ID:
        raise _bad_arg(op, key, "an id (int >= 0)")
    return v


def _get_target(op: str, wire: dict[str, Any]) -> str | None:
    v = wire.get("target")
    if v is not None and type(v) is not str:
        raise _bad_arg(op, "target", "a string")
    return v


def _get_bool(op: str, wire: dict[str, Any], key: str) -> bool:
    v = wire.get(key, False)
    if type(v) is not bool:
        raise _bad_arg(op, key, "a boolean")
    return v


_SCALARS = (type(None), bool, int, float, str, bytes)


def _get_options(op: str, wire: dict[str, Any]) -> dict[str, Scalar] | None:
    v = wire.get("opts")
    if v is None:
        return None
    if type(v) is not dict or not all(type(k) is str and type(x) in _SCALARS for k, x in v.items()):
        raise _bad_arg(op, "opts", "a map of names to scalars")
    return v


def _get_bind_vars(op: str, wire: dict[str, Any]) -> dict[str, BindValue] | None:
    v = wire.get("bind")
    if v is None:
        return None
    if type(v) is not dict:
        raise _bad_arg(op, "bind", "a map of names to values")
    for k, x in v.items():
        if type(k) is not str:
            raise _bad_arg(op, "bind", "a map with string names")
        tx = type(x)
        if tx is list:
            if not all(type(e) in _SCALARS for e in x):
                raise _bad_arg(op, f"bind[{k}]", "a scalar or a list of scalars")
        elif tx not in _SCALARS:
            raise _bad_arg(op, f"bind[{k}]", "a scalar or a list of scalars")
    return v


def _parse_execute(op: str, wire: dict[str, Any]) -> ExecuteArgs:
    # Every query's path: the optional keys are checked inline, the same way as the
    # _get_* helpers check them (and with their errors).
    get = wire.get
    sql = get("sql")
    if type(sql) is not str or not sql:
        if type(sql) is not bytes or not sql:
            raise _bad_arg(op, "sql", "a non-empty string")
        sql = sql.decode("utf-8", "surrogateescape")  # not UTF-8: sent as its bytes
    max_rows = get("max_rows", 0)
    if type(max_rows) is not int or max_rows < 0:
        raise _bad_arg(op, "max_rows", "an int >= 0")
    window = get("window", 0)
    if type(window) is not int or not 0 <= window <= 1 << 20:
        raise _bad_arg(op, "window", "an int in [0, 1048576]")
    bind = None if get("bind") is None else _get_bind_vars(op, wire)
    target = get("target")
    if target is not None and type(target) is not str:
        raise _bad_arg(op, "target", "a string")
    tx = get("tx", 0)
    if type(tx) is not int or not 0 <= tx <= MAX_REQUEST_ID:
        raise _bad_arg(op, "tx", "an id (int >= 0)")
    rsv = get("rsv", 0)
    if type(rsv) is not int or not 0 <= rsv <= MAX_REQUEST_ID:
        raise _bad_arg(op, "rsv", "an id (int >= 0)")
    infile = get("infile")
    if infile is not None and type(infile) is not bytes:
        raise _bad_arg(op, "infile", "bytes")
    infile_stream = get("infile_stream", False)
    if infile_stream is not False and (infile_stream is not True or infile is not None):
        raise _bad_arg(op, "infile_stream", "a boolean, false when 'infile' is given")
    return ExecuteArgs(
        sql,
        bind,
        target,
        tx,
        rsv,
        max_rows,
        None if get("opts") is None else _get_options(op, wire),
        window,
        None if get("settings") is None else _get_settings(op, wire),
        infile,
        infile_stream,
    )


def _parse_begin(op: str, wire: dict[str, Any]) -> BeginArgs:
    return BeginArgs(
        _get_target(op, wire),
        _get_id(op, wire, "rsv"),
        _get_options(op, wire),
        _get_settings(op, wire),
    )


def _get_settings(op: str, wire: dict[str, Any]) -> list[str] | None:
    settings = wire.get("settings")
    if settings is None:
        return None
    if type(settings) is not list or not all(type(s) in (str, bytes) for s in settings):
        raise _bad_arg(op, "settings", "a list of SQL strings")
    # (Bytes: SQL that is not UTF-8, as ``sql``.)
    return [s if type(s) is str else s.decode("utf-8", "surrogateescape") for s in settings]


def _parse_transaction(op: str, wire: dict[str, Any]) -> TransactionArgs:
    tx = _get_id(op, wire, "tx")
    if not tx:
        raise _bad_arg(op, "tx", "a transaction id (int > 0)")
    return TransactionArgs(tx, _get_target(op, wire))


def _parse_reserve(op: str, wire: dict[str, Any]) -> ReserveArgs:
    return ReserveArgs(
        _get_target(op, wire),
        _get_settings(op, wire),
        _get_bool(op, wire, "begin"),
        _get_id(op, wire, "tx"),
        _get_options(op, wire),
    )


def _parse_release(op: str, wire: dict[str, Any]) -> ReleaseArgs:
    args = ReleaseArgs(_get_id(op, wire, "tx"), _get_id(op, wire, "rsv"), _get_target(op, wire))
    if not (args.transaction_id or args.reserved_id):
        raise _bad_arg(op, "tx/rsv", "given (one of them > 0)")
    return args


def _parse_kill(op: str, wire: dict[str, Any]) -> KillArgs:
    args = KillArgs(
        _get_id(op, wire, "req"),
        _get_id(op, wire, "tx"),
        _get_id(op, wire, "rsv"),
        _get_bool(op, wire, "conn"),
        _get_target(op, wire),
    )
    if not (args.request_id or args.transaction_id or args.reserved_id):
        raise _bad_arg(op, "req/tx/rsv", "given (one of them > 0)")
    return args


MAX_ACTION_NAME = 64


def _parse_manage(op: str, wire: dict[str, Any]) -> ManageArgs:
    action = wire.get("action")
    if type(action) is not str or not 0 < len(action) <= MAX_ACTION_NAME:
        raise _bad_arg(op, "action", f"a non-empty string of at most {MAX_ACTION_NAME} chars")
    params = wire.get("params", {})
    if type(params) is not dict or not all(type(k) is str for k in params):
        raise _bad_arg(op, "params", "a map with string names")
    return ManageArgs(action, params)


def _parse_nothing(op: str, wire: dict[str, Any]) -> StreamHealthArgs:
    return StreamHealthArgs()


class OpSpec(NamedTuple):
    """How one operation's arguments and result are checked and converted."""

    name: str
    parse_args: Callable[[str, dict[str, Any]], Any]
    encode_result: Callable[[Any], Any]
    decode_result: Callable[[Any], Any]
    streaming: bool


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(OP_EXECUTE, _parse_execute, _encode_query_result, _decode_query_result, False),
        OpSpec(OP_STREAM_EXECUTE, _parse_execute, _encode_query_result, _decode_query_result, True),
        OpSpec(OP_BEGIN, _parse_begin, _encode_id, _decode_id, False),
        OpSpec(OP_COMMIT, _parse_transaction, _encode_id, _decode_id, False),
        OpSpec(OP_ROLLBACK, _parse_transaction, _encode_id, _decode_id, False),
        OpSpec(OP_RESERVE, _parse_reserve, _encode_reserve, _decode_reserve, False),
        OpSpec(OP_RELEASE, _parse_release, _encode_none, _decode_none, False),
        OpSpec(OP_KILL, _parse_kill, _encode_bool, _decode_bool, False),
        OpSpec(OP_STREAM_HEALTH, _parse_nothing, _encode_none, _decode_none, True),
        OpSpec(OP_MANAGE, _parse_manage, _encode_map, _decode_map, False),
    )
}


def op_spec(op: str) -> OpSpec:
    """The spec of ``op``; ``MySQLError`` 1235 when this version does not know it."""
    spec = OPS.get(op)
    if spec is None:
        raise MySQLError(
            ER_NOT_SUPPORTED_YET,
            f"This tablet does not support RPC operation {op[:64]!r}; "
            "upgrade the tablet or downgrade the gate",
            "42000",
        )
    return spec


def parse_args(op: str, wire: dict[str, Any]) -> Any:
    """Validate a request's ``args`` for ``op``; ``MySQLError`` when they are wrong."""
    spec = op_spec(op)
    return spec.parse_args(op, wire)


def check_health(health: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a health snapshot as sent on the wire (string keys, msgpack values)."""
    if not all(type(k) is str for k in health):
        raise TypeError("health keys must be strings")
    return dict(health)


def sequence_of_bytes(values: Sequence[bytes], what: str) -> list[bytes]:
    """``values`` as a list, checking each item is ``bytes`` (for the stream sink)."""
    out = list(values)
    if not all(type(v) is bytes for v in out):
        raise TypeError(f"{what} must be bytes payloads")
    return out


def interrupted(why: str) -> MySQLError:
    """ERROR 1317 (70100): a request stopped before it completed, and ``why``."""
    return MySQLError(ErrorCode.QUERY_INTERRUPTED, f"Query execution was interrupted: {why}")

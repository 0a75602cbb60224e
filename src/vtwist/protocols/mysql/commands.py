"""Command-phase packets a client sends, one dataclass per command (frozen but one).

Each command has ``CODE`` (its first byte), ``encode()`` (the payload) and a ``decode``
classmethod; ``decode_command`` dispatches on the first byte. Commands this module does not
model (COM_PROCESS_KILL, COM_DEBUG, binlog commands, an empty packet...) decode as
``UnknownCommand`` so a server can answer them with ERR 1047 instead of failing.
COM_STMT_EXECUTE cannot be parsed without the statement's parameter count: the caller
passes it (``Connection`` tracks prepared statements); the parameter *values* stay raw
bytes for ``values.decode_execute_params``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Final

from vtwist.protocols.mysql.constants import PARAM_UNSIGNED, Capability
from vtwist.protocols.mysql.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from vtwist.protocols.mysql.wire import (
    Message,
    Reader,
    decode_attrs,
    encode_attrs,
    from_text,
    int2,
    int4,
    to_text,
)

__all__ = [
    "ComChangeUser",
    "ComFieldList",
    "ComInitDB",
    "ComPing",
    "ComQuery",
    "ComQuit",
    "ComResetConnection",
    "ComSetOption",
    "ComStatistics",
    "ComStmtClose",
    "ComStmtExecute",
    "ComStmtFetch",
    "ComStmtPrepare",
    "ComStmtReset",
    "ComStmtSendLongData",
    "CommandMessage",
    "ParamType",
    "UnknownCommand",
    "decode_command",
]

_SECURE: Final = int(Capability.SECURE_CONNECTION)
_PLUGIN_AUTH: Final = int(Capability.PLUGIN_AUTH)
_ATTRS: Final = int(Capability.CONNECT_ATTRS)
_MALFORMED: Final = int(ErrorCode.MALFORMED_PACKET)
_EXECUTE_HEAD: Final = struct.Struct("<IBI")  # statement id, flags, iteration count

# A parameter type of COM_STMT_EXECUTE: (ColumnType value, unsigned flag).
ParamType = tuple[int, bool]
# Parsed parameter-type sections (clients send the same few again and again).
_TYPES_SEEN: dict[bytes, tuple[ParamType, ...]] = {}
_TYPES_PACKED: dict[tuple[ParamType, ...], bytes] = {}  # the other way round
_TYPES_SEEN_ENTRIES: Final = 256
_TYPES_SEEN_MAX_BYTES: Final = 64
_NO_LONG_DATA: Final[Mapping[int, bytes]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ComQuery(Message):
    """COM_QUERY: run ``sql`` (bytes in the connection charset)."""

    sql: bytes
    CODE: ClassVar[int] = 0x03

    def encode(self) -> bytes:
        """The payload."""
        return b"\x03" + self.sql

    @classmethod
    def decode(cls, payload: bytes) -> ComQuery:
        """Parse."""
        return cls(payload[1:])


@dataclass(frozen=True, slots=True)
class ComInitDB(Message):
    """COM_INIT_DB: change the default database."""

    database: str
    CODE: ClassVar[int] = 0x02

    def encode(self) -> bytes:
        """The payload."""
        return b"\x02" + from_text(self.database)

    @classmethod
    def decode(cls, payload: bytes) -> ComInitDB:
        """Parse."""
        return cls(to_text(payload[1:]))


@dataclass(frozen=True, slots=True)
class ComFieldList(Message):
    """COM_FIELD_LIST: the columns of ``table`` matching ``wildcard``."""

    table: str
    wildcard: str = ""
    CODE: ClassVar[int] = 0x04

    def encode(self) -> bytes:
        """The payload."""
        return b"\x04" + from_text(self.table) + b"\0" + from_text(self.wildcard)

    @classmethod
    def decode(cls, payload: bytes) -> ComFieldList:
        """Parse (a missing NUL makes the whole rest the table name)."""
        r = Reader(payload, 1)
        table = to_text(r.nul_str_or_rest())
        return cls(table, to_text(r.rest()))


@dataclass(frozen=True, slots=True)
class ComSetOption(Message):
    """COM_SET_OPTION: 0 = multi statements on, 1 = off (``constants.SetOption``)."""

    option: int
    CODE: ClassVar[int] = 0x1B

    def encode(self) -> bytes:
        """The payload."""
        return b"\x1b" + int2(self.option)

    @classmethod
    def decode(cls, payload: bytes) -> ComSetOption:
        """Parse."""
        r = Reader(payload, 1)
        return cls(r.int2())


@dataclass(frozen=True, slots=True)
class ComPing(Message):
    """COM_PING: answered with OK."""

    CODE: ClassVar[int] = 0x0E

    def encode(self) -> bytes:
        """The payload."""
        return b"\x0e"

    @classmethod
    def decode(cls, payload: bytes) -> ComPing:
        """Parse."""
        return cls()


@dataclass(frozen=True, slots=True)
class ComQuit(Message):
    """COM_QUIT: the client is leaving; no response."""

    CODE: ClassVar[int] = 0x01

    def encode(self) -> bytes:
        """The payload."""
        return b"\x01"

    @classmethod
    def decode(cls, payload: bytes) -> ComQuit:
        """Parse."""
        return cls()


@dataclass(frozen=True, slots=True)
class ComStatistics(Message):
    """COM_STATISTICS: answered with a bare status string."""

    CODE: ClassVar[int] = 0x09

    def encode(self) -> bytes:
        """The payload."""
        return b"\x09"

    @classmethod
    def decode(cls, payload: bytes) -> ComStatistics:
        """Parse."""
        return cls()


@dataclass(frozen=True, slots=True)
class ComResetConnection(Message):
    """COM_RESET_CONNECTION: reset session state; answered with OK."""

    CODE: ClassVar[int] = 0x1F

    def encode(self) -> bytes:
        """The payload."""
        return b"\x1f"

    @classmethod
    def decode(cls, payload: bytes) -> ComResetConnection:
        """Parse."""
        return cls()


@dataclass(frozen=True, slots=True)
class ComChangeUser(Message):
    """COM_CHANGE_USER: re-authenticate as ``user``; an auth exchange follows.

    The auth response is 1-byte length-prefixed with SECURE_CONNECTION, else NUL-terminated;
    ``auth_plugin_name`` is sent with PLUGIN_AUTH and ``connect_attrs`` with CONNECT_ATTRS.
    """

    user: str
    auth_response: bytes = b""
    database: str = ""
    charset: int = 0
    auth_plugin_name: str = ""
    connect_attrs: Mapping[str, str] = field(default_factory=dict)
    CODE: ClassVar[int] = 0x11

    def encode(self, capabilities: int) -> bytes:
        """The payload, laid out for the negotiated ``capabilities``."""
        out = [b"\x11", from_text(self.user), b"\0"]
        auth = self.auth_response
        if capabilities & _SECURE:
            if len(auth) > 255:
                raise LocalProtocolError("COM_CHANGE_USER auth response is over 255 bytes")
            out.append(bytes((len(auth),)) + auth)
        else:
            out.append(auth + b"\0")
        out += [from_text(self.database), b"\0", int2(self.charset)]
        if capabilities & _PLUGIN_AUTH:
            out += [from_text(self.auth_plugin_name), b"\0"]
        if capabilities & _ATTRS:
            out.append(encode_attrs(self.connect_attrs))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes, capabilities: int) -> ComChangeUser:
        """Parse; fields after the database are optional."""
        r = Reader(payload, 1)
        user = to_text(r.nul_str())
        auth = r.fixed(r.int1()) if capabilities & _SECURE else r.nul_str_or_rest()
        database = to_text(r.nul_str_or_rest()) if not r.at_end() else ""
        charset = r.int2() if r.remaining >= 2 else 0
        plugin = ""
        attrs: dict[str, str] = {}
        if capabilities & _PLUGIN_AUTH and not r.at_end():
            plugin = to_text(r.nul_str_or_rest())
        if capabilities & _ATTRS and not r.at_end():
            attrs = decode_attrs(r)
        return cls(user, auth, database, charset, plugin, attrs)


@dataclass(frozen=True, slots=True)
class ComStmtPrepare(Message):
    """COM_STMT_PREPARE: prepare ``sql``."""

    sql: bytes
    CODE: ClassVar[int] = 0x16

    def encode(self) -> bytes:
        """The payload."""
        return b"\x16" + self.sql

    @classmethod
    def decode(cls, payload: bytes) -> ComStmtPrepare:
        """Parse."""
        return cls(payload[1:])


@dataclass(slots=True, init=False)
class ComStmtExecute(Message):
    """COM_STMT_EXECUTE, with the parameter values left raw.

    ``null_bitmap`` (offset 0) is empty when the statement has no parameters.
    ``param_types`` are the *effective* types: those sent with ``new_params_bound``, else
    the ones the connection cached from an earlier execute of the statement (empty when
    there are none: answer ERR 1210). ``values`` is the raw values section; parameters
    listed in ``long_data`` (collected from COM_STMT_SEND_LONG_DATA) are absent from it.

    Unlike the other commands it is not frozen (treat it as immutable all the same): a
    relayed execute builds two of them, and a frozen dataclass's ``__init__`` costs several
    times a plain one. Without long data ``long_data`` is one shared read-only mapping.
    """

    stmt_id: int
    flags: int
    iteration_count: int
    null_bitmap: bytes
    new_params_bound: bool
    param_types: tuple[ParamType, ...]
    values: bytes
    long_data: Mapping[int, bytes]
    CODE: ClassVar[int] = 0x17

    def __init__(
        self,
        stmt_id: int,
        flags: int = 0,
        iteration_count: int = 1,
        null_bitmap: bytes = b"",
        new_params_bound: bool = False,
        param_types: tuple[ParamType, ...] = (),
        values: bytes = b"",
        long_data: Mapping[int, bytes] = _NO_LONG_DATA,
    ) -> None:
        self.stmt_id = stmt_id
        self.flags = flags
        self.iteration_count = iteration_count
        self.null_bitmap = null_bitmap
        self.new_params_bound = new_params_bound
        self.param_types = param_types
        self.values = values
        self.long_data = long_data

    def encode(self) -> bytes:
        """The payload (types are written only when ``new_params_bound``)."""
        head = b"\x17" + _EXECUTE_HEAD.pack(self.stmt_id, self.flags, self.iteration_count)
        if not self.null_bitmap:
            return head + self.values
        if self.new_params_bound:
            types = _TYPES_PACKED.get(self.param_types)
            if types is None:
                types = b"".join(
                    bytes((t, PARAM_UNSIGNED if u else 0)) for t, u in self.param_types
                )
                if len(_TYPES_PACKED) >= _TYPES_SEEN_ENTRIES:
                    _TYPES_PACKED.clear()
                _TYPES_PACKED[self.param_types] = types
            return b"".join((head, self.null_bitmap, b"\x01", types, self.values))
        return b"".join((head, self.null_bitmap, b"\x00", self.values))

    @classmethod
    def decode(
        cls,
        payload: bytes,
        num_params: int,
        cached_types: tuple[ParamType, ...] = (),
    ) -> ComStmtExecute:
        """Parse for a statement with ``num_params`` parameters."""
        if num_params > 0:
            # The common case, without a Reader; anything short goes the checked way below.
            nb = (num_params + 7) >> 3
            at = 11 + nb  # after the header, the bitmap and the new-params-bound byte
            end = at + 2 * num_params if payload[at - 1 : at] not in (b"", b"\x00") else at
            if len(payload) >= end:
                stmt_id, flags, iterations = _EXECUTE_HEAD.unpack_from(payload, 1)
                if end == at:
                    types = cached_types
                    bound = False
                else:
                    raw = payload[at:end]
                    seen = _TYPES_SEEN.get(raw)
                    if seen is None:
                        seen = tuple(
                            (raw[i], bool(raw[i + 1] & PARAM_UNSIGNED))
                            for i in range(0, len(raw), 2)
                        )
                        if len(raw) <= _TYPES_SEEN_MAX_BYTES:
                            if len(_TYPES_SEEN) >= _TYPES_SEEN_ENTRIES:
                                _TYPES_SEEN.clear()
                            _TYPES_SEEN[raw] = seen
                    types = seen
                    bound = True
                return cls(
                    stmt_id, flags, iterations, payload[10 : 10 + nb], bound, types, payload[end:]
                )
        r = Reader(payload, 1)
        stmt_id = r.int4()
        flags = r.int1()
        iterations = r.int4()
        if num_params <= 0:
            return cls(stmt_id, flags, iterations, values=r.rest())
        bitmap = r.fixed((num_params + 7) >> 3)
        bound = r.int1() != 0
        if bound:
            raw = r.fixed(2 * num_params)
            types = tuple(
                (raw[i], bool(raw[i + 1] & PARAM_UNSIGNED)) for i in range(0, len(raw), 2)
            )
        else:
            types = cached_types
        return cls(stmt_id, flags, iterations, bitmap, bound, types, r.rest())


@dataclass(frozen=True, slots=True)
class ComStmtSendLongData(Message):
    """COM_STMT_SEND_LONG_DATA: a chunk of parameter ``param_id``; no response."""

    stmt_id: int
    param_id: int
    data: bytes
    CODE: ClassVar[int] = 0x18

    def encode(self) -> bytes:
        """The payload."""
        return b"\x18" + int4(self.stmt_id) + int2(self.param_id) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> ComStmtSendLongData:
        """Parse."""
        r = Reader(payload, 1)
        stmt_id = r.int4()
        return cls(stmt_id, r.int2(), r.rest())


@dataclass(frozen=True, slots=True)
class ComStmtClose(Message):
    """COM_STMT_CLOSE: forget a statement; no response."""

    stmt_id: int
    CODE: ClassVar[int] = 0x19

    def encode(self) -> bytes:
        """The payload."""
        return b"\x19" + int4(self.stmt_id)

    @classmethod
    def decode(cls, payload: bytes) -> ComStmtClose:
        """Parse."""
        return cls(Reader(payload, 1).int4())


@dataclass(frozen=True, slots=True)
class ComStmtReset(Message):
    """COM_STMT_RESET: drop long data and close the cursor; answered with OK."""

    stmt_id: int
    CODE: ClassVar[int] = 0x1A

    def encode(self) -> bytes:
        """The payload."""
        return b"\x1a" + int4(self.stmt_id)

    @classmethod
    def decode(cls, payload: bytes) -> ComStmtReset:
        """Parse."""
        return cls(Reader(payload, 1).int4())


@dataclass(frozen=True, slots=True)
class ComStmtFetch(Message):
    """COM_STMT_FETCH: ``num_rows`` more rows from the statement's cursor."""

    stmt_id: int
    num_rows: int
    CODE: ClassVar[int] = 0x1C

    def encode(self) -> bytes:
        """The payload."""
        return b"\x1c" + int4(self.stmt_id) + int4(self.num_rows)

    @classmethod
    def decode(cls, payload: bytes) -> ComStmtFetch:
        """Parse."""
        r = Reader(payload, 1)
        stmt_id = r.int4()
        return cls(stmt_id, r.int4())


@dataclass(frozen=True, slots=True)
class UnknownCommand(Message):
    """A command this module does not model (an empty packet reads as code 0, COM_SLEEP)."""

    code: int
    payload: bytes = b""

    def encode(self) -> bytes:
        """The payload."""
        return bytes((self.code,)) + self.payload


CommandMessage = (
    ComQuery
    | ComInitDB
    | ComFieldList
    | ComSetOption
    | ComPing
    | ComQuit
    | ComStatistics
    | ComResetConnection
    | ComChangeUser
    | ComStmtPrepare
    | ComStmtExecute
    | ComStmtSendLongData
    | ComStmtClose
    | ComStmtReset
    | ComStmtFetch
    | UnknownCommand
)

_SIMPLE: Final[dict[int, Callable[[bytes], Message]]] = {
    c.CODE: c.decode
    for c in (
        ComQuery,
        ComInitDB,
        ComFieldList,
        ComSetOption,
        ComPing,
        ComQuit,
        ComStatistics,
        ComResetConnection,
        ComStmtPrepare,
        ComStmtSendLongData,
        ComStmtClose,
        ComStmtReset,
        ComStmtFetch,
    )
}


def decode_command(
    payload: bytes,
    capabilities: int,
    params_for: Callable[[int], tuple[int, tuple[ParamType, ...]]] | None = None,
) -> Message:
    """Decode one command packet.

    ``params_for(stmt_id)`` gives ``(num_params, cached_types)`` for COM_STMT_EXECUTE
    (``(0, ())`` for an unknown statement: the values are then left whole in ``values``).
    """
    if not payload:
        return UnknownCommand(0, b"")
    code = payload[0]
    simple = _SIMPLE.get(code)
    if simple is not None:
        return simple(payload)
    if code == 0x17:
        if len(payload) < 5:
            raise RemoteProtocolError("malformed packet: COM_STMT_EXECUTE too short", _MALFORMED)
        stmt_id = int.from_bytes(payload[1:5], "little")
        num, types = params_for(stmt_id) if params_for is not None else (0, ())
        return ComStmtExecute.decode(payload, num, types)
    if code == 0x11:
        return ComChangeUser.decode(payload, capabilities)
    return UnknownCommand(code, payload[1:])

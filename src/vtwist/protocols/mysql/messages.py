"""MySQL protocol messages other than commands: handshake, auth, OK/ERR/EOF, metadata.

Each message is a frozen, slotted dataclass deriving from ``Message`` with ``encode()``
(the payload, without the 4-byte packet header) and a ``decode(payload, ...)`` classmethod.
Messages whose layout depends on the negotiated capabilities take them as an argument.
Names and messages are ``str`` (UTF-8, with ``surrogateescape`` so any bytes round-trip);
SQL text, auth data, rows and ``info`` strings stay ``bytes``. Decoding never raises
anything but ``RemoteProtocolError``. The client commands live in ``commands`` and are
re-exported here.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

from vtwist.protocols.mysql.commands import (
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    UnknownCommand,
    decode_command,
)
from vtwist.protocols.mysql.constants import Capability, ServerStatus
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    MySQLError,
    RemoteProtocolError,
    sqlstate_for,
)
from vtwist.protocols.mysql.wire import (
    Message,
    Reader,
    decode_attrs,
    encode_attrs,
    from_text,
    int2,
    int4,
    lenenc_int,
    lenenc_str,
    to_text,
)

__all__ = [
    "AuthData",
    "AuthMoreData",
    "AuthSwitchRequest",
    "ColumnDefinition41",
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
    "Eof",
    "Err",
    "HandshakeResponse41",
    "HandshakeV10",
    "LocalInfileData",
    "LocalInfileRequest",
    "Message",
    "Ok",
    "SSLRequest",
    "StatisticsResponse",
    "StmtPrepareOK",
    "UnknownCommand",
    "decode_command",
]

_LONG_PASSWORD: Final = int(Capability.LONG_PASSWORD)
_SECURE: Final = int(Capability.SECURE_CONNECTION)
_PLUGIN_AUTH: Final = int(Capability.PLUGIN_AUTH)
_LENENC_AUTH: Final = int(Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA)
_WITH_DB: Final = int(Capability.CONNECT_WITH_DB)
_ATTRS: Final = int(Capability.CONNECT_ATTRS)
_SSL: Final = int(Capability.SSL)
_SESSION_TRACK: Final = int(Capability.SESSION_TRACK)
_STATUS_WARNINGS: Final = struct.Struct("<HH")
_STATE_CHANGED: Final = int(ServerStatus.SESSION_STATE_CHANGED)
_PROTOCOL_41: Final = int(Capability.PROTOCOL_41)
_MALFORMED: Final = int(ErrorCode.MALFORMED_PACKET)

# What OK/ERR/EOF decoding assumes when the caller has no negotiated capabilities yet.
DEFAULT_CAPS: Final = _PROTOCOL_41 | _SECURE | _PLUGIN_AUTH | _LONG_PASSWORD


_s = to_text
_b = from_text


def _bad(msg: str, code: int = _MALFORMED) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed packet: {msg}", code)


# -- connection phase ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeV10(Message):
    """The server greeting (protocol 10), sent with sequence id 0.

    ``auth_plugin_data`` is the whole scramble (20 bytes for the usual plugins); it is sent
    as 8 bytes, then the rest plus a NUL. ``mariadb_ext_caps`` is MariaDB's extended
    capability word, carried in the last 4 reserved bytes when bit 0 (CLIENT_MYSQL) is clear.
    """

    server_version: str
    connection_id: int
    auth_plugin_data: bytes
    capabilities: int
    charset: int = 45
    status: int = int(ServerStatus.AUTOCOMMIT)
    auth_plugin_name: str = "mysql_native_password"
    mariadb_ext_caps: int = 0

    def encode(self) -> bytes:
        """The greeting payload."""
        caps = self.capabilities
        data = self.auth_plugin_data
        part1 = data[:8].ljust(8, b"\0")
        out = [
            b"\x0a",
            _b(self.server_version),
            b"\0",
            int4(self.connection_id),
            part1,
            b"\0",
            int2(caps & 0xFFFF),
            bytes((self.charset,)),
            int2(self.status),
            int2((caps >> 16) & 0xFFFF),
            bytes((len(data) + 1,)) if caps & _PLUGIN_AUTH else b"\0",
            b"\0" * 6,
            b"\0\0\0\0" if caps & _LONG_PASSWORD else int4(self.mariadb_ext_caps),
        ]
        if caps & _SECURE:
            out.append((data[8:] + b"\0").ljust(13, b"\0"))
        if caps & _PLUGIN_AUTH:
            out.append(_b(self.auth_plugin_name) + b"\0")
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeV10:
        """Parse a greeting; RemoteProtocolError if it is not protocol 10."""
        r = Reader(payload)
        proto = r.int1()
        if proto != 10:
            raise _bad(f"handshake protocol {proto} is not 10", int(ErrorCode.HANDSHAKE_ERROR))
        version = _s(r.nul_str())
        conn_id = r.int4()
        part1 = r.fixed(8)
        r.int1()
        caps = r.int2()
        charset = status = auth_len = ext = 0
        if not r.at_end():
            charset = r.int1()
            status = r.int2()
            caps |= r.int2() << 16
            auth_len = r.int1()
            r.fixed(6)
            ext = r.int4()
            if caps & _LONG_PASSWORD:
                ext = 0
        part2 = b""
        if caps & _SECURE and not r.at_end():
            part2 = r.fixed(min(max(13, auth_len - 8), r.remaining))
            if part2.endswith(b"\0"):
                part2 = part2[:-1]
        plugin = ""
        if caps & _PLUGIN_AUTH and not r.at_end():
            plugin = _s(r.nul_str_or_rest())
        return cls(version, conn_id, part1 + part2, caps, charset, status, plugin, ext)


@dataclass(frozen=True, slots=True)
class SSLRequest(Message):
    """The short response asking to upgrade to TLS (32 bytes, SSL capability set)."""

    capabilities: int
    max_packet_size: int = 16 * 1024 * 1024
    charset: int = 45
    mariadb_ext_caps: int = 0

    LENGTH: ClassVar[int] = 32

    def encode(self) -> bytes:
        """The 32-byte payload."""
        caps = self.capabilities | _SSL
        tail = b"\0\0\0\0" if caps & _LONG_PASSWORD else int4(self.mariadb_ext_caps)
        return int4(caps) + int4(self.max_packet_size) + bytes((self.charset,)) + b"\0" * 19 + tail

    @classmethod
    def decode(cls, payload: bytes) -> SSLRequest:
        """Parse an SSLRequest."""
        r = Reader(payload)
        caps = r.int4()
        max_packet = r.int4()
        charset = r.int1()
        r.fixed(19)
        ext = r.int4()
        return cls(caps, max_packet, charset, 0 if caps & _LONG_PASSWORD else ext)


@dataclass(frozen=True, slots=True)
class HandshakeResponse41(Message):
    """The client's login packet; field layout follows its own ``capabilities``.

    The auth response is length-encoded with PLUGIN_AUTH_LENENC_CLIENT_DATA, 1-byte
    length-prefixed with SECURE_CONNECTION, else NUL-terminated. ``database`` is sent with
    CONNECT_WITH_DB, ``auth_plugin_name`` with PLUGIN_AUTH, ``connect_attrs`` with
    CONNECT_ATTRS. Missing trailing fields decode as empty (some clients omit them).
    """

    capabilities: int
    max_packet_size: int
    charset: int
    user: str
    auth_response: bytes = b""
    database: str = ""
    auth_plugin_name: str = ""
    connect_attrs: Mapping[str, str] = field(default_factory=dict)
    mariadb_ext_caps: int = 0

    def encode(self) -> bytes:
        """The login payload."""
        caps = self.capabilities
        tail = b"\0\0\0\0" if caps & _LONG_PASSWORD else int4(self.mariadb_ext_caps)
        out = [
            int4(caps),
            int4(self.max_packet_size),
            bytes((self.charset,)),
            b"\0" * 19,
            tail,
            _b(self.user),
            b"\0",
        ]
        auth = self.auth_response
        if caps & _LENENC_AUTH:
            out.append(lenenc_str(auth))
        elif caps & _SECURE:
            if len(auth) > 255:
                raise LocalProtocolError("auth response longer than 255 bytes needs LENENC")
            out.append(bytes((len(auth),)) + auth)
        else:
            out.append(auth + b"\0")
        if caps & _WITH_DB:
            out.append(_b(self.database) + b"\0")
        if caps & _PLUGIN_AUTH:
            out.append(_b(self.auth_plugin_name) + b"\0")
        if caps & _ATTRS:
            out.append(encode_attrs(self.connect_attrs))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> HandshakeResponse41:
        """Parse a login packet (RemoteProtocolError if truncated)."""
        r = Reader(payload)
        caps = r.int4()
        max_packet = r.int4()
        charset = r.int1()
        r.fixed(19)
        ext = r.int4()
        user = _s(r.nul_str())
        if caps & _LENENC_AUTH:
            auth = r.lenenc_str()
        elif caps & _SECURE:
            auth = r.fixed(r.int1())
        else:
            auth = r.nul_str_or_rest()
        database = plugin = ""
        attrs: dict[str, str] = {}
        if caps & _WITH_DB and not r.at_end():
            database = _s(r.nul_str_or_rest())
        if caps & _PLUGIN_AUTH and not r.at_end():
            plugin = _s(r.nul_str_or_rest())
        if caps & _ATTRS and not r.at_end():
            attrs = decode_attrs(r)
        return cls(
            caps,
            max_packet,
            charset,
            user,
            auth,
            database,
            plugin,
            attrs,
            0 if caps & _LONG_PASSWORD else ext,
        )


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest(Message):
    """Server → client: switch to ``plugin_name`` with this ``data`` (header 0xFE)."""

    plugin_name: str
    data: bytes = b""

    def encode(self) -> bytes:
        """The payload."""
        return b"\xfe" + _b(self.plugin_name) + b"\0" + self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthSwitchRequest:
        """Parse; a bare 0xFE is the pre-4.1 "old password" switch (empty plugin)."""
        r = Reader(payload)
        if r.int1() != 0xFE:
            raise _bad("auth switch request must start with 0xFE")
        if r.at_end():
            return cls("", b"")
        plugin = _s(r.nul_str_or_rest())
        return cls(plugin, r.rest())


@dataclass(frozen=True, slots=True)
class AuthMoreData(Message):
    """Server → client: more data for the current auth plugin (header 0x01)."""

    data: bytes

    def encode(self) -> bytes:
        """The payload."""
        return b"\x01" + self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthMoreData:
        """Parse."""
        if not payload or payload[0] != 0x01:
            raise _bad("auth more data must start with 0x01")
        return cls(payload[1:])


@dataclass(frozen=True, slots=True)
class AuthData(Message):
    """Client → server: raw auth plugin data (an auth switch response or a reply to more data)."""

    data: bytes

    def encode(self) -> bytes:
        """The payload (the data itself)."""
        return self.data

    @classmethod
    def decode(cls, payload: bytes) -> AuthData:
        """Wrap the payload."""
        return cls(payload)


# -- generic responses ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ok(Message):
    """OK packet. ``info`` is the human-readable string; session-track data is never sent."""

    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = 0
    warnings: int = 0
    info: bytes = b""

    def encode(self, capabilities: int = DEFAULT_CAPS, header: int = 0x00) -> bytes:
        """The payload; ``header=0xFE`` makes the OK that ends a result set (DEPRECATE_EOF)."""
        status = self.status & ~_STATE_CHANGED
        head = (
            bytes((header,))
            + lenenc_int(self.affected_rows)
            + lenenc_int(self.last_insert_id)
            + int2(status)
            + int2(self.warnings)
        )
        if capabilities & _SESSION_TRACK:
            return head + lenenc_str(self.info) if self.info else head
        return head + self.info

    @classmethod
    def decode(cls, payload: bytes, capabilities: int = DEFAULT_CAPS) -> Ok:
        """Parse an OK with header 0x00 or 0xFE."""
        if (
            len(payload) >= 7
            and payload[1] < 0xFB
            and payload[2] < 0xFB
            and (payload[0] == 0x00 or payload[0] == 0xFE)
            and not capabilities & _SESSION_TRACK
        ):
            # The hot path (every result set ends with one under DEPRECATE_EOF): one-byte
            # counts, then status and warnings, then the info string.
            status, warnings = _STATUS_WARNINGS.unpack_from(payload, 3)
            return cls(payload[1], payload[2], status, warnings, payload[7:])
        r = Reader(payload)
        header = r.int1()
        if header not in (0x00, 0xFE):
            raise _bad(f"OK packet header 0x{header:02X}")
        affected = r.lenenc_int()
        insert_id = r.lenenc_int()
        status = warnings = 0
        if not r.at_end():
            status = r.int2()
            warnings = r.int2()
        if capabilities & _SESSION_TRACK:
            # Session state changes (when present) follow; vtwist does not use them.
            info = r.lenenc_str() if not r.at_end() else b""
        else:
            info = r.rest()
        return cls(affected, insert_id, status, warnings, info)


@dataclass(frozen=True, slots=True)
class Err(Message):
    """ERR packet: ``0xFF code '#' sqlstate message`` (message UTF-8)."""

    code: int
    message: str
    sqlstate: str = ""

    def __post_init__(self) -> None:
        if not self.sqlstate:
            object.__setattr__(self, "sqlstate", sqlstate_for(self.code))

    def encode(self) -> bytes:
        """The payload."""
        state = self.sqlstate.encode("ascii", "replace")[:5].ljust(5, b"0")
        return b"\xff" + int2(self.code) + b"#" + state + _b(self.message)

    @classmethod
    def decode(cls, payload: bytes) -> Err:
        """Parse an ERR, including the pre-4.1 form without ``#sqlstate``."""
        r = Reader(payload)
        if r.int1() != 0xFF:
            raise _bad("ERR packet must start with 0xFF")
        code = r.int2()
        if not r.at_end() and r.peek() == 0x23:
            r.pos += 1
            state = r.fixed(5).decode("ascii", "replace")
        else:
            state = "HY000"
        return cls(code, _s(r.rest()), state)

    @classmethod
    def from_error(cls, error: MySQLError) -> Err:
        """The ERR packet reporting ``error``."""
        return cls(error.code, error.message, error.sqlstate)

    def to_error(self) -> MySQLError:
        """This ERR as an exception."""
        return MySQLError(self.code, self.message, self.sqlstate)


@dataclass(frozen=True, slots=True)
class Eof(Message):
    """Classic EOF packet (0xFE, warnings, status; always shorter than 9 bytes)."""

    warnings: int = 0
    status: int = 0

    def encode(self) -> bytes:
        """The payload."""
        return b"\xfe" + int2(self.warnings) + int2(self.status)

    @classmethod
    def decode(cls, payload: bytes) -> Eof:
        """Parse; a bare 0xFE (pre-4.1) has no warnings or status."""
        if not payload or payload[0] != 0xFE or len(payload) >= 9:
            raise _bad("EOF packet must start with 0xFE and be shorter than 9 bytes")
        if len(payload) < 5:
            return cls(0, 0)
        r = Reader(payload, 1)
        return cls(r.int2(), r.int2())


# -- metadata --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnDefinition41(Message):
    """A column definition (also a prepared statement's parameter definition).

    ``has_default``/``default_value`` carry the default that COM_FIELD_LIST responses
    append (``default_value=None`` with ``has_default`` is a NULL default). A decoded
    definition remembers its exact payload (``raw``) so a relay re-sends it unchanged;
    ``dataclasses.replace`` gives a copy without it, which is re-encoded.
    """

    name: str
    column_type: int
    charset: int = 63
    column_length: int = 0
    flags: int = 0
    decimals: int = 0
    schema: str = ""
    table: str = ""
    org_table: str = ""
    org_name: str = ""
    catalog: str = "def"
    has_default: bool = False
    default_value: bytes | None = None
    _raw: bytes = field(default=b"", init=False, repr=False, compare=False)

    @property
    def raw(self) -> bytes:
        """The payload this definition was decoded from (empty if built locally)."""
        return self._raw

    def encode(self) -> bytes:
        """The payload (the decoded bytes when available)."""
        if self._raw:
            return self._raw
        out = [
            lenenc_str(_b(self.catalog)),
            lenenc_str(_b(self.schema)),
            lenenc_str(_b(self.table)),
            lenenc_str(_b(self.org_table)),
            lenenc_str(_b(self.name)),
            lenenc_str(_b(self.org_name)),
            b"\x0c",
            int2(self.charset),
            int4(self.column_length),
            bytes((self.column_type, self.flags & 0xFF, (self.flags >> 8) & 0xFF)),
            bytes((self.decimals,)),
            b"\0\0",
        ]
        if self.has_default:
            out.append(b"\xfb" if self.default_value is None else lenenc_str(self.default_value))
        return b"".join(out)

    @classmethod
    def decode(cls, payload: bytes) -> ColumnDefinition41:
        """Parse a column definition (with an optional trailing default value)."""
        r = Reader(payload)
        catalog = _s(r.lenenc_str())
        schema = _s(r.lenenc_str())
        table = _s(r.lenenc_str())
        org_table = _s(r.lenenc_str())
        name = _s(r.lenenc_str())
        org_name = _s(r.lenenc_str())
        fixed_len = r.lenenc_int()
        if fixed_len < 10:
            raise _bad(f"column definition fixed part of {fixed_len} bytes")
        end = r.pos + fixed_len
        charset = r.int2()
        length = r.int4()
        ctype = r.int1()
        flags = r.int2()
        decimals = r.int1()
        r.pos = min(end, len(payload))
        has_default = not r.at_end()
        default: bytes | None = None
        if has_default:
            if r.peek() == 0xFB:
                r.pos += 1
            else:
                default = r.lenenc_str()
        col = cls(
            name,
            ctype,
            charset,
            length,
            flags,
            decimals,
            schema,
            table,
            org_table,
            org_name,
            catalog,
            has_default,
            default,
        )
        object.__setattr__(col, "_raw", bytes(payload))
        return col


@dataclass(frozen=True, slots=True)
class StmtPrepareOK(Message):
    """COM_STMT_PREPARE_OK: statement id and how many columns and parameters it has."""

    statement_id: int
    num_columns: int
    num_params: int
    warnings: int = 0

    def encode(self) -> bytes:
        """The 12-byte payload."""
        return (
            b"\x00"
            + int4(self.statement_id)
            + int2(self.num_columns)
            + int2(self.num_params)
            + b"\x00"
            + int2(self.warnings)
        )

    @classmethod
    def decode(cls, payload: bytes) -> StmtPrepareOK:
        """Parse (the warning count is optional, as in very old servers)."""
        r = Reader(payload)
        if r.int1() != 0x00:
            raise _bad("COM_STMT_PREPARE_OK must start with 0x00")
        stmt_id = r.int4()
        ncols = r.int2()
        nparams = r.int2()
        warnings = 0
        if r.remaining >= 3:
            r.int1()
            warnings = r.int2()
        return cls(stmt_id, ncols, nparams, warnings)


@dataclass(frozen=True, slots=True)
class LocalInfileRequest(Message):
    """Server → client: send the contents of ``filename`` (header 0xFB)."""

    filename: str

    def encode(self) -> bytes:
        """The payload."""
        return b"\xfb" + _b(self.filename)

    @classmethod
    def decode(cls, payload: bytes) -> LocalInfileRequest:
        """Parse."""
        if not payload or payload[0] != 0xFB:
            raise _bad("LOCAL INFILE request must start with 0xFB")
        return cls(_s(payload[1:]))


@dataclass(frozen=True, slots=True)
class LocalInfileData(Message):
    """Client → server: one packet of a LOCAL INFILE file; empty data ends the file."""

    data: bytes

    def encode(self) -> bytes:
        """The payload (the data itself)."""
        return self.data


@dataclass(frozen=True, slots=True)
class StatisticsResponse(Message):
    """The reply to COM_STATISTICS: a bare human-readable string."""

    text: str

    def encode(self) -> bytes:
        """The payload."""
        return _b(self.text)

    @classmethod
    def decode(cls, payload: bytes) -> StatisticsResponse:
        """Parse."""
        return cls(_s(payload))

"""MySQL errors as both sides see them: codes, SQLSTATEs, and the exceptions carrying them.

``MySQLError`` is what a server turns into an ERR packet and what a client raises when it
reads one. ``ProtocolError`` subclasses say who broke the protocol: ``LocalProtocolError``
is our own misuse of the state machine (a bug), ``RemoteProtocolError`` means the peer sent
something invalid (answer with ERR or close the connection).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Error numbers vtwist sends or must recognise (MySQL/MariaDB ``ER_*``)."""

    CON_COUNT_ERROR = 1040
    HANDSHAKE_ERROR = 1043
    DBACCESS_DENIED = 1044
    DB_CREATE_EXISTS = 1007
    DB_DROP_EXISTS = 1008
    ACCESS_DENIED = 1045
    NO_DB = 1046
    UNKNOWN_COM = 1047
    BAD_DB = 1049
    SERVER_SHUTDOWN = 1053
    PARSE_ERROR = 1064
    EMPTY_QUERY = 1065
    NO_SUCH_THREAD = 1094
    UNKNOWN_ERROR = 1105
    NOT_ALLOWED_COMMAND = 1148
    NET_PACKET_TOO_LARGE = 1153
    NET_PACKETS_OUT_OF_ORDER = 1156
    NET_READ_ERROR = 1158
    NET_READ_INTERRUPTED = 1159
    NET_ERROR_ON_WRITE = 1160
    NET_WRITE_INTERRUPTED = 1161
    TOO_MANY_USER_CONNECTIONS = 1203
    LOCK_WAIT_TIMEOUT = 1205
    LOCK_DEADLOCK = 1213
    UNKNOWN_STMT_HANDLER = 1243
    WRONG_ARGUMENTS = 1210
    NOT_SUPPORTED_AUTH_MODE = 1251
    UNSUPPORTED_PS = 1295
    NOT_SUPPORTED_YET = 1235
    QUERY_INTERRUPTED = 1317
    SP_WRONG_NO_OF_ARGS = 1318
    OPTION_PREVENTS_STATEMENT = 1290
    UNKNOWN_SYSTEM_VARIABLE = 1193
    SP_BADSELECT = 1312
    WRONG_VALUE_FOR_VAR = 1231
    TOO_MANY_ROWS = 1172
    MALFORMED_PACKET = 1835
    STATEMENT_TIMEOUT = 1969  # MariaDB ER_STATEMENT_TIMEOUT
    SECURE_TRANSPORT_REQUIRED = 3159
    # Client-side errors (CR_*), raised by vtwist's own client.
    CR_UNKNOWN_ERROR = 2000
    CR_CONNECTION_ERROR = 2002
    CR_CONN_HOST_ERROR = 2003
    CR_SERVER_GONE_ERROR = 2006
    CR_SERVER_LOST = 2013
    CR_COMMANDS_OUT_OF_SYNC = 2014
    CR_MALFORMED_PACKET = 2027


# The SQLSTATE that MySQL pairs with each code above (HY000 when not listed).
SQLSTATE: dict[int, str] = {
    ErrorCode.CON_COUNT_ERROR: "08004",
    ErrorCode.HANDSHAKE_ERROR: "08S01",
    ErrorCode.DBACCESS_DENIED: "42000",
    ErrorCode.ACCESS_DENIED: "28000",
    ErrorCode.NO_DB: "3D000",
    ErrorCode.UNKNOWN_COM: "08S01",
    ErrorCode.BAD_DB: "42000",
    ErrorCode.SERVER_SHUTDOWN: "08S01",
    ErrorCode.PARSE_ERROR: "42000",
    ErrorCode.EMPTY_QUERY: "42000",
    ErrorCode.NOT_ALLOWED_COMMAND: "42000",
    ErrorCode.NET_PACKET_TOO_LARGE: "08S01",
    ErrorCode.NET_PACKETS_OUT_OF_ORDER: "08S01",
    ErrorCode.NET_READ_ERROR: "08S01",
    ErrorCode.NET_READ_INTERRUPTED: "08S01",
    ErrorCode.NET_ERROR_ON_WRITE: "08S01",
    ErrorCode.NET_WRITE_INTERRUPTED: "08S01",
    ErrorCode.TOO_MANY_USER_CONNECTIONS: "42000",
    ErrorCode.LOCK_WAIT_TIMEOUT: "HY000",
    ErrorCode.LOCK_DEADLOCK: "40001",
    ErrorCode.NOT_SUPPORTED_AUTH_MODE: "08004",
    ErrorCode.QUERY_INTERRUPTED: "70100",
    ErrorCode.SP_WRONG_NO_OF_ARGS: "42000",
    ErrorCode.UNKNOWN_SYSTEM_VARIABLE: "HY000",
    ErrorCode.WRONG_VALUE_FOR_VAR: "42000",
    ErrorCode.TOO_MANY_ROWS: "42000",
    ErrorCode.MALFORMED_PACKET: "HY000",
    ErrorCode.STATEMENT_TIMEOUT: "70100",
    ErrorCode.SECURE_TRANSPORT_REQUIRED: "HY000",
}


def is_client_error(code: int) -> bool:
    """True for a client-side error (CR_*, 2000-2999: the link to the server failed), false
    for the server's own errors, including MySQL's and MariaDB's above 2999 (3572 NOWAIT,
    4025 CHECK constraint failed, ...)."""
    return 2000 <= code < 3000


def sqlstate_for(code: int) -> str:
    """The SQLSTATE MySQL uses for ``code`` (``HY000`` when it has none of its own)."""
    return SQLSTATE.get(code, "HY000")


class MySQLError(Exception):
    """A MySQL error: what a server sends as ERR, what a client raises on receiving one."""

    def __init__(self, code: int, message: str, sqlstate: str | None = None) -> None:
        self.code = int(code)
        self.sqlstate = sqlstate if sqlstate is not None else sqlstate_for(self.code)
        self.message = message
        super().__init__(self.code, self.message)

    def __str__(self) -> str:
        return f"({self.code}, {self.sqlstate!r}) {self.message}"

    def __repr__(self) -> str:
        return f"MySQLError({self.code}, {self.message!r}, {self.sqlstate!r})"


class ProtocolError(Exception):
    """The protocol was broken; see the subclasses for who broke it."""


class LocalProtocolError(ProtocolError):
    """Our own code used the state machine wrongly (sent something not allowed now)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes the protocol does not allow here (malformed, out of sequence…).

    ``error_code`` is the MySQL error to answer with when the connection can still say so.
    """

    def __init__(self, message: str, error_code: int = ErrorCode.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.error_code = error_code


class PacketTooLargeError(RemoteProtocolError):
    """A packet (after reassembly) exceeds the configured maximum packet size."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Got a packet bigger than 'max_allowed_packet' bytes ({size} > {limit})",
            ErrorCode.NET_PACKET_TOO_LARGE,
        )
        self.size = size
        self.limit = limit

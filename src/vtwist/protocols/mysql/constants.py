"""Numbers of the MySQL client/server protocol: capabilities, status flags, commands, types.

Only numbers live here; the codecs that use them are in ``packets``, ``messages``,
``values`` and ``connection``. Nothing here imports Twisted.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

MAX_PAYLOAD = 0xFFFFFF  # a payload this long continues in the next packet


class Capability(IntFlag):
    """Client/server capability bits (the 32 MySQL bits; MariaDB's extended bits are unused)."""

    LONG_PASSWORD = 1 << 0  # MariaDB calls it CLIENT_MYSQL; must be set (see reference notes)
    FOUND_ROWS = 1 << 1
    LONG_FLAG = 1 << 2
    CONNECT_WITH_DB = 1 << 3
    NO_SCHEMA = 1 << 4
    COMPRESS = 1 << 5
    ODBC = 1 << 6
    LOCAL_FILES = 1 << 7
    IGNORE_SPACE = 1 << 8
    PROTOCOL_41 = 1 << 9
    INTERACTIVE = 1 << 10
    SSL = 1 << 11
    IGNORE_SIGPIPE = 1 << 12
    TRANSACTIONS = 1 << 13
    RESERVED = 1 << 14
    SECURE_CONNECTION = 1 << 15
    MULTI_STATEMENTS = 1 << 16
    MULTI_RESULTS = 1 << 17
    PS_MULTI_RESULTS = 1 << 18
    PLUGIN_AUTH = 1 << 19
    CONNECT_ATTRS = 1 << 20
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    SESSION_TRACK = 1 << 23
    DEPRECATE_EOF = 1 << 24
    OPTIONAL_RESULTSET_METADATA = 1 << 25
    ZSTD_COMPRESSION = 1 << 26
    QUERY_ATTRIBUTES = 1 << 27
    MULTI_FACTOR_AUTHENTICATION = 1 << 28
    PROGRESS_OBSOLETE = 1 << 29  # MariaDB CLIENT_PROGRESS
    SSL_VERIFY_SERVER_CERT = 1 << 30
    REMEMBER_OPTIONS = 1 << 31


# What the vtwist server advertises (the list; never COMPRESS, QUERY_ATTRIBUTES or
# SESSION_TRACK). SSL is added only when a TLS context is configured.
SERVER_CAPABILITIES = (
    Capability.LONG_PASSWORD
    | Capability.FOUND_ROWS
    | Capability.LONG_FLAG
    | Capability.CONNECT_WITH_DB
    | Capability.PROTOCOL_41
    | Capability.TRANSACTIONS
    | Capability.SECURE_CONNECTION
    | Capability.LOCAL_FILES  # (the gate asks only for the file a LOAD DATA LOCAL names)
    | Capability.MULTI_STATEMENTS
    | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS
    | Capability.PLUGIN_AUTH
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CONNECT_ATTRS
    | Capability.DEPRECATE_EOF
)

# What the vtwist client asks of mysqld (it adds CONNECT_WITH_DB and SSL when used).
CLIENT_CAPABILITIES = (
    Capability.LONG_PASSWORD
    | Capability.LONG_FLAG
    | Capability.PROTOCOL_41
    | Capability.TRANSACTIONS
    | Capability.SECURE_CONNECTION
    | Capability.MULTI_STATEMENTS
    | Capability.MULTI_RESULTS
    | Capability.PS_MULTI_RESULTS
    | Capability.PLUGIN_AUTH
    | Capability.PLUGIN_AUTH_LENENC_CLIENT_DATA
    | Capability.CONNECT_ATTRS
    | Capability.DEPRECATE_EOF
)


class ServerStatus(IntFlag):
    """Status flags carried by OK and EOF packets."""

    IN_TRANS = 0x0001
    AUTOCOMMIT = 0x0002
    MORE_RESULTS_EXISTS = 0x0008
    NO_GOOD_INDEX_USED = 0x0010
    NO_INDEX_USED = 0x0020
    CURSOR_EXISTS = 0x0040
    LAST_ROW_SENT = 0x0080
    DB_DROPPED = 0x0100
    NO_BACKSLASH_ESCAPES = 0x0200
    METADATA_CHANGED = 0x0400
    QUERY_WAS_SLOW = 0x0800
    PS_OUT_PARAMS = 0x1000
    IN_TRANS_READONLY = 0x2000
    SESSION_STATE_CHANGED = 0x4000


class Command(IntEnum):
    """The first byte of a command-phase packet."""

    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    CREATE_DB = 0x05
    DROP_DB = 0x06
    REFRESH = 0x07
    SHUTDOWN = 0x08
    STATISTICS = 0x09
    PROCESS_INFO = 0x0A
    CONNECT = 0x0B
    PROCESS_KILL = 0x0C
    DEBUG = 0x0D
    PING = 0x0E
    TIME = 0x0F
    DELAYED_INSERT = 0x10
    CHANGE_USER = 0x11
    BINLOG_DUMP = 0x12
    TABLE_DUMP = 0x13
    CONNECT_OUT = 0x14
    REGISTER_SLAVE = 0x15
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    DAEMON = 0x1D
    BINLOG_DUMP_GTID = 0x1E
    RESET_CONNECTION = 0x1F


class SetOption(IntEnum):
    """Arguments of COM_SET_OPTION."""

    MULTI_STATEMENTS_ON = 0
    MULTI_STATEMENTS_OFF = 1


class CursorType(IntFlag):
    """COM_STMT_EXECUTE flags."""

    NO_CURSOR = 0x00
    READ_ONLY = 0x01
    FOR_UPDATE = 0x02
    SCROLLABLE = 0x04


class ColumnType(IntEnum):
    """Column and parameter types (``enum_field_types``)."""

    DECIMAL = 0x00
    TINY = 0x01
    SHORT = 0x02
    LONG = 0x03
    FLOAT = 0x04
    DOUBLE = 0x05
    NULL = 0x06
    TIMESTAMP = 0x07
    LONGLONG = 0x08
    INT24 = 0x09
    DATE = 0x0A
    TIME = 0x0B
    DATETIME = 0x0C
    YEAR = 0x0D
    NEWDATE = 0x0E
    VARCHAR = 0x0F
    BIT = 0x10
    TIMESTAMP2 = 0x11
    DATETIME2 = 0x12
    TIME2 = 0x13
    JSON = 0xF5
    NEWDECIMAL = 0xF6
    ENUM = 0xF7
    SET = 0xF8
    TINY_BLOB = 0xF9
    MEDIUM_BLOB = 0xFA
    LONG_BLOB = 0xFB
    BLOB = 0xFC
    VAR_STRING = 0xFD
    STRING = 0xFE
    GEOMETRY = 0xFF


class ColumnFlag(IntFlag):
    """Column definition flags."""

    NOT_NULL = 0x0001
    PRI_KEY = 0x0002
    UNIQUE_KEY = 0x0004
    MULTIPLE_KEY = 0x0008
    BLOB = 0x0010
    UNSIGNED = 0x0020
    ZEROFILL = 0x0040
    BINARY = 0x0080
    ENUM = 0x0100
    AUTO_INCREMENT = 0x0200
    TIMESTAMP = 0x0400
    SET = 0x0800
    NO_DEFAULT_VALUE = 0x1000
    ON_UPDATE_NOW = 0x2000
    NUM = 0x8000


# In COM_STMT_EXECUTE parameter types, the second byte's high bit marks an unsigned integer.
PARAM_UNSIGNED = 0x80

# Character sets / collations by id (the handshake and column definitions carry the id).
CHARSET_UTF8_GENERAL_CI = 33
CHARSET_UTF8MB4_GENERAL_CI = 45
CHARSET_BINARY = 63
CHARSET_UTF8MB4_0900_AI_CI = 255

# Auth plugin names.
NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
CLEAR_PASSWORD = "mysql_clear_password"

"""The vttablet configuration: every key of ``etc/vttablet.toml``, declared once.

``SCHEMA`` is what ``twistd vttablet`` loads (file, then flags: ``pool.query.size`` is
``--pool-query-size``) and what ``etc/vttablet.toml`` is generated from::

    python -m vtwist.config write vtwist.tablet.config:SCHEMA etc/vttablet.toml

The health, publication and role keys (``health.*``, ``publish.*``, ``role.*``) are owned by
``health_keys`` and included as they are. Secrets: the MySQL passwords may be given in the
file, but ``mysql.app_password_file``/``mysql.dba_password_file`` or the environment
(``VTWIST_MYSQL_APP_PASSWORD``/``VTWIST_MYSQL_DBA_PASSWORD``) keep them out of flags and
process listings; ``mysql_password`` says which one wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vtwist.config import (
    REQUIRED,
    ChoiceOption,
    Config,
    DurationOption,
    EndpointOption,
    IntOption,
    ListOption,
    Option,
    PathOption,
    Schema,
    StrOption,
)
from vtwist.protocols.tabletrpc_codec import DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT
from vtwist.tablet.health_keys import HEALTH_CHECKS, HEALTH_OPTIONS
from vtwist.topo.config_checks import check_topo_address
from vtwist.topo.errors import ValidationError
from vtwist.topo.names import (
    alias_cell,
    validate_cell_name,
    validate_keyspace_name,
    validate_shard_name,
    validate_tablet_alias,
)

#: Environment variables read when the file and the password-file keys give no password.
ENV_APP_PASSWORD = "VTWIST_MYSQL_APP_PASSWORD"
ENV_DBA_PASSWORD = "VTWIST_MYSQL_DBA_PASSWORD"
ENV_REPL_PASSWORD = "VTWIST_MYSQL_REPL_PASSWORD"


def _validator(fn: Callable[[str], object]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            fn(value)
        except ValidationError as e:
            return str(e)
        return None

    return check


def _check_patterns(patterns: tuple[str, ...]) -> str | None:
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            return f"item {i} ({pattern!r}) is not a valid regular expression: {e}"
    return None


def _check_tables(tables: tuple[str, ...]) -> str | None:
    for name in tables:
        if not re.fullmatch(r"[A-Za-z0-9_$]+(\.[A-Za-z0-9_$]+)?", name):
            return f"{name!r} is not a table name (TABLE or DATABASE.TABLE, no quotes)"
    return None


# --- identity -------------------------------------------------------------------------------
ALIAS = StrOption(
    "alias",
    REQUIRED,
    example="zone1-0000000100",
    check=_validator(validate_tablet_alias),
    doc="This tablet's alias, <cell>-<uid>: its name in the topo and on status pages",
)
CELL = StrOption(
    "cell",
    "",
    doc="The tablet's cell; empty means the cell part of the alias (they must agree)",
)
KEYSPACE = StrOption(
    "keyspace",
    REQUIRED,
    example="commerce",
    check=_validator(validate_keyspace_name),
    doc="The keyspace this tablet serves",
)
SHARD = StrOption(
    "shard",
    "0",
    check=_validator(validate_shard_name),
    doc="The shard this tablet serves: '0' for an unsharded keyspace, or a range like '-80'",
)
TABLET_TYPE = ChoiceOption(
    "tablet_type",
    "replica",
    choices=("primary", "replica", "rdonly"),
    doc="Initial tablet type; the shard record (primary alias and term) decides after start",
)
HOSTNAME = StrOption(
    "hostname",
    "127.0.0.1",
    doc="Host name or address published in the topo, where gates reach this tablet",
)

# --- mysqld ---------------------------------------------------------------------------------
MYSQL_HOST = StrOption("mysql.host", "127.0.0.1", doc="Address of the local mysqld (TCP)")
MYSQL_PORT = IntOption(
    "mysql.port",
    3306,
    min=1,
    max=65535,
    doc="TCP port of the local mysqld; published in the topo (replicas replicate from it), "
    "also when the tablet itself connects over mysql.socket",
)
MYSQL_SOCKET = PathOption(
    "mysql.socket",
    "",
    doc="Unix socket of the local mysqld; when set the tablet's own connections use it "
    "instead of host and port (cheaper per statement than loopback TCP)",
)
MYSQL_DATABASE = StrOption(
    "mysql.database",
    "",
    doc="Default database of every connection; empty means the keyspace name",
)
MYSQL_CHARSET = ChoiceOption(
    "mysql.charset",
    "utf8mb4",
    choices=("utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"),
    doc="Character set of the connections to mysqld",
)
MYSQL_CONNECT_TIMEOUT = DurationOption(
    "mysql.connect_timeout",
    5.0,
    min=0.01,
    doc="Longest time to open and log in one connection to mysqld",
)
APP_USER = StrOption(
    "mysql.app_user", "vt_app", doc="MySQL user of the query and transaction pools"
)
APP_PASSWORD = StrOption(
    "mysql.app_password",
    "",
    secret=True,
    doc="Password of mysql.app_user (prefer mysql.app_password_file or the environment)",
)
APP_PASSWORD_FILE = PathOption(
    "mysql.app_password_file",
    "",
    must_exist=True,
    doc="File whose first line is the password of mysql.app_user; wins over mysql.app_password",
)
DBA_USER = StrOption(
    "mysql.dba_user",
    "vt_dba",
    doc="MySQL user of the dba pool (KILL QUERY, health probes, read_only changes)",
)
DBA_PASSWORD = StrOption(
    "mysql.dba_password",
    "",
    secret=True,
    doc="Password of mysql.dba_user (prefer mysql.dba_password_file or the environment)",
)
DBA_PASSWORD_FILE = PathOption(
    "mysql.dba_password_file",
    "",
    must_exist=True,
    doc="File whose first line is the password of mysql.dba_user; wins over mysql.dba_password",
)

# --- replication (tablet-manager actions of reparents and vtorc) ----------------------------
REPL_USER = StrOption(
    "replication.user",
    "vt_repl",
    doc="MySQL user a replica of this shard logs in as on the primary (CHANGE MASTER TO)",
)
REPL_PASSWORD = StrOption(
    "replication.password",
    "",
    secret=True,
    doc="Password of replication.user (prefer replication.password_file or the environment)",
)
REPL_PASSWORD_FILE = PathOption(
    "replication.password_file",
    "",
    must_exist=True,
    doc="File whose first line is the password of replication.user; wins over replication.password",
)
REPL_NET_TIMEOUT = IntOption(
    "replication.net_timeout",
    2,
    min=1,
    max=3600,
    doc="slave_net_timeout set on mysqld when it is pointed at a primary: seconds without "
    "data before a replica reconnects (and vtorc sees a dead primary confirmed by it); it "
    "also bounds how long stopping replication from a frozen primary takes",
)
REPL_HEARTBEAT = DurationOption(
    "replication.heartbeat_interval",
    0.5,
    min=0.1,
    max=1800.0,
    doc="MASTER_HEARTBEAT_PERIOD of the replication stream; below replication.net_timeout",
)
MANAGER_LOCK_WAIT = IntOption(
    "manager.lock_wait_timeout",
    5,
    min=1,
    max=3600,
    doc="Longest wait (seconds) of a read_only change or a replication command behind "
    "other sessions' locks, during a reparent",
)

# --- pools ----------------------------------------------------------------------------------
QUERY_POOL_SIZE = IntOption(
    "pool.query.size",
    16,
    min=1,
    max=4096,
    doc="Connections of the query pool (autocommit); as many again for the query_found_rows "
    "pool of clients that asked for CLIENT_FOUND_ROWS (none opened until one comes): count "
    "both in mysqld's max_connections",
)
QUERY_POOL_WAIT = DurationOption(
    "pool.query.wait_timeout",
    5.0,
    min=0.001,
    doc="Longest wait for a query pool connection before ERROR 1203",
)
QUERY_POOL_WAITERS = IntOption(
    "pool.query.max_waiters",
    1000,
    min=0,
    doc="Requests that may queue for the query pool; beyond it ERROR 1203 at once",
)
TX_POOL_SIZE = IntOption(
    "pool.transaction.size",
    20,
    min=1,
    max=4096,
    doc="Connections of the transaction pool (transactions and reserved connections); as "
    "many again for transaction_found_rows, as for the query pool",
)
TX_POOL_WAIT = DurationOption(
    "pool.transaction.wait_timeout",
    1.0,
    min=0.001,
    doc="Longest wait for a transaction pool connection before ERROR 1203",
)
TX_POOL_WAITERS = IntOption(
    "pool.transaction.max_waiters",
    1000,
    min=0,
    doc="Begins and reserves that may queue for the transaction pool",
)
DBA_POOL_SIZE = IntOption(
    "pool.dba.size", 4, min=1, max=256, doc="Connections of the dba pool (kills, health probes)"
)
DBA_POOL_WAIT = DurationOption(
    "pool.dba.wait_timeout",
    2.0,
    min=0.001,
    doc="Longest wait for a dba pool connection",
)
DBA_POOL_WAITERS = IntOption(
    "pool.dba.max_waiters", 100, min=0, doc="Kills and probes that may queue for the dba pool"
)
POOL_IDLE_TIMEOUT = DurationOption(
    "pool.idle_timeout",
    600.0,
    min=1.0,
    doc="A pooled connection unused this long is closed (every pool)",
)
POOL_MAX_LIFETIME = DurationOption(
    "pool.max_lifetime",
    3600.0,
    min=1.0,
    doc="A pooled connection is closed (and replaced) after this long (every pool)",
)
POOL_PING_AFTER = DurationOption(
    "pool.ping_after",
    5.0,
    doc="A connection idle longer than this is pinged before it is lent out",
)

# --- query policies -------------------------------------------------------------------------
QUERY_TIMEOUT = DurationOption(
    "query.timeout",
    30.0,
    min=0.001,
    doc="A statement running longer is killed on mysqld (KILL QUERY); the caller gets 1317",
)
STREAM_TIMEOUT = DurationOption(
    "query.stream_timeout",
    0.0,
    doc="Like query.timeout for streamed results; 0 means only the RPC deadline applies",
)
KILL_GRACE = DurationOption(
    "query.kill_grace",
    5.0,
    min=0.01,
    doc="A killed statement still running after this long gets its connection closed",
)
MAX_RESULT_ROWS = IntOption(
    "query.max_result_rows",
    10000,
    min=1,
    doc="A non-streamed result with more rows fails with ERROR 1104 'Row count exceeded'",
)
WARN_RESULT_ROWS = IntOption(
    "query.warn_result_rows",
    5000,
    min=0,
    doc="A result with more rows is logged and counted (metric); 0 disables the warning",
)
MAX_WARNINGS = IntOption(
    "query.max_warnings",
    64,
    min=0,
    max=65535,
    doc="After a statement with warnings, at most this many rows of SHOW WARNINGS are fetched "
    "on its connection and sent to the gate (which answers SHOW WARNINGS); 0 fetches none",
)
DENIED_PATTERNS = ListOption(
    "query.denylist_patterns",
    (),
    check=_check_patterns,
    doc="Regular expressions (Python syntax, case-insensitive); a matching statement is refused",
)
DENIED_TABLES = ListOption(
    "query.denylist_tables",
    (),
    check=_check_tables,
    doc="Tables (TABLE or DB.TABLE) no statement may name; such statements are refused",
)
TX_TIMEOUT = DurationOption(
    "transaction.timeout",
    30.0,
    min=0.01,
    doc="A transaction idle this long (no statement) is rolled back and its connection freed",
)
RESERVED_IDLE_TIMEOUT = DurationOption(
    "reserved.idle_timeout",
    1800.0,
    min=0.01,
    doc="A reserved connection (no transaction) idle this long is released",
)
SHUTDOWN_GRACE = DurationOption(
    "shutdown.grace_period",
    3.0,
    min=0.0,
    doc="At stop (SIGTERM), once the gates heard that the tablet stops serving: how long "
    "statements running and transactions open may go on to their end (new ones are "
    "refused); then what is left is rolled back",
)
MAX_ENDED_IDS = IntOption(
    "transaction.remember_ended",
    1000,
    min=0,
    doc="Ended transaction/reserved ids remembered to explain later use of them",
)

# --- listeners, topo ------------------------------------------------------------------------
RPC_LISTEN = EndpointOption(
    "rpc.listen",
    "tcp:16100:interface=127.0.0.1",
    doc="Gate RPC listener (a Twisted endpoint; ssl:... for TLS); tcp:0 picks a free port",
)
RPC_MAX_INFLIGHT = IntOption(
    "rpc.max_inflight", 1024, min=1, doc="Requests in flight per gate connection"
)
RPC_MAX_FRAME = IntOption(
    "rpc.max_frame_size",
    DEFAULT_MAX_FRAME_SIZE,
    min=64 * 1024,
    max=MAX_FRAME_SIZE_LIMIT,
    doc="Largest RPC frame (bytes): it bounds a statement from a gate (keep it above mysqld's "
    "max_allowed_packet) and a non-streamed result",
)
RPC_DEFAULT_TIMEOUT = DurationOption(
    "rpc.default_timeout",
    30.0,
    min=0.001,
    doc="Deadline of a request the gate sent without one",
)
RPC_MAX_TIMEOUT = DurationOption(
    "rpc.max_timeout", 3600.0, min=0.001, doc="Longest deadline accepted from a gate"
)
RPC_HEALTH_KEEPALIVE = DurationOption(
    "rpc.health_keepalive",
    1.0,
    doc="A gate's health stream hears from the tablet at least this often, changed or not; "
    "a gate takes a stream silent past its discovery.health_timeout for a stalled tablet "
    "(0: only changes are sent, and gates never conclude that)",
)
HTTP_LISTEN = EndpointOption(
    "http.listen",
    "tcp:15100:interface=127.0.0.1",
    doc="HTTP listener for /metrics, /debug/health and /debug/status (loopback by default)",
)
TOPO_ADDRESS = StrOption(
    "topo.address",
    REQUIRED,
    example="zk:127.0.0.1:2181/vtwist",
    check=check_topo_address,
    doc="Topo server: zk:HOST:PORT[,HOST:PORT...][/ROOT] (memory: for tests)",
)
TOPO_SESSION_TIMEOUT = DurationOption(
    "topo.session_timeout",
    10.0,
    min=0.1,
    doc="ZooKeeper session timeout: a dead tablet's node disappears after about this long",
)
TOPO_CONNECT_TIMEOUT = DurationOption(
    "topo.connect_timeout",
    10.0,
    min=0.1,
    doc="How long start waits for the topo before serving anyway (it keeps retrying)",
)
TOPO_AUTH_FILE = PathOption(
    "topo.auth_file",
    "",
    must_exist=True,
    doc="File holding 'user:password' for ZooKeeper digest auth; empty for none",
)


def _identity_checks(config: Config) -> Iterable[tuple[str, str]]:
    cell = config.value(CELL)
    if cell:
        try:
            validate_cell_name(cell)
        except ValidationError as e:
            yield (CELL.key, str(e))
            return
        if cell != alias_cell(config.value(ALIAS)):
            yield (
                CELL.key,
                f"{cell!r} differs from the cell of alias {config.value(ALIAS)!r}; "
                "leave it empty or make them agree",
            )


def _timeout_checks(config: Config) -> Iterable[tuple[str, str]]:
    if config.value(RPC_DEFAULT_TIMEOUT) > config.value(RPC_MAX_TIMEOUT):
        yield (RPC_DEFAULT_TIMEOUT.key, f"must not exceed {RPC_MAX_TIMEOUT.key}")


OPTIONS: list[Option[Any]] = [
    ALIAS,
    CELL,
    KEYSPACE,
    SHARD,
    TABLET_TYPE,
    HOSTNAME,
    MYSQL_HOST,
    MYSQL_PORT,
    MYSQL_SOCKET,
    MYSQL_DATABASE,
    MYSQL_CHARSET,
    MYSQL_CONNECT_TIMEOUT,
    APP_USER,
    APP_PASSWORD,
    APP_PASSWORD_FILE,
    DBA_USER,
    DBA_PASSWORD,
    DBA_PASSWORD_FILE,
    REPL_USER,
    REPL_PASSWORD,
    REPL_PASSWORD_FILE,
    REPL_NET_TIMEOUT,
    REPL_HEARTBEAT,
    MANAGER_LOCK_WAIT,
    QUERY_POOL_SIZE,
    QUERY_POOL_WAIT,
    QUERY_POOL_WAITERS,
    TX_POOL_SIZE,
    TX_POOL_WAIT,
    TX_POOL_WAITERS,
    DBA_POOL_SIZE,
    DBA_POOL_WAIT,
    DBA_POOL_WAITERS,
    POOL_IDLE_TIMEOUT,
    POOL_MAX_LIFETIME,
    POOL_PING_AFTER,
    QUERY_TIMEOUT,
    STREAM_TIMEOUT,
    KILL_GRACE,
    MAX_RESULT_ROWS,
    WARN_RESULT_ROWS,
    MAX_WARNINGS,
    DENIED_PATTERNS,
    DENIED_TABLES,
    TX_TIMEOUT,
    MAX_ENDED_IDS,
    RESERVED_IDLE_TIMEOUT,
    SHUTDOWN_GRACE,
    RPC_LISTEN,
    RPC_MAX_INFLIGHT,
    RPC_MAX_FRAME,
    RPC_DEFAULT_TIMEOUT,
    RPC_MAX_TIMEOUT,
    RPC_HEALTH_KEEPALIVE,
    HTTP_LISTEN,
    TOPO_ADDRESS,
    TOPO_SESSION_TIMEOUT,
    TOPO_CONNECT_TIMEOUT,
    TOPO_AUTH_FILE,
    *HEALTH_OPTIONS,
]

SCHEMA = Schema(
    "vttablet",
    OPTIONS,
    doc=(
        "vttablet: the pooled, health-publishing middleware in front of one mysqld. Gates "
        "reach it over the tablet RPC (rpc.listen); it runs their statements on bounded "
        "pools of connections to its mysqld, enforces the query policies, publishes its "
        "health and role in its ephemeral topo node and serves /metrics and /debug pages."
    ),
    checks=[_identity_checks, _timeout_checks, *HEALTH_CHECKS],
)


def tablet_cell(config: Config) -> str:
    """The tablet's cell: ``cell`` when set, else the cell part of the alias."""
    return config.value(CELL) or alias_cell(config.value(ALIAS))


def mysql_database(config: Config) -> str:
    """The default database of the tablet's connections (``mysql.database`` or the keyspace)."""
    return config.value(MYSQL_DATABASE) or config.value(KEYSPACE)


def mysql_password(config: Config, user: str) -> str:
    """The password of the ``app``, ``dba`` or ``repl`` user.

    Order: the ``*_password_file`` key (first line), the ``*_password`` key, the environment
    variable (``VTWIST_MYSQL_APP_PASSWORD``/``..._DBA_...``), else empty. An unreadable file
    raises the ``ConfigError`` naming its key.
    """
    file_opt, value_opt, env = {
        "app": (APP_PASSWORD_FILE, APP_PASSWORD, ENV_APP_PASSWORD),
        "dba": (DBA_PASSWORD_FILE, DBA_PASSWORD, ENV_DBA_PASSWORD),
        "repl": (REPL_PASSWORD_FILE, REPL_PASSWORD, ENV_REPL_PASSWORD),
    }[user]
    path = config.value(file_opt)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise config.problem(file_opt.key, f"cannot read {path}: {e}") from None
        lines = text.splitlines()
        return lines[0] if lines else ""
    value = config.value(value_opt)
    if value:
        return value
    return os.environ.get(env, "")

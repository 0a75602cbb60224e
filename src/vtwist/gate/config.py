"""The vtgate configuration: every key of ``etc/vtgate.toml``, declared once.

``SCHEMA`` is what ``twistd vtgate`` loads (file, then flags: ``mysql.listen`` is
``--mysql-listen``) and what ``etc/vtgate.toml`` is generated from::

    python -m vtwist.config write vtwist.gate.config:SCHEMA etc/vtgate.toml
"""

from __future__ import annotations

from typing import Any

from vtwist.config import (
    BoolOption,
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
from vtwist.protocols.mysql.server_types import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SERVER_VERSION,
)
from vtwist.topo.config_checks import check_cells, check_topo_address

MYSQL_LISTEN = EndpointOption(
    "mysql.listen", "tcp:15306:interface=127.0.0.1", doc="MySQL listener for applications"
)
USERS_FILE = PathOption(
    "mysql.users_file", "etc/users.toml", doc="Gate users (hashed passwords); reread on SIGHUP"
)
SERVER_VERSION = StrOption(
    "mysql.server_version",
    DEFAULT_SERVER_VERSION,
    doc="Version string in the handshake and VERSION()",
)
VERSION_COMMENT = StrOption(
    "mysql.version_comment", "vtwist gate", doc="What select @@version_comment answers"
)
TLS_CERT = PathOption("mysql.tls_cert", "", doc="PEM certificate (chain) for TLS; empty: no TLS")
TLS_KEY = PathOption("mysql.tls_key", "", doc="PEM private key of mysql.tls_cert")
REQUIRE_TLS = BoolOption(
    "mysql.require_secure_transport",
    False,
    doc="Refuse logins without TLS (ERROR 3159); needs mysql.tls_cert",
)
HANDSHAKE_TIMEOUT = DurationOption(
    "mysql.handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT, doc="Longest login handshake"
)
IDLE_TIMEOUT = DurationOption(
    "mysql.idle_timeout", DEFAULT_IDLE_TIMEOUT, doc="Idle client connections are closed after"
)
LISTEN_BACKLOG = IntOption(
    "mysql.listen_backlog",
    1024,
    min=1,
    max=65535,
    doc="Connections the kernel queues until the gate accepts them (the listen backlog; "
    "Linux caps it at net.core.somaxconn); past it a connecting client waits a second or "
    "more for its SYN retry. A backlog= in mysql.listen wins",
)
MAX_CONNECTIONS = IntOption(
    "mysql.max_connections",
    DEFAULT_MAX_CONNECTIONS,
    min=1,
    doc="Client connections at once; more get ERROR 1040",
)
AUTH_MAX_FAILURES = IntOption(
    "auth.max_failures",
    10,
    min=0,
    doc="Failed logins from one address within auth.window that block it (0: never block)",
)
AUTH_WINDOW = DurationOption("auth.window", 60.0, doc="Window counting failed logins")
AUTH_BLOCK_TIME = DurationOption(
    "auth.block_time", 60.0, doc="How long a blocked address gets ERROR 1129"
)
AUTH_MAX_HOSTS = IntOption(
    "auth.max_hosts", 10000, min=1, doc="Addresses whose failures are tracked at once"
)
HTTP_LISTEN = EndpointOption(
    "http.listen", "tcp:15001:interface=127.0.0.1", doc="HTTP: /metrics, /debug/status"
)
TOPO_ADDRESS = StrOption(
    "topo.address",
    "zk:127.0.0.1:2181/vtwist",
    check=check_topo_address,
    doc="Topo server: zk:HOST:PORT[,HOST:PORT...][/ROOT]",
)
TOPO_SESSION_TIMEOUT = DurationOption(
    "topo.session_timeout", 10.0, min=0.1, doc="ZooKeeper session timeout"
)
TOPO_CONNECT_TIMEOUT = DurationOption(
    "topo.connect_timeout", 10.0, min=0.1, doc="How long start waits for the topo (then retries)"
)
CELLS = ListOption(
    "discovery.cells", ("zone1",), check=check_cells, doc="Cells whose tablets the gate uses"
)
MAX_LAG = DurationOption(
    "discovery.max_replica_lag",
    30.0,
    doc="Replicas lagging more than this get no reads (0: no limit)",
)
MAX_TABLETS = IntOption("discovery.max_tablets", 4096, min=1, doc="Tablets the gate links to")
DRAIN_TIMEOUT = DurationOption(
    "discovery.drain_timeout",
    30.0,
    doc="A tablet whose topo node vanished gets no new query; its link stays open this long "
    "at most for the queries already running on it",
)
HEALTH_TIMEOUT = DurationOption(
    "discovery.health_timeout",
    10.0,
    doc="A tablet that promised health keepalives (its rpc.health_keepalive) and sent none "
    "for this long is taken for stalled: its link is closed (statements on it fail at once "
    "with 2013) and queries go elsewhere until it answers again (0: never)",
)
RPC_TIMEOUT = DurationOption(
    "rpc.hello_timeout", 5.0, min=0.1, doc="Time from TCP connect to the tablet's HELLO"
)
RPC_MAX_BACKOFF = DurationOption(
    "rpc.max_backoff", 5.0, min=0.1, doc="Longest wait between reconnects to a tablet"
)
RPC_MAX_INFLIGHT = IntOption(
    "rpc.max_inflight", 1024, min=1, doc="Requests in flight per tablet connection"
)
DEFAULT_TABLET_TYPE = ChoiceOption(
    "session.default_tablet_type",
    "primary",
    choices=("primary", "replica", "rdonly"),
    doc="Tablet type when the database name has no @type",
)
QUERY_TIMEOUT = DurationOption(
    "session.query_timeout", 30.0, min=0.01, doc="Deadline of each statement sent to a tablet"
)
STREAM_TIMEOUT = DurationOption(
    "session.stream_timeout",
    3600.0,
    min=0.01,
    doc="Deadline of a streamed statement (a SELECT in the OLAP workload, a dump's table "
    "read) instead of session.query_timeout: a dump of a large table takes long",
)
PREPARE_FIELDS = BoolOption(
    "session.prepare_fields",
    True,
    doc="Ask a tablet for a prepared SELECT's columns (a LIMIT 0 query) at prepare time",
)
AUTOCOMMIT_OFF_READS = BoolOption(
    "session.autocommit_off_reads_in_transaction",
    True,
    doc="With autocommit off (PyMySQL's default; what Spring and Hibernate run in), a read of a "
    "table at a primary target opens the implicit transaction, as in MySQL and Vitess: the "
    "session's reads share one snapshot, and take SERIALIZABLE's locks, until COMMIT or "
    "ROLLBACK. false: only a write, a locking read or SAVEPOINT opens it and earlier reads run "
    "on pooled connections (no snapshot), which keeps clients that turn autocommit off and only "
    "read out of the primary tablet's transaction pool. Reads a routing policy redirects away "
    "from the primary run outside the transaction either way",
)
MAX_LOCAL_INFILE = IntOption(
    "session.max_local_infile_size",
    1024 * 1024 * 1024,
    min=0,
    max=1 << 40,
    doc="Bytes a LOAD DATA LOCAL INFILE file may have in all (it streams to the tablet in "
    "pieces; past this the statement is aborted and gets ERROR 1153); 0 refuses LOAD DATA "
    "LOCAL",
)
LOCAL_INFILE_BUFFER = IntOption(
    "session.local_infile_buffer_size",
    1024 * 1024,
    min=16 * 1024,
    max=64 * 1024 * 1024,
    doc="Bytes of a client's LOAD DATA LOCAL file the gate buffers for its session while the "
    "tablet has not asked for them yet (reading from that client pauses beyond it)",
)
OLAP_PROGRAMS = ListOption(
    "session.olap_programs",
    ("mysqldump", "mysqlpump"),
    doc="Clients whose program_name connection attribute is one of these start in the OLAP "
    "workload (SELECTs streamed without the row limit, as after SET workload = 'olap'): "
    "mysqldump and mariadb-dump send program_name = mysqldump",
)
OLAP_MARKERS = ListOption(
    "session.olap_markers",
    ("/*!40001 SQL_NO_CACHE */",),
    doc="A SELECT that starts with SELECT and one of these is streamed without the row limit, "
    "as in the OLAP workload, in any session: dump tools mark their table reads so "
    "(mysqldump, mariadb-dump, and mydumper, which sends no program_name); [] turns it off",
)
POLICY = StrOption(
    "routing.policy",
    "random",
    doc="Routing policy plugin: random, least-in-flight, lag-aware or an installed one",
)
BUFFER_ENABLED = BoolOption(
    "buffer.enabled",
    True,
    doc="Hold primary-bound statements outside transactions while their shard has no serving "
    "primary (a failover), then run them on the new one",
)
BUFFER_WINDOW = DurationOption(
    "buffer.window", 10.0, doc="Longest one statement waits in the buffer (then ERROR 1105)"
)
BUFFER_MAX_FAILOVER_DURATION = DurationOption(
    "buffer.max_failover_duration",
    20.0,
    doc="Longest one shard stays in buffering mode; then what it holds fails, and so do new "
    "statements until a primary serves",
)
BUFFER_SIZE = IntOption(
    "buffer.size",
    1000,
    min=0,
    doc="Statements buffered at once across the gate; more fail at once",
)
STATS_DIGESTS = BoolOption(
    "stats.query_digests",
    True,
    doc="Keep statistics by statement digest (text with its values as ?): counts, errors, "
    "times and rows, at /debug/queryz",
)
STATS_MAX_DIGESTS = IntOption(
    "stats.max_digests",
    2000,
    min=1,
    max=1_000_000,
    doc="Digests kept at once (one per user, database and digest); the least recently seen is "
    "dropped for a new one",
)
STATS_MAX_DIGEST_LENGTH = IntOption(
    "stats.max_digest_length",
    1024,
    min=16,
    max=1024 * 1024,
    doc="Bytes of a digest kept; longer ones are cut",
)
STATS_RECENT_ERRORS = IntOption(
    "stats.recent_errors",
    50,
    min=0,
    max=100_000,
    doc="Errors sent to clients that /debug/status and /debug/queryz list (the latest)",
)
LAMEDUCK_PERIOD = DurationOption(
    "shutdown.lameduck_period",
    0.05,
    min=0.0,
    doc="At stop (SIGTERM): how long /debug/health answers 503 while new clients are still "
    "taken, before the MySQL listener closes (for load balancers)",
)
SHUTDOWN_GRACE = DurationOption(
    "shutdown.grace_period",
    10.0,
    min=0.0,
    doc="At stop, once the listener closed: how long client sessions running a statement "
    "or a transaction may go on (each closes once idle outside a transaction); then all close",
)

OPTIONS: list[Option[Any]] = [
    MYSQL_LISTEN,
    USERS_FILE,
    SERVER_VERSION,
    VERSION_COMMENT,
    TLS_CERT,
    TLS_KEY,
    REQUIRE_TLS,
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    LISTEN_BACKLOG,
    MAX_CONNECTIONS,
    AUTH_MAX_FAILURES,
    AUTH_WINDOW,
    AUTH_BLOCK_TIME,
    AUTH_MAX_HOSTS,
    HTTP_LISTEN,
    TOPO_ADDRESS,
    TOPO_SESSION_TIMEOUT,
    TOPO_CONNECT_TIMEOUT,
    CELLS,
    MAX_LAG,
    MAX_TABLETS,
    DRAIN_TIMEOUT,
    HEALTH_TIMEOUT,
    RPC_TIMEOUT,
    RPC_MAX_BACKOFF,
    RPC_MAX_INFLIGHT,
    DEFAULT_TABLET_TYPE,
    QUERY_TIMEOUT,
    STREAM_TIMEOUT,
    PREPARE_FIELDS,
    AUTOCOMMIT_OFF_READS,
    OLAP_PROGRAMS,
    OLAP_MARKERS,
    MAX_LOCAL_INFILE,
    LOCAL_INFILE_BUFFER,
    POLICY,
    BUFFER_ENABLED,
    BUFFER_WINDOW,
    BUFFER_MAX_FAILOVER_DURATION,
    BUFFER_SIZE,
    STATS_DIGESTS,
    STATS_MAX_DIGESTS,
    STATS_MAX_DIGEST_LENGTH,
    STATS_RECENT_ERRORS,
    LAMEDUCK_PERIOD,
    SHUTDOWN_GRACE,
]


def _checks(config: Config) -> list[tuple[str, str]]:
    problems = []
    if config.value(REQUIRE_TLS) and not config.value(TLS_CERT):
        problems.append((REQUIRE_TLS.key, "needs mysql.tls_cert and mysql.tls_key"))
    if bool(config.value(TLS_CERT)) != bool(config.value(TLS_KEY)):
        problems.append((TLS_KEY.key, "mysql.tls_cert and mysql.tls_key go together"))
    if not config.value(SERVER_VERSION)[:1].isdigit():
        problems.append((SERVER_VERSION.key, "must start with a digit (clients parse it)"))
    return problems


SCHEMA = Schema(
    "vtgate",
    OPTIONS,
    doc="vtgate: the MySQL server applications connect to; routes each query to a tablet.",
    checks=[_checks],
)

# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``twistd vtgate``: the role's Options and ``makeService``, wiring every part together.

``twistd -n vtgate --config etc/vtgate.toml [--key-flag value ...]`` builds, in start
order: the topo connection and its cache (``discovery.cells``), tablet discovery (one RPC
link per tablet), the HTTP status listener (``http.listen``), the session drain, the MySQL
listener (``mysql.listen``), the lame duck (``shutdown``) and the SIGHUP hook that
rereads ``mysql.users_file``. They stop one at a time, in reverse. A bad
configuration (a key's value, an unreadable users file or TLS key, an unknown routing
policy) stops twistd before anything starts, with the key and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vtwist.config import Config, ConfigOptions
from vtwist.gate import config as keys
from vtwist.gate.buffer import BufferSettings
from vtwist.gate.config import SCHEMA
from vtwist.gate.discovery import Discovery, TabletLink
from vtwist.gate.gate import AuthThrottle, Gate, GateServerFactory, GateSettings, StatsSettings
from vtwist.gate.metrics import GateMetrics
from vtwist.gate.policies import load_policy
from vtwist.gate.querystats_page import QueryzResource
from vtwist.gate.shutdown import LameDuck, SessionDrain
from vtwist.gate.status import gate_health, gate_sections
from vtwist.interfaces import IRoutingPolicy
from vtwist.protocols.tabletrpc_client import TabletRPCClientFactory
from vtwist.protocols.tabletrpc_connector import TabletRPCConnector
from vtwist.service import ListenerService, SignalHookService, role_service
from vtwist.topo.cache import TopoCache, TopoCacheService
from vtwist.topo.records import Tablet
from vtwist.users import StaticUsers

log = Logger()


class Options(ConfigOptions):
    """``twistd vtgate`` options: ``--config FILE`` and one flag per key of ``SCHEMA``."""

    schema = SCHEMA

    def postOptions(self) -> None:
        """Load the config, then check what it names: users file, TLS files, policy."""
        super().postOptions()
        check_config(self.config)


def load_users(config: Config) -> StaticUsers:
    """The users of ``mysql.users_file`` (ConfigError naming the key)."""
    from vtwist.users import UsersFileError

    try:
        return StaticUsers(Path(config.value(keys.USERS_FILE)))
    except (UsersFileError, OSError) as e:
        raise config.problem(keys.USERS_FILE.key, str(e)) from None


def tls_options(config: Config) -> Any:
    """Twisted TLS options from ``mysql.tls_cert``/``mysql.tls_key`` (None without)."""
    from twisted.internet.ssl import PrivateCertificate

    cert = config.value(keys.TLS_CERT)
    if not cert:
        return None
    try:
        pem = Path(cert).read_bytes() + b"\n" + Path(config.value(keys.TLS_KEY)).read_bytes()
        return PrivateCertificate.loadPEM(pem).options()
    except Exception as e:
        raise config.problem(keys.TLS_CERT.key, f"cannot load the certificate/key: {e}") from None


def routing_policy(config: Config) -> IRoutingPolicy:
    """The configured routing policy (ConfigError naming ``routing.policy``)."""
    try:
        return load_policy(config.value(keys.POLICY))
    except KeyError as e:
        raise config.problem(keys.POLICY.key, str(e.args[0])) from None


def check_config(config: Config) -> None:
    """Read everything the config names, so a bad one stops twistd at start."""
    load_users(config)
    tls_options(config)
    routing_policy(config)


class GateRole:
    """Every part of one gate, built from its configuration (``makeService`` wraps it)."""

    def __init__(self, config: Config, reactor: Any) -> None:
        from vtwist.protocols.mysql.auth import generate_rsa_key
        from vtwist.topo.address import open_topo

        self.config = config
        self.reactor = reactor
        clock = cast(IReactorTime, reactor)
        self.metrics = GateMetrics()
        self.topo = open_topo(
            config.value(keys.TOPO_ADDRESS),
            clock,
            session_timeout=config.value(keys.TOPO_SESSION_TIMEOUT),
        )
        cells = list(config.get_list(keys.CELLS.key))
        self.cache = TopoCache(self.topo, cells)
        self.rpc_factory = TabletRPCClientFactory(
            clock,
            max_inflight=config.value(keys.RPC_MAX_INFLIGHT),
            default_timeout=config.value(keys.QUERY_TIMEOUT),
        )
        max_lag = config.value(keys.MAX_LAG)
        self.discovery = Discovery(
            self.cache,
            clock,
            self.link,
            cells=cells,
            max_lag=max_lag or None,
            max_tablets=config.value(keys.MAX_TABLETS),
            drain_timeout=config.value(keys.DRAIN_TIMEOUT),
        )
        self.policy = routing_policy(config)
        self.gate = Gate(
            self.cache,
            self.discovery,
            self.policy,
            clock,
            settings=GateSettings(
                default_tablet_type=config.value(keys.DEFAULT_TABLET_TYPE),
                query_timeout=config.value(keys.QUERY_TIMEOUT),
                stream_timeout=config.value(keys.STREAM_TIMEOUT),
                version_comment=config.value(keys.VERSION_COMMENT),
                server_version=config.value(keys.SERVER_VERSION),
                prepare_fields=config.value(keys.PREPARE_FIELDS),
                autocommit_off_reads_in_transaction=config.value(keys.AUTOCOMMIT_OFF_READS),
                max_local_infile_size=config.value(keys.MAX_LOCAL_INFILE),
                olap_programs=frozenset(config.get_list(keys.OLAP_PROGRAMS.key)),
                olap_markers=tuple(
                    m.encode() for m in config.get_list(keys.OLAP_MARKERS.key) if m.strip()
                ),
                topo_wait=config.value(keys.TOPO_CONNECT_TIMEOUT),
                buffer=BufferSettings(
                    enabled=config.value(keys.BUFFER_ENABLED),
                    window=config.value(keys.BUFFER_WINDOW),
                    max_failover_duration=config.value(keys.BUFFER_MAX_FAILOVER_DURATION),
                    size=config.value(keys.BUFFER_SIZE),
                ),
                stats=StatsSettings(
                    query_digests=config.value(keys.STATS_DIGESTS),
                    max_digests=config.value(keys.STATS_MAX_DIGESTS),
                    max_digest_length=config.value(keys.STATS_MAX_DIGEST_LENGTH),
                    recent_errors=config.value(keys.STATS_RECENT_ERRORS),
                ),
            ),
            metrics=self.metrics,
        )
        self.metrics.add_state(self.discovery, self.cache.state)
        self.users = load_users(config)
        self.server = GateServerFactory(
            self.gate,
            self.users,
            clock=clock,
            tls=tls_options(config),
            require_secure_transport=config.value(keys.REQUIRE_TLS),
            server_version=config.value(keys.SERVER_VERSION),
            rsa_key=generate_rsa_key(),
            handshake_timeout=config.value(keys.HANDSHAKE_TIMEOUT),
            idle_timeout=config.value(keys.IDLE_TIMEOUT),
            max_connections=config.value(keys.MAX_CONNECTIONS),
            max_infile_buffer_bytes=config.value(keys.LOCAL_INFILE_BUFFER),
            throttle=AuthThrottle(
                clock,
                max_failures=config.value(keys.AUTH_MAX_FAILURES),
                window=config.value(keys.AUTH_WINDOW),
                block_time=config.value(keys.AUTH_BLOCK_TIME),
                max_hosts=config.value(keys.AUTH_MAX_HOSTS),
            ),
        )
        self.mysql = ListenerService(
            config.value(keys.MYSQL_LISTEN),
            self.server,
            name="mysql",
            backlog=config.value(keys.LISTEN_BACKLOG),
        )
        from vtwist.httpstatus import status_service

        self.http = status_service(
            config.value(keys.HTTP_LISTEN),
            title="vtgate",
            registry=self.metrics.registry,
            health=gate_health(self.gate),
            sections=[gate_sections(self.gate, config)],
            extra={"queryz": QueryzResource(self.gate.query_stats, self.gate.digests)},
        )

    def link(self, tablet: Tablet) -> TabletLink:
        """The RPC link to ``tablet`` (discovery starts and stops it)."""
        endpoint = HostnameEndpoint(self.reactor, tablet.host.encode(), tablet.rpc_port)
        return TabletRPCConnector(
            endpoint,
            cast(IReactorTime, self.reactor),
            client_factory=self.rpc_factory,
            max_backoff=self.config.value(keys.RPC_MAX_BACKOFF),
            hello_timeout=self.config.value(keys.RPC_TIMEOUT),
            health_timeout=self.config.value(keys.HEALTH_TIMEOUT) or None,
            name=f"{tablet.alias} ({tablet.host}:{tablet.rpc_port})",
        )

    def reload(self) -> None:
        """SIGHUP: reread the users file (a broken file keeps the previous users)."""
        self.users.reload()

    def services(self) -> list[Service]:
        """The services in start order; they stop one at a time, in reverse (``shutdown``:
        lame duck, the MySQL listener, the sessions drained, then HTTP, links and topo)."""
        clock = cast(IReactorTime, self.reactor)
        return [
            TopoCacheService(
                self.topo,
                self.cache,
                self.config.value(keys.TOPO_CONNECT_TIMEOUT),
                on_loading=self.gate.topo_loading,
                on_loaded=self.gate.topo_loaded,
            ),
            self.discovery,
            self.http,
            SessionDrain(self.gate, clock, self.config.value(keys.SHUTDOWN_GRACE)),
            self.mysql,
            LameDuck(self.gate, clock, self.config.value(keys.LAMEDUCK_PERIOD)),
            SignalHookService(self.reload),
        ]


def makeService(options: Options) -> MultiService:
    """The vtgate role's services (see the module docstring)."""
    from twisted.internet import reactor

    role = GateRole(options.config, reactor)
    top = role_service("vtgate", *role.services(), sequential=True)
    top.gate = role  # type: ignore[attr-defined]  # for tests and debugging
    return top

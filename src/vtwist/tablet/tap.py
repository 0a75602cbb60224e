# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``twistd vttablet``: the role's Options and ``makeService``, wiring every part together.

``twistd -n vttablet --config etc/vttablet.toml [--key-flag value ...]`` builds, in start
order: the topo connection, the query service with its pools, the gate RPC listener
(``rpc.listen``), the HTTP status listener (``http.listen``), the port recorder (puts the
bound ports in the tablet state) and the health, publication and role services
(``vtwist.tablet.health.build_health_services``). A bad configuration (a key's value, an
unreadable password file, a bad topo auth file) stops twistd before anything starts, with
the key and the reason.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vtwist.config import Config, ConfigOptions
from vtwist.httpstatus import status_service
from vtwist.protocols.tabletrpc_server import TabletRPCServerFactory
from vtwist.service import ListenerService, role_service
from vtwist.tablet import config as keys
from vtwist.tablet.config import SCHEMA
from vtwist.tablet.manager import ManagerSettings, TabletManager
from vtwist.tablet.metrics import StateCollector, TabletMetrics
from vtwist.tablet.policies import QueryPolicy
from vtwist.tablet.pools import TabletPools
from vtwist.tablet.query import QuerySettings, TabletQueryService
from vtwist.tablet.state import TabletState
from vtwist.tablet.status import health_check, status_sections
from vtwist.topo.config_checks import topo_auth as read_topo_auth
from vtwist.topo.server import TopoServer

log = Logger()


class Options(ConfigOptions):
    """``twistd vttablet`` options: ``--config FILE`` and one flag per key of ``SCHEMA``."""

    schema = SCHEMA
    # twistd already prints "Usage: twistd [options] vttablet" before the synopsis.
    synopsis = "[--config FILE] [options]"

    def postOptions(self) -> None:
        """Load the config, then check what it names: password files, topo auth file."""
        super().postOptions()
        check_files(self.config)


def topo_auth(config: Config) -> tuple[str, str] | None:
    """The ZooKeeper digest credentials of ``topo.auth_file`` (ConfigError naming the key)."""
    return read_topo_auth(config, keys.TOPO_AUTH_FILE)


def check_files(config: Config) -> None:
    """Read every file the config names, so a bad one stops twistd at start (ConfigError)."""
    keys.mysql_password(config, "app")
    keys.mysql_password(config, "dba")
    topo_auth(config)


class TopoService(Service):
    """Connects the topo at start (serving does not wait for it) and closes it at stop."""

    def __init__(self, topo: TopoServer, connect_timeout: float) -> None:
        self.topo = topo
        self.connect_timeout = connect_timeout

    def startService(self) -> None:
        """Start connecting; a slow topo is logged, and the client keeps trying."""
        super().startService()

        def failed(failure: Any) -> None:
            log.warn(
                "topo not reachable within {timeout}s ({error}); serving anyway, still trying",
                timeout=self.connect_timeout,
                error=failure.getErrorMessage(),
            )

        self.topo.connect(self.connect_timeout).addErrback(failed)

    def stopService(self) -> Deferred[None]:
        """End the session (the tablet's ephemeral node goes with it)."""
        super().stopService()
        return self.topo.close()


class QueryLifecycle(Service):
    """At stop (after the health services told the gates the tablet stops serving): let
    what runs end (``drain``, at most ``shutdown.grace_period``), roll back the held
    connections, then close the pools."""

    def __init__(self, service: TabletQueryService, pools: TabletPools) -> None:
        self.service = service
        self.pools = pools

    def stopService(self) -> Deferred[None]:
        """Drain, release held connections, then close every pool."""
        super().stopService()
        d = self.service.drain()
        d.addBoth(lambda _: self.service.shutdown())
        return d.addBoth(lambda _: self.pools.close())


class Draining(Service):
    """Started last, so stopped first: from the moment the tablet starts stopping (before
    its health says not serving), statements of open transactions may still write
    (``TabletQueryService.drain``)."""

    def __init__(self, service: TabletQueryService) -> None:
        self.service = service

    def stopService(self) -> None:
        """The tablet is stopping."""
        super().stopService()
        self.service.draining = True


class PortRecorder(Service):
    """Puts the bound RPC/HTTP ports and the mysqld port into the tablet state at start."""

    def __init__(
        self, state: TabletState, rpc: ListenerService, http: ListenerService, mysql_port: int
    ) -> None:
        self.state = state
        self.rpc = rpc
        self.http = http
        self.mysql_port = mysql_port

    def startService(self) -> None:
        """Record the ports once both listeners listen (at once for TCP)."""
        super().startService()

        def record(ports: list[Any]) -> None:
            rpc, http = (p.getHost().port for p in ports)
            self.state.update(ports={"rpc": rpc, "http": http, "mysql": self.mysql_port})

        d = gatherResults([self.rpc.whenListening(), self.http.whenListening()])
        d.addCallbacks(record, lambda f: log.failure("cannot record the tablet's ports", f))


class Tablet:
    """Every part of one tablet, built from its configuration (``makeService`` wraps it)."""

    def __init__(self, config: Config, reactor: Any) -> None:
        from vtwist.topo.address import open_topo

        self.config = config
        self.reactor = reactor
        clock = cast(IReactorTime, reactor)
        self.state = TabletState(
            alias=config.value(keys.ALIAS),
            keyspace=config.value(keys.KEYSPACE),
            shard=config.value(keys.SHARD),
            cell=keys.tablet_cell(config),
            hostname=config.value(keys.HOSTNAME),
            tablet_type=config.value(keys.TABLET_TYPE),
            clock=clock,
        )
        self.pools = TabletPools.from_config(reactor, config)
        self.metrics = TabletMetrics()
        self.service = TabletQueryService(
            state=self.state,
            pools=self.pools,
            policy=QueryPolicy(
                max_result_rows=config.value(keys.MAX_RESULT_ROWS),
                warn_result_rows=config.value(keys.WARN_RESULT_ROWS),
                denied_patterns=config.get_list(keys.DENIED_PATTERNS.key),
                denied_tables=config.get_list(keys.DENIED_TABLES.key),
            ),
            metrics=self.metrics,
            clock=clock,
            settings=QuerySettings.from_config(config),
        )
        self.topo = open_topo(
            config.value(keys.TOPO_ADDRESS),
            clock,
            session_timeout=config.value(keys.TOPO_SESSION_TIMEOUT),
            auth=topo_auth(config),
        )
        self.metrics.add_collector(
            StateCollector(
                self.pools.named(), self.state.snapshot, self.service.counts, self.topo.state
            )
        )
        self.rpc_factory = TabletRPCServerFactory(
            self.service,
            clock,
            max_frame_size=config.value(keys.RPC_MAX_FRAME),
            max_inflight=config.value(keys.RPC_MAX_INFLIGHT),
            default_timeout=config.value(keys.RPC_DEFAULT_TIMEOUT),
            max_timeout=config.value(keys.RPC_MAX_TIMEOUT),
            health_keepalive=config.value(keys.RPC_HEALTH_KEEPALIVE) or None,
        )
        self.rpc = ListenerService(config.value(keys.RPC_LISTEN), self.rpc_factory, name="rpc")
        self.http = status_service(
            config.value(keys.HTTP_LISTEN),
            title=f"vttablet {self.state.alias}",
            registry=self.metrics.registry,
            health=health_check(self.state),
            sections=[
                status_sections(
                    self.state,
                    self.pools,
                    self.service.held,
                    self.metrics,
                    config,
                    self.topo.state,
                )
            ],
        )
        self.manager = TabletManager(
            self.state,
            self.pools.dba,
            ManagerSettings(
                app_user=config.value(keys.APP_USER),
                repl_user=config.value(keys.REPL_USER),
                repl_password=keys.mysql_password(config, "repl"),
                net_timeout=config.value(keys.REPL_NET_TIMEOUT),
                heartbeat=config.value(keys.REPL_HEARTBEAT),
                lock_wait_timeout=config.value(keys.MANAGER_LOCK_WAIT),
            ),
        )
        self.service.manager = self.manager
        self.manager.quiesce = self.service.quiesce
        self.ports = PortRecorder(self.state, self.rpc, self.http, config.value(keys.MYSQL_PORT))

    def services(self) -> list[Service]:
        """The services in start order (they are stopped one by one, in reverse)."""
        from vtwist.tablet.health import HealthProbe, build_health_services

        health = build_health_services(
            self.config, self.state, self.topo, self.pools.dba, cast(IReactorTime, self.reactor)
        )
        probe = health[-1]
        self.manager.on_change = getattr(probe, "probe_now", None)
        if isinstance(probe, HealthProbe):
            probe.on_hung = self.service.mysqld_hung
        return [
            TopoService(self.topo, self.config.value(keys.TOPO_CONNECT_TIMEOUT)),
            QueryLifecycle(self.service, self.pools),
            self.rpc,
            self.http,
            self.ports,
            *cast(list[Service], health),
            Draining(self.service),
        ]


def makeService(options: Options) -> MultiService:
    """The vttablet role's services (see the module docstring)."""
    from twisted.internet import reactor

    tablet = Tablet(options.config, reactor)
    top = role_service("vttablet", *tablet.services(), sequential=True)
    top.tablet = tablet  # type: ignore[attr-defined]  # for tests and debugging
    return top

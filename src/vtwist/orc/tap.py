# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``twistd vtorc``: the role's Options and ``makeService``.

``twistd -n vtorc --config etc/vtorc.toml [--key-flag value ...]`` builds, in start order:
the topo connection and its watching cache (``orc.cells``), the orchestrator
(``vtwist.orc.orc``: election, poll loop, repairs) and the HTTP status listener
(``http.listen``). A bad configuration stops twistd before anything starts, with the key
and the reason.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from vtwist.config import Config, ConfigOptions
from vtwist.httpstatus import status_service
from vtwist.orc import config as keys
from vtwist.orc.config import SCHEMA
from vtwist.orc.metrics import OrcMetrics
from vtwist.orc.orc import Orchestrator, OrcSettings
from vtwist.orc.reparent import Reparenter, ReparentSettings
from vtwist.orc.status import orc_health, orc_sections
from vtwist.orc.tablets import TabletClients
from vtwist.topo.cache import TopoCache, TopoCacheService
from vtwist.topo.config_checks import topo_auth as read_topo_auth

log = Logger()


class Options(ConfigOptions):
    """``twistd vtorc`` options: ``--config FILE`` and one flag per key of ``SCHEMA``."""

    schema = SCHEMA

    def postOptions(self) -> None:
        """Load the config and read the topo auth file it names."""
        super().postOptions()
        topo_auth(self.config)


def topo_auth(config: Config) -> tuple[str, str] | None:
    """The ZooKeeper digest credentials of ``topo.auth_file`` (ConfigError naming the key)."""
    return read_topo_auth(config, keys.TOPO_AUTH_FILE)


class OrcRole:
    """Every part of one vtorc, built from its configuration."""

    def __init__(self, config: Config, reactor: Any) -> None:
        from vtwist.topo.address import open_topo

        self.config = config
        clock = cast(IReactorTime, reactor)
        self.metrics = OrcMetrics()
        self.topo = open_topo(
            config.value(keys.TOPO_ADDRESS),
            clock,
            session_timeout=config.value(keys.TOPO_SESSION_TIMEOUT),
            auth=topo_auth(config),
        )
        self.cache = TopoCache(self.topo, list(config.get_list(keys.CELLS.key)))
        self.clients = TabletClients(reactor)
        reparenter = Reparenter(
            self.topo,
            self.clients,
            ReparentSettings(
                lock_timeout=config.value(keys.LOCK_TIMEOUT),
                wait_timeout=config.value(keys.WAIT_TIMEOUT),
                action_timeout=config.value(keys.ACTION_TIMEOUT),
                fence_timeout=config.value(keys.FENCE_TIMEOUT),
            ),
        )
        self.orc = Orchestrator(
            self.topo,
            self.cache,
            self.clients,
            reparenter,
            clock,
            reactor,
            OrcSettings(
                poll_interval=config.value(keys.POLL_INTERVAL),
                status_timeout=config.value(keys.STATUS_TIMEOUT),
                mysqld_timeout=config.value(keys.MYSQLD_TIMEOUT),
                recovery_block=config.value(keys.RECOVERY_BLOCK),
                lock_timeout=config.value(keys.LOCK_TIMEOUT),
                emergency_reparent=config.value(keys.EMERGENCY_REPARENT),
                repair=config.value(keys.REPAIR),
                keyspaces=tuple(config.get_list(keys.KEYSPACES.key)),
            ),
            self.metrics,
            identifier=config.value(keys.IDENTIFIER) or None,
        )
        self.http = status_service(
            config.value(keys.HTTP_LISTEN),
            title="vtorc",
            registry=self.metrics.registry,
            health=orc_health(self.orc),
            sections=[orc_sections(self.orc)],
        )

    def services(self) -> list[Service]:
        """The services in start order."""
        return [
            TopoCacheService(self.topo, self.cache, self.config.value(keys.TOPO_CONNECT_TIMEOUT)),
            self.orc,
            self.http,
        ]


def makeService(options: Options) -> MultiService:
    """The vtorc role's services (see the module docstring)."""
    from twisted.internet import reactor

    role = OrcRole(options.config, reactor)
    top = MultiService()
    top.setName("vtorc")
    for child in role.services():
        child.setServiceParent(top)
    top.orc = role  # type: ignore[attr-defined]  # for tests and debugging
    return top

"""A test-only role built exactly as vtgate/vttablet/vtorc are: schema, Options, makeService.

A real role's plugin line would be
``ServiceMaker("dummy", "tests.unit.framework.dummy_tap", "A test role.", "dummy")``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from twisted.application.service import MultiService
from twisted.logger import Logger

from vtwist.config import (
    BoolOption,
    ChoiceOption,
    Config,
    ConfigOptions,
    DurationOption,
    EndpointOption,
    IntOption,
    ListOption,
    PathOption,
    Schema,
    StrOption,
)
from vtwist.httpstatus import Health, KeyValues, Section, Table, status_service
from vtwist.service import SignalHookService, role_service

log = Logger()


def _pool_checks(config: Config) -> list[tuple[str, str]]:
    if config.get_int("pool.min_idle") > config.get_int("pool.size"):
        return [("pool.min_idle", "must not exceed pool.size")]
    return []


SCHEMA = Schema(
    "dummy",
    [
        StrOption(
            "alias", doc="Alias of this dummy.", example="zone1-100", pattern=r"[a-z0-9]+-\d+"
        ),
        IntOption("pool.size", 16, min=1, max=4096, doc="Connections in the pool."),
        IntOption("pool.min_idle", 0, min=0, doc="Idle connections kept open."),
        DurationOption("pool.wait_timeout", 5.0, max=3600, doc="Longest wait for a connection."),
        StrOption("mysql.app_user", "app", doc="MySQL user for application queries."),
        StrOption("mysql.app_password", "", secret=True, doc="Password of mysql.app_user."),
        PathOption("mysql.socket", "", doc="Unix socket of mysqld; empty to use TCP."),
        ChoiceOption(
            "tablet.type",
            "replica",
            choices=("primary", "replica", "rdonly"),
            doc="Initial tablet type.",
        ),
        ListOption("policy.denied_tables", (), doc="Tables no query may touch."),
        BoolOption("health.serving", True, doc="Whether the dummy reports itself serving."),
        StrOption("health.reason", "configured off", doc="Why not serving, when it is not."),
        StrOption("status.note", "", doc="Free text shown on /debug/status."),
        EndpointOption("http.listen", "tcp:15999:interface=127.0.0.1", doc="HTTP status listener."),
    ],
    doc="A test role proving the vtwist role framework end to end.",
    checks=[_pool_checks],
)


class Options(ConfigOptions):
    """``twistd dummy`` options: ``--config FILE`` and one flag per key."""

    schema = SCHEMA


class DummyRole:
    """The role's state: a registry, health, status sections and a SIGHUP counter."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dummy_requests", "Requests served by the dummy.", ["kind"], registry=self.registry
        )
        self.requests.labels(kind="select").inc(3)
        self.serving = config.get_bool("health.serving")
        self.reloads = 0

    def health(self) -> Health:
        if self.serving:
            return Health(True)
        return Health(False, self.config.get_str("health.reason"))

    def sections(self) -> list[Section]:
        return [
            KeyValues(
                "Dummy",
                [
                    ("alias", self.config.get_str("alias")),
                    ("note", self.config.get_str("status.note")),
                    ("reloads", self.reloads),
                ],
            ),
            Table("Recent queries", ["id", "query"], [[1, self.config.get_str("status.note")]]),
            KeyValues("Config", list(self.config.redacted().items())),
        ]

    def reload(self) -> None:
        self.reloads += 1
        log.info("dummy reloaded {count} times", count=self.reloads)


def makeService(options: Options) -> MultiService:
    """The role's services: the HTTP status listener and a SIGHUP reload hook."""
    role = DummyRole(options.config)
    top = role_service(
        "dummy",
        status_service(
            options.config.get_str("http.listen"),
            title=f"dummy {options.config.get_str('alias')}",
            registry=role.registry,
            health=role.health,
            sections=[role.sections],
        ),
        SignalHookService(role.reload),
    )
    top.role = role  # type: ignore[attr-defined]  # for the tests
    return top

"""The vtgate role: config, plugins (built-in and third-party), throttling, status page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.task import Clock
from twisted.plugin import getPlugins
from zope.interface.verify import verifyObject

import twisted.plugins
from tests.unit.gate.fakes import Cluster, tablet
from vtwist.config import ConfigError, assert_example_current
from vtwist.gate import config as keys
from vtwist.gate.config import SCHEMA
from vtwist.gate.gate import AuthThrottle, GateServerFactory
from vtwist.gate.policies import BUILTINS, available_policies, load_policy
from vtwist.gate.status import gate_health, gate_sections
from vtwist.gate.tap import Options, makeService
from vtwist.httpstatus import render_status_page
from vtwist.interfaces import IRoutingPolicy
from vtwist.users import StaticUsers

REPO = Path(__file__).resolve().parents[3]

PLUGIN = """
from twisted.plugin import IPlugin
from zope.interface import implementer
from vtwist.interfaces import IRoutingPolicy

@implementer(IPlugin, IRoutingPolicy)
class FirstPolicy:
    name = "test-first"
    def choose(self, candidates, query):
        return sorted(candidates, key=lambda c: c.alias)[-1]
    def redirect(self, query):
        return None

first = FirstPolicy()
"""


def options(*argv: str) -> Options:
    opts = Options()
    opts.parseOptions(list(argv))
    return opts


def test_etc_file_is_current_and_loads() -> None:
    assert_example_current(SCHEMA, REPO / "etc" / "vtgate.toml")
    config = options("--config", str(REPO / "etc" / "vtgate.toml")).config
    assert config.value(keys.MYSQL_LISTEN) == "tcp:15306:interface=127.0.0.1"
    assert config.value(keys.HTTP_LISTEN) == "tcp:15001:interface=127.0.0.1"
    assert config.value(keys.DEFAULT_TABLET_TYPE) == "primary"


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--routing-policy", "nosuch"], "routing.policy"),
        (["--mysql-require-secure-transport", "true"], "mysql.require_secure_transport"),
        (["--session-default-tablet-type", "leader"], "session.default_tablet_type"),
        (["--mysql-users-file", "/nonexistent/users.toml"], "mysql.users_file"),
        (["--topo-address", "nonsense"], "topo.address"),
    ],
)
def test_bad_config_names_the_key(flags: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        options("--config", str(REPO / "etc" / "vtgate.toml"), *flags)
    assert key in str(e.value)


def test_service_maker_and_builtin_policies_are_plugins() -> None:
    makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
    assert "vtgate" in makers
    found = {p.name for p in getPlugins(IRoutingPolicy, twisted.plugins)}
    assert {"random", "least-in-flight", "lag-aware"} <= found
    for policy in BUILTINS.values():
        assert verifyObject(IRoutingPolicy, policy)


def test_third_party_plugin_is_found_and_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "twisted" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "vtwist_test_first.py").write_text(PLUGIN)
    monkeypatch.setattr(twisted.plugins, "__path__", [*twisted.plugins.__path__, str(plugins)])
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert "test-first" in available_policies()
    policy = load_policy("test-first")
    c = Cluster(policy=policy)
    c.add(tablet("zone1-101"), tablet("zone1-102"), tablet("zone1-100", ttype="primary"))
    s = c.session(database="commerce@replica")
    assert c.run(s, "select 1").table == [["zone1-102"]]
    with pytest.raises(KeyError, match=r"installed: .*test-first"):
        load_policy("nosuch")


def test_example_package_plugin() -> None:
    example = REPO / "examples" / "vtwist_route_reports"
    sys.path.insert(0, str(example / "src"))
    try:
        from vtwist_route_reports.policy import (  # type: ignore[import-not-found]
            ReportsToReplica,
        )

        policy = ReportsToReplica()
        assert verifyObject(IRoutingPolicy, policy)
        c = Cluster(policy=policy)
        c.add(tablet("zone1-101"), tablet("zone1-100", ttype="primary"))
        s = c.session()
        assert c.run(s, "select /* report */ count(*) from t").table == [["zone1-101"]]
        assert c.run(s, "select 1").table == [["zone1-100"]]
    finally:
        sys.path.remove(str(example / "src"))
    assert (example / "pyproject.toml").exists()
    assert (example / "src" / "twisted" / "plugins" / "vtwist_route_reports.py").exists()


def test_auth_throttle_blocks_then_forgives() -> None:
    clock = Clock()
    throttle = AuthThrottle(clock, max_failures=3, window=10, block_time=30)
    for _ in range(2):
        throttle.failure("10.0.0.1")
    assert throttle.blocked("10.0.0.1") == 0
    throttle.failure("10.0.0.1")
    assert throttle.blocked("10.0.0.1") == 30
    assert throttle.blocked("10.0.0.2") == 0
    clock.advance(31)
    assert throttle.blocked("10.0.0.1") == 0


def test_auth_throttle_window_and_success() -> None:
    clock = Clock()
    throttle = AuthThrottle(clock, max_failures=2, window=10, block_time=30, max_hosts=2)
    throttle.failure("a")
    clock.advance(11)
    throttle.failure("a")  # the first is outside the window
    assert throttle.blocked("a") == 0
    throttle.success("a")
    throttle.failure("a")
    assert throttle.blocked("a") == 0
    for host in ("b", "c", "d"):
        throttle.failure(host)
    assert len(throttle._failures) <= 2


def test_server_factory_refuses_blocked_host_with_1129() -> None:
    c = Cluster()
    users = StaticUsers(REPO / "etc" / "users.toml")
    throttle = AuthThrottle(c.clock, max_failures=1, window=10, block_time=30)
    factory = GateServerFactory(c.gate, users, clock=c.clock, throttle=throttle)
    assert factory.accept_client("127.0.0.9") is None
    factory.on_auth_failure("127.0.0.9", "app")
    refusal = factory.accept_client("127.0.0.9")
    assert refusal is not None and refusal.code == 1129
    assert "blocked" in refusal.message
    assert c.gate.server is factory


def test_status_page_escapes_and_health() -> None:
    c = Cluster()
    health = gate_health(c.gate)
    assert not health().serving
    c.add(tablet("zone1-100", ttype="primary"))
    assert health().serving
    s = c.session()
    s.query(b"select sleep(1) /* <script>alert(1)</script> */", _sink())
    c.flush()
    config = options("--config", str(REPO / "etc" / "vtgate.toml")).config
    page = render_status_page("vtgate", health(), gate_sections(c.gate, config)())
    assert b"<script>alert" not in page
    assert b"&lt;script&gt;" in page
    assert b"zone1-100" in page


def _sink() -> Any:
    from tests.unit.gate.fakes import RecordingSink

    return RecordingSink()


def test_make_service_builds_the_role() -> None:
    opts = options(
        "--config",
        str(REPO / "etc" / "vtgate.toml"),
        "--topo-address",
        "memory:",
        "--mysql-listen",
        "tcp:0:interface=127.0.0.1",
        "--http-listen",
        "tcp:0:interface=127.0.0.1",
    )
    top = makeService(opts)
    names = [getattr(s, "name", None) for s in top]
    assert "mysql" in names
    mysql = top.getServiceNamed("mysql")  # type: ignore[no-untyped-call]  # Twisted: unannotated
    assert mysql.description == "tcp:0:interface=127.0.0.1:backlog=1024"
    role = top.gate  # type: ignore[attr-defined]
    assert role.policy.name == "random"
    metrics = role.metrics.registry
    assert metrics.get_sample_value("vtgate_topo_state", {"state": role.cache.state()}) == 1

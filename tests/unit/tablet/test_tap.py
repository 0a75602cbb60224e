"""The vttablet schema, Options and makeService: keys, flags, bad configs, the plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from vtwist.config import ConfigError, assert_example_current, parse_config
from vtwist.service import ListenerService
from vtwist.tablet import config as keys
from vtwist.tablet.config import SCHEMA, mysql_password
from vtwist.tablet.tap import Options, makeService

REPO = Path(__file__).resolve().parents[3]
MINIMAL = 'alias = "zone1-0000000100"\nkeyspace = "commerce"\ntopo.address = "memory:"\n'


def options(*argv: str) -> Options:
    opts = Options()
    opts.parseOptions(list(argv))
    return opts


def test_etc_file_is_current_and_loads() -> None:
    assert_example_current(SCHEMA, REPO / "etc" / "vttablet.toml")
    config = options("--config", str(REPO / "etc" / "vttablet.toml")).config
    assert config.value(keys.ALIAS) == "zone1-0000000100"
    assert config.value(keys.QUERY_POOL_SIZE) == 16
    assert config.value(keys.RPC_LISTEN) == "tcp:16100:interface=127.0.0.1"
    assert keys.tablet_cell(config) == "zone1"
    assert keys.mysql_database(config) == "commerce"
    assert "health.interval" in config  # the health/role keys are part of the schema


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(MINIMAL + "[pool.query]\nsize = 4\n")
    config = options(
        "--config", str(path), "--pool-query-size", "7", "--query-timeout", "2s"
    ).config
    assert config.value(keys.QUERY_POOL_SIZE) == 7
    assert config.value(keys.QUERY_TIMEOUT) == 2.0
    assert config.source("pool.query.size") == "--pool-query-size"


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ("[pool.query]\nsize = 0\n", "pool.query.size", "must be >= 1"),
        ('cell = "zone2"\n', "cell", "differs from the cell of alias"),
        ('[query]\ndenylist_patterns = ["("]\n', "query.denylist_patterns", "not a valid regular"),
        ('[query]\ndenylist_tables = ["a b"]\n', "query.denylist_tables", "not a table name"),
        ('[rpc]\nlisten = "bogus:1"\n', "rpc.listen", "not a valid server endpoint"),
        ('[mysql]\napp_password_file = "/nonexistent/pw"\n', "mysql.app_password_file", "no such"),
        ("[rpc]\ndefault_timeout = 10\nmax_timeout = 5\n", "rpc.default_timeout", "must not"),
        ('tablet_type = "master"\n', "tablet_type", "must be one of"),
        ('shard = "80-40"\n', "shard", "start must be below"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, extra: str, key: str, reason: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        MINIMAL.replace('topo.address = "memory:"\n', "") + 'topo.address = "memory:"\n' + extra
    )
    with pytest.raises(ConfigError) as info:
        options("--config", str(path))
    assert key in info.value.keys, str(info.value)
    assert reason in str(info.value)


def test_bad_topo_address_and_missing_required() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(SCHEMA, 'alias = "zone1-1"\ntopo.address = "etcd:x"\n')
    assert set(info.value.keys) == {"keyspace", "topo.address"}


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keys.ENV_APP_PASSWORD, raising=False)
    config = parse_config(SCHEMA, MINIMAL)
    assert mysql_password(config, "app") == ""
    monkeypatch.setenv(keys.ENV_APP_PASSWORD, "from-env")
    assert mysql_password(config, "app") == "from-env"
    config = parse_config(SCHEMA, MINIMAL + 'mysql.app_password = "in-file"\n')
    assert mysql_password(config, "app") == "in-file"
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n")
    config = parse_config(SCHEMA, MINIMAL + f'mysql.app_password_file = "{pw}"\n')
    assert mysql_password(config, "app") == "from-file"
    # A password file that exists but cannot be read stops the start, naming the key.
    config = parse_config(SCHEMA, MINIMAL + f'mysql.dba_password_file = "{tmp_path}"\n')
    with pytest.raises(ConfigError) as info:
        mysql_password(config, "dba")
    assert info.value.keys == ["mysql.dba_password_file"]
    path = tmp_path / "t.toml"
    path.write_text(MINIMAL + f'mysql.dba_password_file = "{tmp_path}"\n')
    with pytest.raises(ConfigError):
        options("--config", str(path))
    # Secrets never show on the status page.
    config = parse_config(SCHEMA, MINIMAL + 'mysql.app_password = "in-file"\n')
    assert config.redacted()["mysql.app_password"] == "<secret>"


def test_make_service_wires_every_part(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(MINIMAL + 'rpc.listen = "tcp:0:interface=127.0.0.1"\n')
    top = makeService(options("--config", str(path)))
    names = [type(s).__name__ for s in top]
    assert names[:5] == [
        "TopoService",
        "QueryLifecycle",
        "ListenerService",
        "ListenerService",
        "PortRecorder",
    ]
    assert {"TopoPublisher", "ShardSync", "HealthProbe"} <= set(names)
    listeners = [s for s in top if isinstance(s, ListenerService)]
    assert [s.description for s in listeners] == [
        "tcp:0:interface=127.0.0.1",
        "tcp:15100:interface=127.0.0.1",
    ]
    tablet = top.tablet  # type: ignore[attr-defined]
    assert tablet.state.alias == "zone1-0000000100" and not tablet.state.serving
    assert tablet.pools.query.size == 16 and tablet.pools.transaction.size == 20


def test_plugin_is_discovered() -> None:
    makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
    assert "vttablet" in makers
    assert makers["vttablet"].options is Options

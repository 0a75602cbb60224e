"""The cluster description and the plan made from it (no servers needed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vtwist.local.config import (
    GateUser,
    KeyspaceSpec,
    LocalConfig,
    LocalConfigError,
    even_shards,
    load_local_config,
    parse_local_config,
)
from vtwist.local.roles import render_values, role_available
from vtwist.local.state import ClusterState, plan_cluster

ROOT = Path(__file__).resolve().parents[3]


def test_etc_local_toml_documents_the_defaults() -> None:
    assert load_local_config(ROOT / "etc" / "local.toml") == LocalConfig()
    default = LocalConfig()
    assert default.keyspaces == (KeyspaceSpec("commerce", ("0",), 2, "semi_sync"),)
    assert (default.gate_mysql_port, default.gate_http_port) == (15306, 15001)
    assert default.gate_users == (GateUser("app", None),)


def test_full_description() -> None:
    config = parse_local_config(
        """
cell = "east"
[[keyspaces]]
name = "customer"
shards = 2
replicas = 1
durability = "none"
[[keyspaces]]
name = "lookup"
[gate]
mysql_port = 3307
[[gate.users]]
name = "anon"
password = ""
[[gate.users]]
name = "svc"
[tablet.options]
health.interval = "200ms"
"""
    )
    assert config.cell == "east"
    assert config.keyspaces[0] == KeyspaceSpec("customer", ("-80", "80-"), 1, "none")
    assert config.keyspaces[0].sharded and not config.keyspaces[1].sharded
    assert config.gate_users == (GateUser("anon", ""), GateUser("svc", None))
    assert config.tablet_options == {"health.interval": "200ms"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 1", "colour"),
        ("[[keyspaces]]\nreplicas = 1", "keyspaces[0].name"),
        ('[[keyspaces]]\nname = "a-b"', "keyspaces[0].name"),
        ('[[keyspaces]]\nname = "ks"\nreplicas = 10', "keyspaces[0].replicas"),
        ('[[keyspaces]]\nname = "ks"\ndurability = "fast"', "keyspaces[0].durability"),
        ('[[keyspaces]]\nname = "ks"\nshards = ["0", "0"]', "keyspaces[0].shards"),
        ("[gate]\nmysql_port = 70000", "gate.mysql_port"),
        ("[gate]\nmysql_port = 1\nhttp_port = 1", "gate.http_port"),
        ('[[gate.users]]\npassword = "x"', "gate.users[0].name"),
        ("[zookeeper]\nsession_timeout = -1", "zookeeper.session_timeout"),
        ("[vtorc]\ninstances = 4", "vtorc.instances"),
        ("[vtorc]\nhttp_port = 15306", "vtorc.http_port"),
        ("[vtorc]\nbogus = 1", "vtorc.bogus"),
    ],
)
def test_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(LocalConfigError) as err:
        parse_local_config(text, "x.toml")
    assert str(err.value).startswith(f"{key}: ") and str(err.value).endswith("(in x.toml)")


def test_even_shards() -> None:
    assert even_shards(1) == ("0",)
    assert even_shards(2) == ("-80", "80-")
    assert even_shards(4) == ("-40", "40-80", "80-c0", "c0-")


def test_plan_keeps_ports_and_secrets_and_adds_new_tablets() -> None:
    config = LocalConfig()
    first = plan_cluster(config, None)
    assert [t.alias for t in first.tablets] == [
        "zone1-0000000100",
        "zone1-0000000101",
        "zone1-0000000102",
    ]
    assert [t.initial_type for t in first.tablets] == ["primary", "replica", "replica"]
    again = plan_cluster(config, ClusterState.from_json(first.to_json()))
    assert again.tablets == first.tablets and again.passwords == first.passwords
    assert again.gate_users == first.gate_users and first.gate_users["app"]
    bigger = LocalConfig(keyspaces=(KeyspaceSpec("commerce", replicas=3),))
    grown = plan_cluster(bigger, first)
    assert grown.tablets[:3] == first.tablets and grown.tablets[3].alias == "zone1-0000000103"


def test_render_values_is_toml_of_the_dotted_keys() -> None:
    text = render_values(
        {"alias": "zone1-1", "mysql.port": 3306, "a.b.c": [True, 'x"y'], "t.f": 1.5}, "hi"
    )
    assert tomllib.loads(text) == {
        "alias": "zone1-1",
        "mysql": {"port": 3306},
        "a": {"b": {"c": [True, 'x"y']}},
        "t": {"f": 1.5},
    }


def test_a_missing_role_is_reported_not_fatal() -> None:
    why = role_available("vtnothing")
    assert why is not None and "not installed" in why and "vtnothing" in why

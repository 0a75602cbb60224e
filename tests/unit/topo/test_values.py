"""Names, records (JSON with a format version), key ranges, layout and topo addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtwist.topo import (
    FORMAT_VERSION,
    KeyRange,
    Keyspace,
    Layout,
    Shard,
    Tablet,
    TabletHealth,
    parse_topo_address,
)
from vtwist.topo.address import read_auth_file
from vtwist.topo.errors import ValidationError
from vtwist.topo.names import (
    alias_cell,
    split_keyspace_shard,
    validate_cell_name,
    validate_keyspace_name,
    validate_shard_name,
    validate_tablet_alias,
)


@pytest.mark.parametrize("name", ["commerce", "Customer_2", "a" * 64])
def test_valid_keyspace_names(name: str) -> None:
    assert validate_keyspace_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "empty"), ("a" * 65, "longer than 64"), ("com-merce", "letters, digits"),
     ("a/b", "letters, digits"), ("..", "letters, digits")],
)  # fmt: skip
def test_invalid_keyspace_names(name: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        validate_keyspace_name(name)


@pytest.mark.parametrize("name", ["0", "-", "-80", "80-", "40-80", "main"])
def test_valid_shard_names(name: str) -> None:
    assert validate_shard_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [("80-40", "below its end"), ("8-", "whole bytes"), ("-8A", "key range like"),
     ("a b", "key range like"), ("40-40", "below its end")],
)  # fmt: skip
def test_invalid_shard_names(name: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        validate_shard_name(name)


def test_aliases_and_cells() -> None:
    assert validate_tablet_alias("zone1-100") == "zone1-100"
    assert alias_cell("zone_1-0000000100") == "zone_1"
    for bad in ("zone1", "zone1-", "Zone1-1", "zone1-12345678901", "-1"):
        with pytest.raises(ValidationError, match="<cell>-<uid>"):
            validate_tablet_alias(bad)
    with pytest.raises(ValidationError, match="no '-'"):
        validate_cell_name("zone-1")
    assert split_keyspace_shard("customer/-80") == ("customer", "-80")
    with pytest.raises(ValidationError, match="KEYSPACE/SHARD"):
        split_keyspace_shard("customer")


def test_key_ranges() -> None:
    assert KeyRange.for_shard("0") == KeyRange("", "")
    low, high = KeyRange.for_shard("-80"), KeyRange.for_shard("80-")
    assert (str(low), str(high)) == ("-80", "80-")
    assert low.contains(b"\x00\x01") and not low.contains(b"\x80")
    assert high.contains(b"\x80") and high.contains(b"\xff\xff") and not high.contains(b"\x7f")
    mid = KeyRange.for_shard("40-c0")
    assert mid.contains(b"\x40") and not mid.contains(b"\xc0")


def test_records_round_trip_with_format_version() -> None:
    ks = Keyspace("customer", sharded=True, durability="semi_sync")
    stored = json.loads(ks.to_json())
    assert stored == {"version": FORMAT_VERSION, "sharded": True, "durability": "semi_sync"}
    assert Keyspace.from_json("customer", ks.to_json(), 4) == ks
    assert Keyspace.from_json("customer", ks.to_json(), 4).node_version == 4

    shard = Shard("customer", "-80", KeyRange("", "80"), primary_alias="zone1-100", primary_term=3)
    assert Shard.from_json("customer", "-80", shard.to_json()) == shard
    assert json.loads(shard.to_json())["key_range"] == {"start": "", "end": "80"}

    tablet = Tablet(
        "zone1-100", "customer", "-80", tablet_type="primary", host="127.0.0.1", rpc_port=1,
        http_port=2, mysql_port=3, serving=True, primary_term=3,
        health=TabletHealth(lag_s=0.5, error="slow", updated=12.0),
    )  # fmt: skip
    stored = json.loads(tablet.to_json())
    assert stored["type"] == "primary" and stored["version"] == FORMAT_VERSION
    assert Tablet.from_json("zone1-100", tablet.to_json()) == tablet


def test_unknown_fields_are_kept_for_forward_compatibility() -> None:
    newer = json.dumps({"version": 2, "sharded": False, "durability": "none", "future": [1]})
    ks = Keyspace.from_json("commerce", newer.encode())
    assert json.loads(ks.to_json())["future"] == [1]


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"not json", "not JSON"), (b"[]", "not a JSON object"),
     (b'{"version": "1"}', "'version' must be"), (b'{"primary_term": "3"}', "primary_term"),
     (b'{"primary_term": true}', "primary_term")],
)  # fmt: skip
def test_corrupt_records_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Shard.from_json("commerce", "0", data)


def test_tablet_record_must_match_its_path() -> None:
    data = Tablet("zone1-100", "commerce", "0").to_json()
    with pytest.raises(ValidationError, match="names alias"):
        Tablet.from_json("zone1-101", data)
    with pytest.raises(ValidationError, match="out of range"):
        Tablet("zone1-100", "commerce", "0", mysql_port=70000)
    with pytest.raises(ValidationError, match="tablet type"):
        Tablet("zone1-100", "commerce", "0", tablet_type="master")


def test_layout_under_a_root() -> None:
    layout = Layout("/prod/vtwist")
    assert layout.keyspace("commerce") == "/prod/vtwist/global/keyspaces/commerce"
    assert layout.vschema("commerce") == "/prod/vtwist/global/keyspaces/commerce/vschema"
    assert layout.shard("commerce", "-80") == "/prod/vtwist/global/keyspaces/commerce/shards/-80"
    assert layout.shard_lock("commerce", "0") == "/prod/vtwist/global/locks/commerce/0"
    assert layout.election("vtorc") == "/prod/vtwist/global/elections/vtorc"
    assert layout.tablet("zone1-100") == "/prod/vtwist/cells/zone1/tablets/zone1-100"
    assert Layout().root == "/vtwist"
    for bad in ("vtwist", "/a//b", "/a/../b", "/a b"):
        with pytest.raises(ValidationError, match="topo root"):
            Layout(bad)
    with pytest.raises(ValidationError):
        layout.keyspace("../x")


def test_topo_addresses() -> None:
    addr = parse_topo_address("zk:127.0.0.1:2181/vtwist")
    assert (addr.scheme, addr.hosts, addr.root) == ("zk", "127.0.0.1:2181", "/vtwist")
    addr = parse_topo_address("zk:127.0.0.1:2181,127.0.0.1:2182")
    assert (addr.hosts, addr.root) == ("127.0.0.1:2181,127.0.0.1:2182", "/vtwist")
    assert parse_topo_address("zk:localhost:2181/a/b/").root == "/a/b"
    assert parse_topo_address("memory:").scheme == "memory"
    assert str(parse_topo_address("memory:/x")) == "memory:/x"
    for bad, reason in [
        ("127.0.0.1:2181", "start with 'zk:'"),
        ("zk:", "names no ZooKeeper host"),
        ("zk:127.0.0.1", "not HOST:PORT"),
        ("zk:127.0.0.1:99999/x", "not HOST:PORT"),
        ("zk:127.0.0.1:2181/bad root", "topo root"),
        ("memory:host:1", "takes no hosts"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            parse_topo_address(bad)


def test_auth_file(tmp_path: Path) -> None:
    good = tmp_path / "auth"
    good.write_text("vtwist:s3cret\n")
    assert read_auth_file(good) == ("vtwist", "s3cret")
    bad = tmp_path / "bad"
    bad.write_text("nopassword\n")
    with pytest.raises(ValidationError, match="user:password"):
        read_auth_file(bad)
    with pytest.raises(ValidationError, match="cannot read"):
        read_auth_file(tmp_path / "missing")

"""The local cluster's description (``etc/local.toml``): parsing, validation, defaults.

``load_local_config(path)`` returns a frozen ``LocalConfig``; every problem is reported as
``LocalConfigError`` naming the file and the key (``keyspaces[0].replicas: must be ...``).
``etc/local.toml`` documents every key; without a file the defaults below apply, which
describe the default cluster: keyspace ``commerce`` (unsharded, shard ``0``, a primary and
two replicas, semi-sync), the gate on 127.0.0.1:15306 (HTTP 15001) and a gate user ``app``
whose password is generated on the first ``vtwist up``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtwist.topo.errors import ValidationError
from vtwist.topo.names import (
    DURABILITY_POLICIES,
    validate_cell_name,
    validate_keyspace_name,
    validate_shard_name,
)

DEFAULT_GATE_MYSQL_PORT = 15306
DEFAULT_GATE_HTTP_PORT = 15001
MAX_REPLICAS = 9  # tablet uids are 100 * (shard number) + replica index: 0..9 fit
MAX_SHARDS = 64
TOP_KEYS = frozenset({"cell", "keyspaces", "gate", "tablet", "vtorc", "zookeeper", "timeouts"})
VTORC_KEYS = frozenset({"instances", "http_port", "options"})
DEFAULT_VTORC_HTTP_PORT = 15000
MAX_VTORCS = 3
KEYSPACE_KEYS = frozenset({"name", "shards", "replicas", "durability"})
GATE_KEYS = frozenset({"mysql_port", "http_port", "users", "options"})
USER_KEYS = frozenset({"name", "password"})
TABLET_KEYS = frozenset({"options"})
ZOOKEEPER_KEYS = frozenset({"session_timeout"})
TIMEOUT_KEYS = frozenset({"start", "serving"})


class LocalConfigError(ValueError):
    """The cluster description cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class KeyspaceSpec:
    """One keyspace: its shards, replicas per shard and durability policy."""

    name: str
    shards: tuple[str, ...] = ("0",)
    replicas: int = 2
    durability: str = "semi_sync"

    @property
    def sharded(self) -> bool:
        """A keyspace is sharded unless its only shard is ``0`` (the unsharded name)."""
        return self.shards != ("0",)


@dataclass(frozen=True)
class GateUser:
    """A gate user; ``password`` None means "generate one on the first up"."""

    name: str
    password: str | None = None


@dataclass(frozen=True)
class LocalConfig:
    """The whole local cluster."""

    cell: str = "zone1"
    keyspaces: tuple[KeyspaceSpec, ...] = (KeyspaceSpec("commerce"),)
    gate_mysql_port: int = DEFAULT_GATE_MYSQL_PORT
    gate_http_port: int = DEFAULT_GATE_HTTP_PORT
    gate_users: tuple[GateUser, ...] = (GateUser("app"),)
    gate_options: Mapping[str, Any] = field(default_factory=dict)
    tablet_options: Mapping[str, Any] = field(default_factory=dict)
    vtorc_instances: int = 1
    vtorc_http_port: int = DEFAULT_VTORC_HTTP_PORT
    vtorc_options: Mapping[str, Any] = field(default_factory=dict)
    topo_session_timeout: float = 10.0
    start_timeout: float = 60.0
    serving_timeout: float = 60.0


def even_shards(count: int) -> tuple[str, ...]:
    """Shard names splitting the keyspace-id range in ``count`` near-equal parts.

    ``1`` gives the unsharded ``("0",)``; ``2`` gives ``("-80", "80-")``; ``4`` gives
    ``("-40", "40-80", "80-c0", "c0-")``.
    """
    if count == 1:
        return ("0",)
    bounds = [""] + [f"{i * 256 // count:02x}" for i in range(1, count)] + [""]
    return tuple(f"{bounds[i]}-{bounds[i + 1]}" for i in range(count))


class _Reader:
    """Type checks that name the key and the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> LocalConfigError:
        return LocalConfigError(f"{key}: {reason} (in {self.source})")

    def table(self, key: str, raw: object, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(key, "must be a table")
        unknown = sorted(set(raw) - allowed)
        if unknown:
            prefix = f"{key}." if key else ""
            raise self.fail(
                f"{prefix}{unknown[0]}", f"unknown key; allowed here: {', '.join(sorted(allowed))}"
            )
        return raw

    def string(self, key: str, raw: object) -> str:
        if not isinstance(raw, str):
            raise self.fail(key, f"must be a string, got {type(raw).__name__}")
        return raw

    def integer(self, key: str, raw: object, lo: int, hi: int) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.fail(key, f"must be an integer, got {type(raw).__name__}")
        if not lo <= raw <= hi:
            raise self.fail(key, f"must be {lo}..{hi}, got {raw}")
        return raw

    def seconds(self, key: str, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
            raise self.fail(key, f"must be a positive number of seconds, got {raw!r}")
        return float(raw)

    def name(self, key: str, raw: object, check: Any) -> str:
        text = self.string(key, raw)
        try:
            check(text)
        except ValidationError as e:
            raise self.fail(key, str(e)) from None
        return text


def _keyspace(r: _Reader, key: str, raw: object) -> KeyspaceSpec:
    data = r.table(key, raw, KEYSPACE_KEYS)
    if "name" not in data:
        raise r.fail(f"{key}.name", "required")
    name = r.name(f"{key}.name", data["name"], validate_keyspace_name)
    shards_raw = data.get("shards", ["0"])
    if isinstance(shards_raw, int) and not isinstance(shards_raw, bool):
        shards = even_shards(r.integer(f"{key}.shards", shards_raw, 1, MAX_SHARDS))
    elif isinstance(shards_raw, list) and shards_raw:
        shards = tuple(
            r.name(f"{key}.shards[{i}]", s, validate_shard_name) for i, s in enumerate(shards_raw)
        )
        if len(set(shards)) != len(shards):
            raise r.fail(f"{key}.shards", "names a shard twice")
    else:
        raise r.fail(f"{key}.shards", 'must be a count (2) or a non-empty list (["-80", "80-"])')
    replicas = r.integer(f"{key}.replicas", data.get("replicas", 2), 0, MAX_REPLICAS)
    durability = r.string(f"{key}.durability", data.get("durability", "semi_sync"))
    if durability not in DURABILITY_POLICIES:
        raise r.fail(f"{key}.durability", f"must be one of {', '.join(DURABILITY_POLICIES)}")
    if durability != "none" and replicas < 1:
        raise r.fail(
            f"{key}.replicas",
            f"durability {durability} needs at least one replica to acknowledge writes",
        )
    return KeyspaceSpec(name, shards, replicas, durability)


def _user(r: _Reader, key: str, raw: object) -> GateUser:
    data = r.table(key, raw, USER_KEYS)
    if "name" not in data:
        raise r.fail(f"{key}.name", "required")
    name = r.string(f"{key}.name", data["name"])
    if not name or len(name) > 80:
        raise r.fail(f"{key}.name", "must be 1 to 80 characters")
    password = data.get("password")
    return GateUser(name, None if password is None else r.string(f"{key}.password", password))


def _options(r: _Reader, key: str, raw: object) -> dict[str, Any]:
    """A table of extra role keys, flattened to dotted keys (``health.interval``)."""
    if not isinstance(raw, dict):
        raise r.fail(key, "must be a table of role config keys")
    out: dict[str, Any] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                out[f"{prefix}{k}"] = v

    walk("", raw)
    return out


def parse_local_config(text: str, source: str = "<local config>") -> LocalConfig:
    """Parse the TOML text of a cluster description (see ``etc/local.toml``)."""
    r = _Reader(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LocalConfigError(f"{source}: not valid TOML: {e}") from None
    top = r.table("", doc, TOP_KEYS)
    defaults = LocalConfig()
    cell = r.name("cell", top.get("cell", defaults.cell), validate_cell_name)

    keyspaces = defaults.keyspaces
    if "keyspaces" in top:
        raw_ks = top["keyspaces"]
        if not isinstance(raw_ks, list) or not raw_ks:
            raise r.fail("keyspaces", "must be a non-empty array of [[keyspaces]] tables")
        keyspaces = tuple(_keyspace(r, f"keyspaces[{i}]", k) for i, k in enumerate(raw_ks))
        names = [k.name for k in keyspaces]
        if len(set(names)) != len(names):
            raise r.fail("keyspaces", "names a keyspace twice")
        if sum(len(k.shards) for k in keyspaces) > MAX_SHARDS:
            raise r.fail("keyspaces", f"more than {MAX_SHARDS} shards in all")

    gate = r.table("gate", top.get("gate", {}), GATE_KEYS)
    mysql_port = r.integer(
        "gate.mysql_port", gate.get("mysql_port", defaults.gate_mysql_port), 1, 65535
    )
    http_port = r.integer(
        "gate.http_port", gate.get("http_port", defaults.gate_http_port), 1, 65535
    )
    if mysql_port == http_port:
        raise r.fail("gate.http_port", "must differ from gate.mysql_port")
    users = defaults.gate_users
    if "users" in gate:
        if not isinstance(gate["users"], list):
            raise r.fail("gate.users", "must be an array of [[gate.users]] tables")
        users = tuple(_user(r, f"gate.users[{i}]", u) for i, u in enumerate(gate["users"]))
        if len({u.name for u in users}) != len(users):
            raise r.fail("gate.users", "names a user twice")
    gate_options = _options(r, "gate.options", gate.get("options", {}))

    tablet = r.table("tablet", top.get("tablet", {}), TABLET_KEYS)
    tablet_options = _options(r, "tablet.options", tablet.get("options", {}))

    orc = r.table("vtorc", top.get("vtorc", {}), VTORC_KEYS)
    vtorc_instances = r.integer(
        "vtorc.instances", orc.get("instances", defaults.vtorc_instances), 0, MAX_VTORCS
    )
    vtorc_http_port = r.integer(
        "vtorc.http_port", orc.get("http_port", defaults.vtorc_http_port), 1, 65535
    )
    if vtorc_instances and vtorc_http_port in (mysql_port, http_port):
        raise r.fail("vtorc.http_port", "must differ from the gate's ports")
    vtorc_options = _options(r, "vtorc.options", orc.get("options", {}))

    zk = r.table("zookeeper", top.get("zookeeper", {}), ZOOKEEPER_KEYS)
    session = r.seconds(
        "zookeeper.session_timeout", zk.get("session_timeout", defaults.topo_session_timeout)
    )
    timeouts = r.table("timeouts", top.get("timeouts", {}), TIMEOUT_KEYS)
    return LocalConfig(
        cell=cell,
        keyspaces=keyspaces,
        gate_mysql_port=mysql_port,
        gate_http_port=http_port,
        gate_users=users,
        gate_options=gate_options,
        tablet_options=tablet_options,
        vtorc_instances=vtorc_instances,
        vtorc_http_port=vtorc_http_port,
        vtorc_options=vtorc_options,
        topo_session_timeout=session,
        start_timeout=r.seconds("timeouts.start", timeouts.get("start", defaults.start_timeout)),
        serving_timeout=r.seconds(
            "timeouts.serving", timeouts.get("serving", defaults.serving_timeout)
        ),
    )


def load_local_config(path: str | Path | None) -> LocalConfig:
    """Read the cluster description at ``path`` (None: the built-in defaults)."""
    if path is None:
        return LocalConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LocalConfigError(f"cannot read the cluster config {path}: {e}") from None
    return parse_local_config(text, str(path))

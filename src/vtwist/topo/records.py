"""The records stored in the topo: Keyspace, Shard, Tablet (and its health), as JSON.

Every stored value is a JSON object with a ``version`` field (the format version,
``FORMAT_VERSION``). Readers ignore keys they do not know but keep them in ``extra`` and
write them back, so an older process that updates a record written by a newer one does not
drop the newer fields. ``node_version`` is the ZooKeeper znode version the record was read
at (None when it was not read from the topo); updates use it for compare-and-swap. It is
not part of the JSON and not compared.

Keyspace and shard names come from the path, not the JSON; a tablet stores its alias.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vtwist.topo.errors import ValidationError
from vtwist.topo.names import (
    alias_cell,
    parse_key_range,
    validate_durability,
    validate_keyspace_name,
    validate_shard_name,
    validate_tablet_alias,
    validate_tablet_type,
)

FORMAT_VERSION = 1

T = TypeVar("T")


def dump_json(obj: Mapping[str, Any]) -> bytes:
    """The stored form of a record: compact JSON with sorted keys, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """Parse a stored record; ValidationError naming ``what`` if it is not a JSON object
    with an integer ``version``."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValidationError(f"{what}: stored value is not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValidationError(f"{what}: stored value is not a JSON object")
    version = obj.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValidationError(f"{what}: 'version' must be a positive integer")
    return obj


def _field(obj: Mapping[str, Any], key: str, kind: type[T], default: T, what: str) -> T:
    value = _opt(obj, key, kind, what)
    return default if value is None else value


def _opt(obj: Mapping[str, Any], key: str, kind: type[T], what: str) -> T | None:
    value = obj.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValidationError(f"{what}: {key!r} must be of type {kind.__name__}")
    return value


def _extra(obj: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in known and k != "version"}


@dataclass(frozen=True)
class Keyspace:
    """``/global/keyspaces/<name>``: whether it is sharded and its durability policy."""

    name: str
    sharded: bool = False
    durability: str = "none"
    node_version: int | None = field(default=None, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_keyspace_name(self.name)
        validate_durability(self.durability)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in the topo (without the name)."""
        return {
            **self.extra,
            "version": FORMAT_VERSION,
            "sharded": self.sharded,
            "durability": self.durability,
        }

    def to_json(self) -> bytes:
        return dump_json(self.to_dict())

    @classmethod
    def from_json(cls, name: str, data: bytes, node_version: int | None = None) -> Keyspace:
        what = f"keyspace {name!r}"
        obj = load_json(data, what)
        return cls(
            name=name,
            sharded=_field(obj, "sharded", bool, False, what),
            durability=_field(obj, "durability", str, "none", what),
            node_version=node_version,
            extra=_extra(obj, {"sharded", "durability"}),
        )


@dataclass(frozen=True)
class KeyRange:
    """A range of keyspace ids, as lower-case hex bounds; "" is unbounded on that side."""

    start: str = ""
    end: str = ""

    @classmethod
    def for_shard(cls, shard: str) -> KeyRange:
        """The key range a shard name denotes (the full range for plain names like ``0``)."""
        parsed = parse_key_range(validate_shard_name(shard))
        return cls() if parsed is None else cls(*parsed)

    def contains(self, keyspace_id: bytes) -> bool:
        """True if ``keyspace_id`` falls in [start, end)."""
        if self.start and keyspace_id < bytes.fromhex(self.start):
            return False
        return not (self.end and keyspace_id >= bytes.fromhex(self.end))

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class Shard:
    """``/global/keyspaces/<ks>/shards/<name>``: key range and current primary.

    ``primary_term`` grows by one at every reparent; when two tablets claim to be primary,
    the one with the higher term wins.
    """

    keyspace: str
    name: str
    key_range: KeyRange = field(default_factory=KeyRange)
    primary_alias: str | None = None
    primary_term: int = 0
    node_version: int | None = field(default=None, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_keyspace_name(self.keyspace)
        validate_shard_name(self.name)
        if self.primary_alias is not None:
            validate_tablet_alias(self.primary_alias)
        if self.primary_term < 0:
            raise ValidationError(f"shard {self.keyspace}/{self.name}: primary_term is negative")

    @classmethod
    def new(cls, keyspace: str, name: str) -> Shard:
        """A fresh shard record whose key range comes from its name."""
        return cls(keyspace=keyspace, name=name, key_range=KeyRange.for_shard(name))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "version": FORMAT_VERSION,
            "key_range": {"start": self.key_range.start, "end": self.key_range.end},
            "primary_alias": self.primary_alias,
            "primary_term": self.primary_term,
        }

    def to_json(self) -> bytes:
        return dump_json(self.to_dict())

    @classmethod
    def from_json(
        cls, keyspace: str, name: str, data: bytes, node_version: int | None = None
    ) -> Shard:
        what = f"shard {keyspace}/{name}"
        obj = load_json(data, what)
        kr = _field(obj, "key_range", dict, {}, what)
        return cls(
            keyspace=keyspace,
            name=name,
            key_range=KeyRange(
                start=_field(kr, "start", str, "", what), end=_field(kr, "end", str, "", what)
            ),
            primary_alias=_opt(obj, "primary_alias", str, what),
            primary_term=_field(obj, "primary_term", int, 0, what),
            node_version=node_version,
            extra=_extra(obj, {"key_range", "primary_alias", "primary_term"}),
        )


@dataclass(frozen=True)
class TabletHealth:
    """The tablet's last published health: replication lag, error, and when it was taken."""

    lag_s: float | None = None
    error: str | None = None
    updated: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"lag_s": self.lag_s, "error": self.error, "updated": self.updated}

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], what: str) -> TabletHealth:
        return cls(
            lag_s=_opt(obj, "lag_s", float, what),
            error=_opt(obj, "error", str, what),
            updated=_opt(obj, "updated", float, what),
        )


@dataclass(frozen=True)
class Tablet:
    """``/cells/<cell>/tablets/<alias>`` (EPHEMERAL): who the tablet is and where.

    The JSON key of ``tablet_type`` is ``type``.
    """

    alias: str
    keyspace: str
    shard: str
    tablet_type: str = "replica"
    host: str = "127.0.0.1"
    rpc_port: int = 0
    http_port: int = 0
    mysql_port: int = 0
    serving: bool = False
    primary_term: int = 0
    health: TabletHealth = field(default_factory=TabletHealth)
    node_version: int | None = field(default=None, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_tablet_alias(self.alias)
        validate_keyspace_name(self.keyspace)
        validate_shard_name(self.shard)
        validate_tablet_type(self.tablet_type)
        for port_name in ("rpc_port", "http_port", "mysql_port"):
            port = getattr(self, port_name)
            if not 0 <= port <= 65535:
                raise ValidationError(f"tablet {self.alias}: {port_name} {port} is out of range")

    @property
    def cell(self) -> str:
        """The cell the tablet lives in (from its alias)."""
        return alias_cell(self.alias)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "version": FORMAT_VERSION,
            "alias": self.alias,
            "keyspace": self.keyspace,
            "shard": self.shard,
            "type": self.tablet_type,
            "host": self.host,
            "rpc_port": self.rpc_port,
            "http_port": self.http_port,
            "mysql_port": self.mysql_port,
            "serving": self.serving,
            "primary_term": self.primary_term,
            "health": self.health.to_dict(),
        }

    def to_json(self) -> bytes:
        return dump_json(self.to_dict())

    @classmethod
    def from_json(cls, alias: str, data: bytes, node_version: int | None = None) -> Tablet:
        what = f"tablet {alias}"
        obj = load_json(data, what)
        stored_alias = _field(obj, "alias", str, alias, what)
        if stored_alias != alias:
            raise ValidationError(f"{what}: the record names alias {stored_alias!r}")
        return cls(
            alias=alias,
            keyspace=_field(obj, "keyspace", str, "", what),
            shard=_field(obj, "shard", str, "", what),
            tablet_type=_field(obj, "type", str, "replica", what),
            host=_field(obj, "host", str, "", what),
            rpc_port=_field(obj, "rpc_port", int, 0, what),
            http_port=_field(obj, "http_port", int, 0, what),
            mysql_port=_field(obj, "mysql_port", int, 0, what),
            serving=_field(obj, "serving", bool, False, what),
            primary_term=_field(obj, "primary_term", int, 0, what),
            health=TabletHealth.from_dict(_field(obj, "health", dict, {}, what), what),
            node_version=node_version,
            extra=_extra(
                obj,
                {
                    "alias",
                    "keyspace",
                    "shard",
                    "type",
                    "host",
                    "rpc_port",
                    "http_port",
                    "mysql_port",
                    "serving",
                    "primary_term",
                    "health",
                },
            ),
        )

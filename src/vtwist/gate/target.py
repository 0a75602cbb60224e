"""Vitess target syntax (sans-IO): ``ks``, ``ks@primary|replica|rdonly``, ``ks:shard@type``,
``@primary``.

``parse_target(text, default_type)`` turns a database name (login packet, ``USE``,
COM_INIT_DB) into a ``Target``. Errors a client sees:

- a bad syntax (empty keyspace with a shard, unknown tablet type, stray characters):
  ERROR 1105 naming the accepted syntax;
- an unknown keyspace (``check_keyspace``): ERROR 1049 ``Unknown database 'x'``.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError

PRIMARY: Final = "primary"
REPLICA: Final = "replica"
RDONLY: Final = "rdonly"
TABLET_TYPES: Final = (PRIMARY, REPLICA, RDONLY)
# Old Vitess spelling still found in client configs.
_ALIASES: Final = {"master": PRIMARY}

SYNTAX: Final = "keyspace, keyspace@primary|replica|rdonly, keyspace:shard@type or @primary"
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_SHARD: Final = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a session's queries go: ``keyspace`` ("" = the only one), ``shard`` ("" = the
    keyspace's only shard), ``tablet_type``; ``explicit_type`` says the client wrote it."""

    keyspace: str
    shard: str
    tablet_type: str
    explicit_type: bool = False

    def with_type(self, tablet_type: str) -> Target:
        """The same keyspace and shard at another tablet type."""
        return Target(self.keyspace, self.shard, tablet_type, True)

    def __str__(self) -> str:
        where = self.keyspace + (f":{self.shard}" if self.shard else "")
        return f"{where}@{self.tablet_type}"

    def database(self) -> str:
        """What ``SELECT DATABASE()`` shows: the name as a client would write it back."""
        if not self.explicit_type:
            return self.keyspace + (f":{self.shard}" if self.shard else "")
        return str(self)


def bad_target(text: str, why: str) -> MySQLError:
    """ERROR 1105 for a database name that is not a valid target."""
    return MySQLError(
        ErrorCode.UNKNOWN_ERROR,
        f"invalid target {text!r}: {why}; write {SYNTAX}",
    )


def parse_tablet_type(text: str) -> str | None:
    """The canonical tablet type of ``text`` (case-insensitive), or None."""
    low = text.lower()
    low = _ALIASES.get(low, low)
    return low if low in TABLET_TYPES else None


def parse_target(text: str, default_type: str = PRIMARY) -> Target:
    """Parse a database name into a ``Target`` (``MySQLError`` 1105 on a bad syntax)."""
    if default_type not in TABLET_TYPES:
        raise ValueError(f"default_type must be one of {TABLET_TYPES}")
    name = text.strip().strip("`")
    where, at, type_text = name.partition("@")
    tablet_type = default_type
    if at:
        parsed = parse_tablet_type(type_text)
        if parsed is None:
            raise bad_target(text, f"unknown tablet type {type_text!r}")
        tablet_type = parsed
    keyspace, colon, shard = where.partition(":")
    if not keyspace and not at:
        raise bad_target(text, "no keyspace")
    if keyspace and not _NAME.fullmatch(keyspace):
        raise bad_target(text, f"{keyspace!r} is not a keyspace name")
    if colon:
        if not keyspace:
            raise bad_target(text, "a shard needs its keyspace")
        if not _SHARD.fullmatch(shard):
            raise bad_target(text, f"{shard!r} is not a shard name")
    return Target(keyspace, shard, tablet_type, bool(at))


#: mysqld's own schemas: not keyspaces, but readable from one by their qualified names.
SYSTEM_SCHEMAS = frozenset({"information_schema", "performance_schema", "mysql", "sys"})


def unknown_keyspace(keyspace: str) -> MySQLError:
    """ERROR 1049 for a keyspace the topo does not know (for one of mysqld's own schemas,
    how to read it instead)."""
    if keyspace.lower() in SYSTEM_SCHEMAS:
        return MySQLError(
            ErrorCode.BAD_DB,
            f"Unknown database '{keyspace}': it is mysqld's, not a keyspace; USE a keyspace "
            f"and name its tables in full ({keyspace}.TABLES...)",
        )
    return MySQLError(
        ErrorCode.BAD_DB,
        f"Unknown database '{keyspace}'; SHOW DATABASES lists the keyspaces",
    )


def check_keyspace(target: Target, keyspaces: Container[str]) -> Target:
    """``target`` if its keyspace exists (or is unnamed), else ERROR 1049."""
    if target.keyspace and target.keyspace not in keyspaces:
        raise unknown_keyspace(target.keyspace)
    return target

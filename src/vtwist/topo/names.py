"""Validation of topo names: keyspace, shard, cell, tablet alias, and shard key ranges.

Names become ZooKeeper path components and MySQL database names, so they are restricted
to a safe alphabet; every error says which name is wrong and what is allowed.
"""

from __future__ import annotations

import re

from vtwist.topo.errors import ValidationError

MAX_NAME_LEN = 64
_IDENT = re.compile(r"^[A-Za-z0-9_]+$")
_CELL = re.compile(r"^[a-z0-9_]+$")
_KEY_RANGE = re.compile(r"^([0-9a-f]*)-([0-9a-f]*)$")
_ALIAS = re.compile(r"^([a-z0-9_]+)-([0-9]{1,10})$")
TABLET_TYPES = ("primary", "replica", "rdonly", "spare", "drained")
DURABILITY_POLICIES = ("none", "semi_sync")


def _check_len(what: str, name: str) -> None:
    if not name:
        raise ValidationError(f"{what} name is empty")
    if len(name) > MAX_NAME_LEN:
        raise ValidationError(f"{what} name {name!r} is longer than {MAX_NAME_LEN} characters")


def validate_keyspace_name(name: str) -> str:
    """Return ``name`` if it is a valid keyspace name (letters, digits, ``_``), else raise."""
    _check_len("keyspace", name)
    if not _IDENT.match(name):
        raise ValidationError(
            f"keyspace name {name!r} is invalid: use letters, digits and '_' only"
        )
    return name


def validate_cell_name(name: str) -> str:
    """Return ``name`` if it is a valid cell name (lower-case letters, digits, ``_``)."""
    _check_len("cell", name)
    if not _CELL.match(name):
        raise ValidationError(
            f"cell name {name!r} is invalid: use lower-case letters, digits and '_' only"
            " (no '-': it separates the cell from the uid in tablet aliases)"
        )
    return name


def parse_key_range(shard: str) -> tuple[str, str] | None:
    """The (start, end) hex key range of a shard name like ``-80`` or ``40-c0``.

    Returns None for a plain shard name (``0``, ``main``), which covers the full range.
    ``-`` is the full range as ("", ""). Raises if the range is empty or reversed.
    """
    m = _KEY_RANGE.match(shard)
    if m is None:
        return None
    start, end = m.group(1), m.group(2)
    for bound in (start, end):
        if len(bound) % 2:
            raise ValidationError(
                f"shard {shard!r}: key range bounds are whole bytes (an even number of hex digits)"
            )
    if start and end and bytes.fromhex(start) >= bytes.fromhex(end):
        raise ValidationError(f"shard {shard!r}: the key range start must be below its end")
    return start, end


def validate_shard_name(name: str) -> str:
    """Return ``name`` if it is a valid shard name: a key range (``-80``, ``80-``,
    ``40-80``, lower-case hex) or a plain name (``0``, letters, digits, ``_``)."""
    _check_len("shard", name)
    if _KEY_RANGE.match(name):
        parse_key_range(name)
        return name
    if not _IDENT.match(name):
        raise ValidationError(
            f"shard name {name!r} is invalid: use a key range like '-80', '80-', '40-80'"
            " (lower-case hex) or a plain name like '0'"
        )
    return name


def validate_tablet_alias(alias: str) -> str:
    """Return ``alias`` if it is ``<cell>-<uid>`` (e.g. ``zone1-100``), else raise."""
    if not _ALIAS.match(alias):
        raise ValidationError(
            f"tablet alias {alias!r} is invalid: use <cell>-<uid>, e.g. 'zone1-100'"
            " (cell: lower-case letters, digits, '_'; uid: up to 10 digits)"
        )
    validate_cell_name(alias_cell(alias))
    return alias


def alias_cell(alias: str) -> str:
    """The cell part of a tablet alias (``zone1`` of ``zone1-100``)."""
    return alias.rsplit("-", 1)[0]


def split_keyspace_shard(value: str) -> tuple[str, str]:
    """Parse ``KS/SHARD`` (as the CLI takes it) into validated names."""
    if value.count("/") != 1:
        raise ValidationError(f"{value!r} is not KEYSPACE/SHARD (e.g. 'commerce/0')")
    keyspace, shard = value.split("/")
    return validate_keyspace_name(keyspace), validate_shard_name(shard)


def validate_tablet_type(value: str) -> str:
    """Return ``value`` if it is a tablet type (primary, replica, rdonly, spare, drained)."""
    if value not in TABLET_TYPES:
        raise ValidationError(
            f"tablet type {value!r} is invalid: use one of {', '.join(TABLET_TYPES)}"
        )
    return value


def validate_durability(value: str) -> str:
    """Return ``value`` if it is a durability policy (none, semi_sync)."""
    if value not in DURABILITY_POLICIES:
        raise ValidationError(
            f"durability policy {value!r} is invalid: use one of {', '.join(DURABILITY_POLICIES)}"
        )
    return value

"""VSchema: a keyspace's vindexes and tables, in Vitess's JSON shape, validated.

```
{"sharded": true,
 "vindexes": {"hash": {"type": "hash"}},
 "tables": {"customer": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}
```

``VSchema.parse`` accepts that JSON (as text or an already-decoded object) and raises
``ValidationError`` with the JSON path of the first problem: unknown keys, wrong types,
unknown vindex types, a table naming an undefined vindex, a sharded table without a unique
primary vindex, vindexes in an unsharded keyspace. The stored form adds ``version``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vtwist.topo.errors import ValidationError
from vtwist.topo.records import FORMAT_VERSION, dump_json

# Vindex types known to Vitess, and whether each maps a value to at most one keyspace id
# (only a unique vindex can be a table's primary vindex).
VINDEX_TYPES: dict[str, bool] = {
    "hash": True,
    "xxhash": True,
    "binary": True,
    "binary_md5": True,
    "numeric": True,
    "numeric_static_map": True,
    "reverse_bits": True,
    "unicode_loose_md5": True,
    "unicode_loose_xxhash": True,
    "region_json": True,
    "multicol": True,
    "lookup_unique": True,
    "consistent_lookup_unique": True,
    "lookup": False,
    "consistent_lookup": False,
    "null": False,
}
TABLE_TYPES = ("reference", "sequence")
MAX_NAME_LEN = 64


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{where}: must be a JSON object")
    return value


def _keys(obj: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ValidationError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{where}: must be a non-empty string")
    return value


def _name(value: str, where: str) -> str:
    if not value or len(value) > MAX_NAME_LEN or "/" in value or "`" in value:
        raise ValidationError(
            f"{where}: {value!r} is not a valid name (1-{MAX_NAME_LEN} characters, no '/' or '`')"
        )
    return value


@dataclass(frozen=True)
class Vindex:
    """A named vindex: its type, string parameters, and owner table (lookup vindexes)."""

    type: str
    params: Mapping[str, str] = field(default_factory=dict)
    owner: str | None = None

    @property
    def unique(self) -> bool:
        return VINDEX_TYPES.get(self.type, False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.params:
            out["params"] = dict(self.params)
        if self.owner is not None:
            out["owner"] = self.owner
        return out


@dataclass(frozen=True)
class ColumnVindex:
    """A table's use of a vindex on one column (or several, for multi-column vindexes)."""

    name: str
    columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        if len(self.columns) == 1:
            return {"column": self.columns[0], "name": self.name}
        return {"columns": list(self.columns), "name": self.name}


@dataclass(frozen=True)
class Table:
    """A table's vindexes (the first is the primary vindex) and optional type/sequence."""

    column_vindexes: tuple[ColumnVindex, ...] = ()
    type: str | None = None
    auto_increment: Mapping[str, str] | None = None
    pinned: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.column_vindexes:
            out["column_vindexes"] = [cv.to_dict() for cv in self.column_vindexes]
        if self.type is not None:
            out["type"] = self.type
        if self.auto_increment is not None:
            out["auto_increment"] = dict(self.auto_increment)
        if self.pinned is not None:
            out["pinned"] = self.pinned
        return out


@dataclass(frozen=True)
class VSchema:
    """A keyspace's VSchema. Build it with ``VSchema.parse`` (validated)."""

    sharded: bool = False
    vindexes: Mapping[str, Vindex] = field(default_factory=dict)
    tables: Mapping[str, Table] = field(default_factory=dict)
    node_version: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The Vitess-shaped JSON object (without the format version)."""
        return {
            "sharded": self.sharded,
            "vindexes": {n: v.to_dict() for n, v in sorted(self.vindexes.items())},
            "tables": {n: t.to_dict() for n, t in sorted(self.tables.items())},
        }

    def to_json(self) -> bytes:
        """The stored form: ``to_dict()`` plus ``version``."""
        return dump_json({**self.to_dict(), "version": FORMAT_VERSION})

    @classmethod
    def from_json(
        cls, data: bytes, node_version: int | None = None, what: str = "vschema"
    ) -> VSchema:
        """Parse and validate the stored form."""
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError(f"{what}: not valid JSON ({e})") from None
        vs = cls.parse(obj, what)
        return VSchema(vs.sharded, vs.vindexes, vs.tables, node_version)

    @classmethod
    def parse(cls, source: str | bytes | Any, what: str = "vschema") -> VSchema:
        """Validate a VSchema given as JSON text or a decoded object."""
        obj = source
        if isinstance(source, str | bytes):
            try:
                obj = json.loads(source)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValidationError(f"{what}: not valid JSON ({e})") from None
        top = _obj(obj, what)
        _keys(top, ("sharded", "vindexes", "tables", "version"), what)
        sharded = top.get("sharded", False)
        if not isinstance(sharded, bool):
            raise ValidationError(f"{what}.sharded: must be true or false")
        vindexes = {
            _name(name, f"{what}.vindexes"): _parse_vindex(spec, f"{what}.vindexes.{name}")
            for name, spec in _obj(top.get("vindexes", {}), f"{what}.vindexes").items()
        }
        tables = {
            _name(name, f"{what}.tables"): _parse_table(spec, f"{what}.tables.{name}")
            for name, spec in _obj(top.get("tables", {}), f"{what}.tables").items()
        }
        _check_references(sharded, vindexes, tables, what)
        return cls(sharded=sharded, vindexes=vindexes, tables=tables)

    def check_keyspace(self, keyspace: str, keyspace_sharded: bool) -> None:
        """Refuse a VSchema whose ``sharded`` flag disagrees with the keyspace record."""
        if self.sharded != keyspace_sharded:
            state = "sharded" if keyspace_sharded else "unsharded"
            raise ValidationError(
                f"vschema.sharded is {str(self.sharded).lower()} but keyspace {keyspace!r} is"
                f" {state}: make them agree"
            )


def _parse_vindex(spec: Any, where: str) -> Vindex:
    obj = _obj(spec, where)
    _keys(obj, ("type", "params", "owner"), where)
    vtype = _str(obj.get("type"), f"{where}.type")
    if vtype not in VINDEX_TYPES:
        raise ValidationError(
            f"{where}.type: unknown vindex type {vtype!r}"
            f" (known: {', '.join(sorted(VINDEX_TYPES))})"
        )
    params = _obj(obj.get("params", {}), f"{where}.params")
    for key, value in params.items():
        if not isinstance(value, str):
            raise ValidationError(f"{where}.params.{key}: must be a string")
    owner = obj.get("owner")
    if owner is not None:
        owner = _str(owner, f"{where}.owner")
    return Vindex(type=vtype, params=dict(params), owner=owner)


def _parse_table(spec: Any, where: str) -> Table:
    obj = _obj(spec, where)
    _keys(
        obj,
        ("column_vindexes", "type", "auto_increment", "pinned", "columns",
         "column_list_authoritative"),
        where,
    )  # fmt: skip
    raw_cvs = obj.get("column_vindexes", [])
    if not isinstance(raw_cvs, list):
        raise ValidationError(f"{where}.column_vindexes: must be a list")
    cvs = tuple(
        _parse_column_vindex(cv, f"{where}.column_vindexes[{i}]") for i, cv in enumerate(raw_cvs)
    )
    ttype = obj.get("type")
    if ttype is not None and ttype not in TABLE_TYPES:
        raise ValidationError(f"{where}.type: must be one of {', '.join(TABLE_TYPES)}")
    auto_inc = obj.get("auto_increment")
    if auto_inc is not None:
        ai = _obj(auto_inc, f"{where}.auto_increment")
        _keys(ai, ("column", "sequence"), f"{where}.auto_increment")
        auto_inc = {
            "column": _str(ai.get("column"), f"{where}.auto_increment.column"),
            "sequence": _str(ai.get("sequence"), f"{where}.auto_increment.sequence"),
        }
    pinned = obj.get("pinned")
    if pinned is not None:
        pinned = _str(pinned, f"{where}.pinned")
    return Table(column_vindexes=cvs, type=ttype, auto_increment=auto_inc, pinned=pinned)


def _parse_column_vindex(spec: Any, where: str) -> ColumnVindex:
    obj = _obj(spec, where)
    _keys(obj, ("column", "columns", "name"), where)
    name = _str(obj.get("name"), f"{where}.name")
    if ("column" in obj) == ("columns" in obj):
        raise ValidationError(f"{where}: give exactly one of 'column' or 'columns'")
    if "column" in obj:
        columns: tuple[str, ...] = (_str(obj["column"], f"{where}.column"),)
    else:
        raw = obj["columns"]
        if not isinstance(raw, list) or not raw:
            raise ValidationError(f"{where}.columns: must be a non-empty list of column names")
        columns = tuple(_str(c, f"{where}.columns[{i}]") for i, c in enumerate(raw))
    return ColumnVindex(name=name, columns=columns)


def _check_references(
    sharded: bool, vindexes: Mapping[str, Vindex], tables: Mapping[str, Table], what: str
) -> None:
    for tname, table in tables.items():
        where = f"{what}.tables.{tname}"
        for i, cv in enumerate(table.column_vindexes):
            if cv.name not in vindexes:
                raise ValidationError(
                    f"{where}.column_vindexes[{i}].name: vindex {cv.name!r} is not defined"
                    " in vindexes"
                )
        if not sharded:
            if table.column_vindexes:
                raise ValidationError(
                    f"{where}: an unsharded keyspace has no column_vindexes"
                    ' (set "sharded": true to shard it)'
                )
            continue
        if table.type in TABLE_TYPES:
            continue
        if not table.column_vindexes:
            raise ValidationError(
                f"{where}: a table of a sharded keyspace needs column_vindexes"
                " (the first one is its primary vindex)"
            )
        primary = vindexes[table.column_vindexes[0].name]
        if not primary.unique:
            raise ValidationError(
                f"{where}.column_vindexes[0]: the primary vindex must be unique;"
                f" {table.column_vindexes[0].name!r} has non-unique type {primary.type!r}"
            )
    for vname, vindex in vindexes.items():
        if vindex.owner is not None and vindex.owner not in tables:
            raise ValidationError(
                f"{what}.vindexes.{vname}.owner: table {vindex.owner!r} is not defined in tables"
            )

"""VSchema validation: Vitess-shaped JSON accepted, bad files refused with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vtwist.topo import VSchema
from vtwist.topo.errors import ValidationError

GOOD: dict[str, Any] = {
    "sharded": True,
    "vindexes": {
        "hash": {"type": "hash"},
        "name_idx": {
            "type": "consistent_lookup",
            "params": {"table": "name_idx", "from": "name", "to": "id"},
            "owner": "customer",
        },
        "multi": {"type": "multicol"},
    },
    "tables": {
        "customer": {
            "column_vindexes": [
                {"column": "id", "name": "hash"},
                {"column": "name", "name": "name_idx"},
            ],
            "auto_increment": {"column": "id", "sequence": "customer_seq"},
        },
        "orders": {"column_vindexes": [{"columns": ["a", "b"], "name": "multi"}]},
        "countries": {"type": "reference"},
    },
}


def test_good_vschema_round_trips() -> None:
    vs = VSchema.parse(json.dumps(GOOD))
    assert vs.sharded
    assert vs.tables["orders"].column_vindexes[0].columns == ("a", "b")
    assert vs.vindexes["name_idx"].owner == "customer"
    assert vs.to_dict() == GOOD
    stored = json.loads(vs.to_json())
    assert stored["version"] == 1
    assert VSchema.from_json(vs.to_json(), 3) == vs


def test_unsharded_vschema_without_vindexes() -> None:
    vs = VSchema.parse({"tables": {"product": {}, "seq": {"type": "sequence"}}})
    assert not vs.sharded and set(vs.tables) == {"product", "seq"}
    assert VSchema.parse("{}") == VSchema()


def _with(path: list[str | int], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(GOOD))
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ("{not json", "not valid JSON"),
        ([], "vschema: must be a JSON object"),
        ({"sharded": "yes"}, "vschema.sharded: must be true or false"),
        ({"tabels": {}}, "unknown key 'tabels'"),
        (_with(["vindexes", "hash", "type"], "md6"), "unknown vindex type 'md6'"),
        (_with(["vindexes", "hash"], {"typ": "hash"}), "unknown key 'typ'"),
        (_with(["vindexes", "hash", "params"], {"x": 1}), "params.x: must be a string"),
        (
            _with(["tables", "customer", "column_vindexes", 0, "name"], "nope"),
            "tables.customer.column_vindexes[0].name: vindex 'nope' is not defined",
        ),
        (
            _with(
                ["tables", "customer", "column_vindexes"], [{"column": "name", "name": "name_idx"}]
            ),
            "primary vindex must be unique",
        ),
        (_with(["tables", "customer", "column_vindexes"], []), "needs column_vindexes"),
        (_with(["tables", "customer", "column_vindexes"], {}), "must be a list"),
        (
            _with(["tables", "orders", "column_vindexes"], [{"name": "multi"}]),
            "exactly one of 'column' or 'columns'",
        ),
        (_with(["tables", "countries", "type"], "view"), "must be one of reference, sequence"),
        (_with(["tables", "customer", "auto_increment"], {"column": "id"}), "sequence"),
        (_with(["vindexes", "name_idx", "owner"], "ghost"), "table 'ghost' is not defined"),
        (_with(["sharded"], False), "an unsharded keyspace has no column_vindexes"),
        ({"tables": {"a/b": {}}}, "not a valid name"),
    ],
)
def test_bad_vschema_refused_with_reason(doc: Any, reason: str) -> None:
    with pytest.raises(ValidationError) as e:
        VSchema.parse(doc if isinstance(doc, str) else json.dumps(doc))
    assert reason in str(e.value)


def test_sharded_flag_must_match_keyspace() -> None:
    vs = VSchema.parse(GOOD)
    vs.check_keyspace("customer", True)
    with pytest.raises(ValidationError, match="keyspace 'commerce' is unsharded"):
        vs.check_keyspace("commerce", False)

"""Loading TOML into a Config: every error path names the key, the reason and the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.framework.dummy_tap import SCHEMA
from vtwist.config import (
    Config,
    ConfigError,
    IntOption,
    PathOption,
    Schema,
    load_config,
    parse_config,
)

GOOD = 'alias = "zone1-7"\n'


def errors(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(SCHEMA, text, source="etc/dummy.toml", **kw)  # type: ignore[arg-type]
    return str(info.value).splitlines()


def test_defaults_and_values() -> None:
    cfg = parse_config(
        SCHEMA,
        GOOD + '[pool]\nsize = 8\nwait_timeout = "250ms"\n[policy]\ndenied_tables = ["t"]\n',
        source="etc/dummy.toml",
    )
    assert cfg.get_int("pool.size") == 8
    assert cfg.get_float("pool.wait_timeout") == 0.25
    assert cfg.get_list("policy.denied_tables") == ("t",)
    assert cfg.get_str("mysql.app_user") == "app"
    assert cfg.get_bool("health.serving") is True
    assert cfg.source("pool.size") == "etc/dummy.toml"
    assert cfg.source("mysql.app_user") == "default"
    assert cfg.section("pool") == {"size": 8, "min_idle": 0, "wait_timeout": 0.25}
    assert list(cfg) == SCHEMA.keys()
    assert cfg.value(SCHEMA["pool.size"]) == 8


def test_config_is_frozen() -> None:
    cfg = parse_config(SCHEMA, GOOD)
    with pytest.raises(AttributeError):
        cfg.schema = SCHEMA
    with pytest.raises(TypeError):
        cfg["pool.size"] = 3  # type: ignore[index]
    assert isinstance(cfg.get_list("policy.denied_tables"), tuple)


def test_typed_getters_refuse_the_wrong_type() -> None:
    cfg = parse_config(SCHEMA, GOOD)
    with pytest.raises(
        TypeError, match=r"pool.size is of type integer: get_str\(\) cannot read it"
    ):
        cfg.get_str("pool.size")
    with pytest.raises(KeyError):
        cfg.get_int("pool.nope")
    with pytest.raises(KeyError, match="not this schema's option"):
        cfg.value(IntOption("pool.size", 1, doc="Another option with the same key."))


def test_bound_error_names_key_reason_and_file() -> None:
    assert errors(GOOD + "[pool]\nsize = 0\n") == [
        "pool.size: must be >= 1, got 0 (in etc/dummy.toml)"
    ]


def test_type_error_names_key() -> None:
    assert errors(GOOD + '[pool]\nsize = "16"\n') == [
        "pool.size: expected an integer, got string '16' (in etc/dummy.toml)"
    ]


def test_unknown_key_suggests() -> None:
    assert errors(GOOD + "[pool]\nsise = 3\n") == [
        "pool.sise: unknown key (did you mean pool.size?) (in etc/dummy.toml)"
    ]


def test_unknown_table_suggests() -> None:
    assert errors(GOOD + "[mysq]\napp_user = 'x'\n") == [
        "mysq: unknown table (did you mean mysql?) (in etc/dummy.toml)"
    ]


def test_unknown_key_without_suggestion() -> None:
    assert errors(GOOD + "zzzzzz = 1\n") == ["zzzzzz: unknown key (in etc/dummy.toml)"]


def test_table_given_a_value_and_value_given_a_table() -> None:
    assert errors(GOOD + "pool = 3\n") == [
        "pool: is a table of keys, got integer 3 (in etc/dummy.toml)"
    ]
    assert errors(GOOD + "[pool.size]\nx = 1\n") == [
        "pool.size: expected an integer, got a table (in etc/dummy.toml)"
    ]


def test_required_missing() -> None:
    assert errors("") == ["alias: required: set it in the config file or with --alias"]


def test_all_problems_reported_at_once() -> None:
    lines = errors('[pool]\nsize = 0\n[tablet]\ntype = "master"\n')
    assert [line.split(":")[0] for line in lines] == ["pool.size", "tablet.type", "alias"]
    assert "must be one of primary, replica, rdonly; got 'master'" in lines[1]


def test_choice_typo_suggests() -> None:
    assert errors(GOOD + '[tablet]\ntype = "replcia"\n') == [
        "tablet.type: must be one of primary, replica, rdonly; got 'replcia' "
        "(did you mean replica?) (in etc/dummy.toml)"
    ]


def test_invalid_toml() -> None:
    (line,) = errors("pool.size = = 3\n")
    assert line.startswith("config: invalid TOML: ") and line.endswith("(in etc/dummy.toml)")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config: cannot read .*nope.toml: No such file"):
        load_config(SCHEMA, tmp_path / "nope.toml")


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "dummy.toml"
    path.write_text(GOOD + "[pool]\nsize = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(SCHEMA, path)
    assert str(info.value) == f"pool.size: must be >= 1, got 0 (in {path})"
    assert info.value.keys == ["pool.size"]
    path.write_text(GOOD)
    assert load_config(SCHEMA, str(path)).get_str("alias") == "zone1-7"


def test_overrides_and_flags_precedence() -> None:
    text = GOOD + "[pool]\nsize = 8\nmin_idle = 2\n"
    cfg = parse_config(
        SCHEMA,
        text,
        overrides={"pool.size": 9, "pool.min_idle": 3},
        flags={"pool.size": "10"},
    )
    assert cfg.get_int("pool.size") == 10 and cfg.source("pool.size") == "--pool-size"
    assert cfg.get_int("pool.min_idle") == 3 and cfg.source("pool.min_idle") == "override"


def test_flag_errors_name_the_flag() -> None:
    assert errors(GOOD, flags={"pool.size": "0"}) == [
        "pool.size: must be >= 1, got 0 (from --pool-size)"
    ]
    assert errors(GOOD, flags={"pool.size": "x"}) == [
        "pool.size: expected an integer, got 'x' (from --pool-size)"
    ]
    assert errors(GOOD, overrides={"pool.sise": 1}) == [
        "pool.sise: unknown key (did you mean pool.size?) (override)"
    ]


def test_cross_key_check_names_key_and_source() -> None:
    assert errors(GOOD + "[pool]\nsize = 2\nmin_idle = 3\n") == [
        "pool.min_idle: must not exceed pool.size (in etc/dummy.toml)"
    ]


def test_config_problem_helper() -> None:
    cfg = parse_config(SCHEMA, GOOD, source="etc/dummy.toml", flags={"pool.size": "3"})
    assert str(cfg.problem("pool.size", "too small for 10 gates")) == (
        "pool.size: too small for 10 gates (from --pool-size)"
    )
    assert str(cfg.problem("alias", "taken")) == "alias: taken (in etc/dummy.toml)"


def test_secrets_redacted() -> None:
    cfg = parse_config(SCHEMA, GOOD + '[mysql]\napp_password = "hunter2"\n')
    assert cfg.get_str("mysql.app_password") == "hunter2"
    assert cfg.redacted()["mysql.app_password"] == "<secret>"
    assert "hunter2" not in repr(cfg)


def test_path_must_exist(tmp_path: Path) -> None:
    schema = Schema("r", [PathOption("users.file", "", must_exist=True, doc="Users.")])
    assert load_config(schema).get_str("users.file") == ""
    (tmp_path / "u.toml").write_text("")
    ok = parse_config(schema, f'users.file = "{tmp_path / "u.toml"}"')
    assert ok.get_str("users.file").endswith("u.toml")
    with pytest.raises(
        ConfigError, match=r"^users.file: no such file or directory: .*\(from --users-file\)"
    ):
        load_config(schema, flags={"users.file": str(tmp_path / "missing")})


def test_config_is_a_mapping() -> None:
    cfg = parse_config(SCHEMA, GOOD)
    assert isinstance(cfg, Config)
    assert dict(cfg)["alias"] == "zone1-7" and len(cfg) == len(SCHEMA)

"""The documented example TOML, the etc/ drift check, and the ``python -m vtwist.config`` CLI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from tests.unit.framework.dummy_tap import SCHEMA
from vtwist.config import (
    ConfigOptions,
    ExampleDriftError,
    assert_example_current,
    example_drift,
    load_config,
    parse_config,
    render_example,
)
from vtwist.config.__main__ import main

REPO = Path(__file__).resolve().parents[3]


def test_example_documents_every_key() -> None:
    text = render_example(SCHEMA)
    for opt in SCHEMA:
        assert opt.doc in text
        assert f"Flag: --{opt.flag}." in text
    assert "# Required. Alias of this dummy." in text
    assert (
        "[pool]\n# Connections in the pool. Type: integer, 1..4096. Flag: --pool-size.\nsize = 16\n"
        in text
    )
    assert 'wait_timeout = "5s"' in text
    assert 'listen = "tcp:15999:interface=127.0.0.1"' in text
    # Top-level keys come before any table, as TOML requires.
    assert text.index('alias = "zone1-100"') < text.index("[pool]")


def test_example_loads_to_the_defaults() -> None:
    text = render_example(SCHEMA)
    cfg = parse_config(SCHEMA, text)
    for opt in SCHEMA:
        expected = opt.example if opt.required else opt.default
        assert cfg[opt.key] == expected, opt.key
    # Every key is written out, none left to chance.
    flat = tomllib.loads(text)
    assert flat["pool"]["size"] == 16 and flat["alias"] == "zone1-100"


def test_drift_check(tmp_path: Path) -> None:
    path = tmp_path / "dummy.toml"
    path.write_text(render_example(SCHEMA))
    assert example_drift(SCHEMA, path) is None
    assert_example_current(SCHEMA, path)

    path.write_text(render_example(SCHEMA).replace("size = 16", "size = 17"))
    drift = example_drift(SCHEMA, path)
    assert drift is not None and "-size = 17" in drift and "+size = 16" in drift
    with pytest.raises(ExampleDriftError, match="regenerate it with"):
        assert_example_current(SCHEMA, path)

    path.write_text(render_example(SCHEMA).replace("Connections in the pool.", "Pool."))
    with pytest.raises(ExampleDriftError):
        assert_example_current(SCHEMA, path)

    missing = tmp_path / "missing.toml"
    assert "cannot read" in (example_drift(SCHEMA, missing) or "")


REF = "tests.unit.framework.dummy_tap:SCHEMA"


def test_cli_write_check_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dummy.toml"
    assert main(["render", REF]) == 0
    assert capsys.readouterr().out == render_example(SCHEMA)
    assert main(["write", REF, str(path)]) == 0
    assert main(["check", REF, str(path)]) == 0
    assert main(["validate", REF, str(path)]) == 0
    assert load_config(SCHEMA, path).get_int("pool.size") == 16

    path.write_text(path.read_text().replace("size = 16", "size = 0"))
    capsys.readouterr()
    assert main(["check", REF, str(path)]) == 1
    assert "+size = 16" in capsys.readouterr().out
    assert main(["validate", REF, str(path)]) == 1
    assert f"ConfigError: pool.size: must be >= 1, got 0 (in {path})" in capsys.readouterr().err


def test_cli_rejects_non_schema() -> None:
    with pytest.raises(SystemExit, match=r"not a vtwist\.config\.Schema"):
        main(["render", "tests.unit.framework.dummy_tap:Options"])
    with pytest.raises(SystemExit, match="MODULE:ATTRIBUTE"):
        main(["render", "tests.unit.framework.dummy_tap"])


def _vtwist_makers() -> list[IServiceMaker]:
    return sorted(
        (
            m
            for m in getPlugins(IServiceMaker)
            if str(getattr(m, "module", "")).startswith("vtwist.")
        ),
        key=lambda m: m.tapname,
    )


@pytest.mark.parametrize("maker", _vtwist_makers(), ids=lambda m: m.tapname)
def test_etc_file_matches_role_schema(maker: IServiceMaker) -> None:
    """Every vtwist twistd plugin is configured by a schema; etc/<tapname>.toml documents it."""
    options = maker.options
    assert isinstance(options, type) and issubclass(options, ConfigOptions), (
        f"{maker.tapname}: its Options must subclass vtwist.config.ConfigOptions"
    )
    assert_example_current(options.schema, REPO / "etc" / f"{maker.tapname}.toml")

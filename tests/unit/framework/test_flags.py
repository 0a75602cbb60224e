"""Generated command-line flags: --config, one flag per key, flags over the file, --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from twisted.python import usage

from tests.unit.framework import dummy_tap
from tests.unit.framework.dummy_tap import SCHEMA, Options
from vtwist.config import ConfigError, ConfigOptions, IntOption, Schema, make_options


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "dummy.toml"
    path.write_text(text)
    return str(path)


def test_flags_override_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'alias = "zone1-1"\n[pool]\nsize = 8\nmin_idle = 1\n')
    opts = Options()
    opts.parseOptions(
        [
            "--config",
            path,
            "--pool-size",
            "12",
            "--mysql-app-user",
            "web",
            "--health-serving",
            "false",
            "--pool-wait-timeout",
            "1.5s",
            "--policy-denied-tables",
            "a,b",
        ]
    )
    cfg = opts.config
    assert cfg.get_int("pool.size") == 12 and cfg.source("pool.size") == "--pool-size"
    assert cfg.get_int("pool.min_idle") == 1 and cfg.source("pool.min_idle") == path
    assert cfg.get_str("mysql.app_user") == "web"
    assert cfg.get_bool("health.serving") is False
    assert cfg.get_float("pool.wait_timeout") == 1.5
    assert cfg.get_list("policy.denied_tables") == ("a", "b")


def test_short_config_flag_and_no_file() -> None:
    opts = Options()
    opts.parseOptions(["--alias", "zone1-2"])
    assert opts.config.get_str("alias") == "zone1-2"
    assert opts.config.source("pool.size") == "default"


def test_bad_flag_is_a_usage_error_naming_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'alias = "zone1-1"\n')
    with pytest.raises(usage.UsageError) as info:
        Options().parseOptions(["-c", path, "--pool-size", "0"])
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == "pool.size: must be >= 1, got 0 (from --pool-size)"


def test_bad_file_is_a_usage_error_naming_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'alias = "zone1-1"\n[pool]\nsize = 0\n')
    with pytest.raises(ConfigError, match=re.escape(f"pool.size: must be >= 1, got 0 (in {path})")):
        Options().parseOptions(["--config", path])


def test_required_missing_names_flag() -> None:
    with pytest.raises(
        ConfigError, match="alias: required: set it in the config file or with --alias"
    ):
        Options().parseOptions([])


def test_usage_after_a_failed_parse_is_the_synopsis_alone(tmp_path: Path) -> None:
    """twistd prints the usage of a role whose options failed, then the error: that usage
    is two lines (the synopsis and where the full help is), not every flag."""
    for argv in (["--alias", "zone1-1", "--pool-size", "0"], ["--alias", "x", "--bogus", "1"]):
        opts = Options()
        with pytest.raises(usage.UsageError):
            opts.parseOptions(argv)
        assert opts.getUsage() == (
            "Usage: twistd [twistd options] dummy [--config FILE] [options]\n"
            "`twistd dummy --help` lists every option.\n"
        )
    ok = Options()
    ok.parseOptions(["--alias", "zone1-1"])
    assert "--pool-size=" in ok.getUsage()


def test_unknown_flag_is_refused() -> None:
    with pytest.raises(usage.UsageError, match="pool-sise"):
        Options().parseOptions(["--alias", "zone1-1", "--pool-sise", "3"])


def test_help_lists_every_key_doc_and_default() -> None:
    text = " ".join(Options().getUsage(width=200).split())
    for opt in SCHEMA:
        assert f"--{opt.flag}=" in text
        assert f"{opt.key}: {opt.doc}" in text
        if opt.required:
            continue
        if opt.secret:
            assert f"{opt.key}: {opt.doc} ({opt.describe_type()}) [default: not shown]" in text
        else:
            assert f"[default: {opt.shown_default()}]" in text
    assert "--config=" in text and "[required]" in text
    assert "A test role proving the vtwist role framework end to end." in text
    synopsis = Options().getSynopsis()
    assert synopsis == "Usage: twistd [twistd options] dummy [--config FILE] [options]"


def test_help_flag_prints_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        Options().parseOptions(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"--{opt.flag}=" in out and opt.key in out for opt in SCHEMA)


def test_make_options_and_extra_flags() -> None:
    schema = Schema("small_role", [IntOption("n", 1, doc="A number.")])
    cls = make_options(schema)
    assert cls.__name__ == "SmallRoleOptions" and issubclass(cls, ConfigOptions)
    opts = cls()
    opts.parseOptions(["--n", "5"])
    assert opts.config.get_int("n") == 5

    class WithExtra(ConfigOptions):
        schema = Schema("x", [IntOption("n", 1, doc="A number.")])
        optFlags = [["dry-run", None, "Do nothing."]]

    extra = WithExtra()
    extra.parseOptions(["--dry-run", "--n", "2"])
    assert extra["dry-run"] and extra.config.get_int("n") == 2


def test_one_schema_per_hierarchy() -> None:
    with pytest.raises(TypeError, match="only one class"):

        class Again(Options):
            schema = Schema("y", [IntOption("n", 1, doc="A number.")])


def test_tap_module_shape() -> None:
    """What twistd's ServiceMaker needs: a module with Options and makeService."""
    from twisted.application.service import IServiceMaker, ServiceMaker
    from zope.interface.verify import verifyObject

    maker = ServiceMaker("dummy", dummy_tap.__name__, "A test role.", "dummy")  # type: ignore[no-untyped-call]  # Twisted: unannotated
    assert verifyObject(IServiceMaker, maker)
    assert maker.options is Options
    assert maker.makeService is dummy_tap.makeService

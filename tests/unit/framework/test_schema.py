"""Option types, durations and schema construction errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.config import (
    BoolOption,
    ChoiceOption,
    DurationOption,
    EndpointOption,
    FloatOption,
    IntOption,
    ListOption,
    Schema,
    SchemaError,
    StrOption,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1m30.5s", 90.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        ("5", 5.0),
        (" 0.25 ", 0.25),
        (".5s", 0.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-12)


@pytest.mark.parametrize("text", ["", "s", "1x", "-1s", "1.5 s", "ms", "1s2", "1e3s", "1,5s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (3600, "1h"),
        (61.25, "1m1.25s"),
        (0.0001, "0.0001s"),
        (1e-7, "0.0000001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**10))
def test_duration_round_trip_milliseconds(ms: int) -> None:
    # Exact: whole milliseconds read back as the very same float (no 9 * 1e-3 rounding).
    assert parse_duration(format_duration(ms / 1000)) == ms / 1000


@pytest.mark.parametrize("seconds", [0.009, 0.7, 90.1, 1234.567, 0.0001234, 3e-9])
def test_any_duration_default_survives_the_example_file(seconds: float) -> None:
    opt = DurationOption("t", seconds, doc="T.")
    assert math.isclose(opt.parse(opt.to_toml(seconds).strip('"')), seconds, rel_tol=1e-12)


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_duration_round_trip_any(seconds: float) -> None:
    assert math.isclose(
        parse_duration(format_duration(seconds)), seconds, rel_tol=1e-9, abs_tol=1e-15
    )


def test_int_option() -> None:
    opt = IntOption("pool.size", 4, min=1, max=10, doc="Size.")
    assert opt.parse(3) == 3
    assert opt.parse("7", from_flag=True) == 7
    with pytest.raises(ValueError, match=r"^must be >= 1, got 0$"):
        opt.parse(0)
    with pytest.raises(ValueError, match=r"^must be <= 10, got 11$"):
        opt.parse(11)
    with pytest.raises(ValueError, match="expected an integer, got boolean true"):
        opt.parse(True)
    with pytest.raises(ValueError, match="expected an integer, got string '3'"):
        opt.parse("3")
    with pytest.raises(ValueError, match=r"expected an integer, got '3\.5'"):
        opt.parse("3.5", from_flag=True)
    assert opt.flag == "pool-size" and opt.table == "pool" and opt.name == "size"


def test_float_and_duration_options() -> None:
    ratio = FloatOption("lag.ratio", 0.5, min=0, max=1, doc="Ratio.")
    assert ratio.parse(1) == 1.0
    with pytest.raises(ValueError, match="must be a finite number"):
        ratio.parse("nan", from_flag=True)
    with pytest.raises(ValueError, match=r"must be <= 1, got 1\.5"):
        ratio.parse(1.5)
    wait = DurationOption("pool.wait", 1.0, min=0.001, max=60, doc="Wait.")
    assert wait.parse("250ms") == 0.25
    assert wait.parse(2) == 2.0
    assert wait.parse("1m", from_flag=True) == 60.0
    with pytest.raises(ValueError, match=r"must be <= 1m, got 2m"):
        wait.parse("2m")
    with pytest.raises(ValueError, match=r"must be >= 1ms, got 0s"):
        wait.parse(0)
    with pytest.raises(ValueError, match="expected a duration"):
        wait.parse(True)
    assert DurationOption("t", 0.0, doc="T.").describe_type() == "duration"
    assert wait.describe_type() == "duration, 1ms..1m"


def test_bool_option() -> None:
    opt = BoolOption("tls.enabled", False, doc="TLS.")
    for text in ("true", "YES", "on", "1"):
        assert opt.parse(text, from_flag=True) is True
    for text in ("false", "no", "Off", "0"):
        assert opt.parse(text, from_flag=True) is False
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        opt.parse("maybe", from_flag=True)
    with pytest.raises(ValueError, match="expected true or false, got integer 1"):
        opt.parse(1)


def test_choice_option_suggests() -> None:
    opt = ChoiceOption("tablet.type", "replica", choices=("primary", "replica"), doc="Type.")
    with pytest.raises(ValueError, match=r"one of primary, replica; got 'replcia' \(did you mean"):
        opt.parse("replcia")


def test_list_option() -> None:
    opt = ListOption("deny.tables", (), choices=None, doc="Tables.")
    assert opt.parse(["a", "b"]) == ("a", "b")
    assert opt.parse("a, b,c", from_flag=True) == ("a", "b", "c")
    assert opt.parse("", from_flag=True) == ()
    assert opt.parse('["a,b", "c"]', from_flag=True) == ("a,b", "c")
    with pytest.raises(ValueError, match="item 1: expected a string, got integer 2"):
        opt.parse(["a", 2])
    with pytest.raises(ValueError, match="expected an array of strings"):
        opt.parse("a")
    limited = ListOption("kinds", ("a",), choices=("a", "b"), doc="Kinds.")
    with pytest.raises(ValueError, match="items must be among a, b; got 'c'"):
        limited.parse(["a", "c"])


def test_str_pattern_and_check() -> None:
    opt = StrOption(
        "alias",
        "zone1-1",
        pattern=r"[a-z0-9]+-\d+",
        check=lambda v: "too long" if len(v) > 10 else None,
        doc="Alias.",
    )
    with pytest.raises(ValueError, match=r"must match"):
        opt.parse("Zone1")
    with pytest.raises(ValueError, match=r"^too long$"):
        opt.parse("zone111111-1")


def test_endpoint_option() -> None:
    opt = EndpointOption("http.listen", "tcp:0:interface=127.0.0.1", doc="HTTP.")
    assert opt.parse("unix:/tmp/x.sock") == "unix:/tmp/x.sock"
    with pytest.raises(ValueError, match="not a valid server endpoint"):
        opt.parse("tcp:notaport")
    with pytest.raises(ValueError, match="not a valid server endpoint"):
        opt.parse("bogus:1")
    with pytest.raises(ValueError, match="not a valid server endpoint"):
        opt.parse("")
    client = EndpointOption(
        "topo.address", "tcp:host=127.0.0.1:port=2181", side="client", doc="Topo."
    )
    with pytest.raises(ValueError, match="not a valid client endpoint"):
        client.parse("tcp:host=127.0.0.1")
    disabled = EndpointOption("grpc.listen", "", doc="Off when empty.")
    assert disabled.parse("") == ""


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: IntOption("Pool.Size", 1, doc="x"), "lowercase words"),
        (lambda: IntOption("pool..size", 1, doc="x"), "lowercase words"),
        (lambda: IntOption("pool.size", 0, min=1, doc="x"), "bad default 0: must be >= 1"),
        (lambda: IntOption("pool.size", doc="x"), "needs an example"),
        (lambda: IntOption("pool.size", 1, doc=""), "doc must be one non-empty line"),
        (lambda: ChoiceOption("k", "a", choices=(), doc="x"), "needs choices"),
        (lambda: ChoiceOption("k", "c", choices=("a",), doc="x"), "bad default 'c'"),
        (lambda: DurationOption("k", -1.0, doc="x"), "bad default"),
        (lambda: EndpointOption("k", "nope", doc="x"), "bad default"),
        (
            lambda: Schema("r", [IntOption("a", 1, doc="x"), IntOption("a", 2, doc="y")]),
            "a: declared twice",
        ),
        (
            lambda: Schema("r", [IntOption("a.b_c", 1, doc="x"), IntOption("a_b.c", 2, doc="y")]),
            "flag --a-b-c clashes with a.b_c",
        ),
        (lambda: Schema("r", [IntOption("config", 1, doc="x")]), "clashes with a built-in"),
        (
            lambda: Schema(
                "r", [IntOption("pool", 1, doc="x"), IntOption("pool.size", 1, doc="y")]
            ),
            "pool: is both a key and a table",
        ),
    ],
)
def test_schema_errors(build: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()  # type: ignore[operator]


def test_schema_lookup() -> None:
    schema = Schema("r", [IntOption("pool.size", 1, doc="x"), IntOption("alias_id", 1, doc="y")])
    assert schema.keys() == ["pool.size", "alias_id"]
    assert schema.by_flag("pool-size").key == "pool.size"
    assert schema.is_table("pool") and not schema.is_table("pool.size")
    assert schema.suggest("pool.sise") == "pool.size"
    assert "alias_id" in schema and len(schema) == 2

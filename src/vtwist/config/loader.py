"""Loading a role's configuration: TOML file, then overrides, then flags, into a frozen ``Config``.

Precedence, lowest first: the schema default, the TOML file, ``overrides`` (typed values
from code: tests, ``vtwist up``), ``flags`` (strings from the command line). Every problem
names its key, the reason and where the value came from, and all of them are reported at
once::

    ConfigError: pool.size: must be >= 1, got 0 (in etc/vttablet.toml)
    pool.sise: unknown key (did you mean pool.size?) (in etc/vttablet.toml)

``ConfigError`` is a ``twisted.python.usage.UsageError``, so raised from an ``Options``
class it makes twistd print the usage and the error and exit 1 before anything starts.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from twisted.python import usage

from vtwist.config.schema import (
    BoolOption,
    DurationOption,
    FloatOption,
    IntOption,
    ListOption,
    Option,
    PathOption,
    Schema,
    StrOption,
    describe,
    suggest,
)

T = TypeVar("T")

#: ``Config.source`` of a value nobody set.
DEFAULT_SOURCE: Final = "default"
#: ``Config.source`` of a value from ``overrides=``.
OVERRIDE_SOURCE: Final = "override"
#: What ``Config.redacted`` shows instead of a secret.
REDACTED: Final = "<secret>"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration: the key, why, and where the value came from."""

    key: str
    reason: str
    origin: str = ""

    def __str__(self) -> str:
        text = f"{self.key}: {self.reason}"
        return f"{text} ({self.origin})" if self.origin else text


class ConfigError(usage.UsageError):
    """A configuration that cannot be used; ``problems`` lists every reason, key by key."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    @property
    def keys(self) -> list[str]:
        """The keys named by the problems, in order."""
        return [p.key for p in self.problems]


def _origin_text(source: str) -> str:
    """The parenthesised part of a problem: ``in etc/x.toml`` or ``from --pool-size``."""
    if source.startswith("--"):
        return f"from {source}"
    if source in (DEFAULT_SOURCE, OVERRIDE_SOURCE):
        return source
    return f"in {source}"


class Config(Mapping[str, object]):
    """A loaded, validated, immutable configuration: dotted key -> typed value.

    Read it with the typed getters (``get_int("pool.size")``) or, fully typed by the option,
    ``value(POOL_SIZE)``. ``source(key)`` tells where a value came from (a file path, a
    ``--flag``, ``"override"`` or ``"default"``). Lists are tuples.
    """

    __slots__ = ("_sources", "_values", "schema")

    def __init__(self, schema: Schema, values: Mapping[str, object], sources: Mapping[str, str]):
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))
        object.__setattr__(self, "_sources", MappingProxyType(dict(sources)))

    schema: Schema
    _values: Mapping[str, object]
    _sources: Mapping[str, str]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is immutable")

    def __getitem__(self, key: str) -> object:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<Config {self.schema.name} {dict(self.redacted())!r}>"

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from: a path, ``--flag``, ``override``, ``default``."""
        return self._sources[key]

    def value(self, option: Option[T]) -> T:
        """The value of ``option``, typed by the option (``value(POOL_SIZE) -> int``)."""
        if self.schema[option.key] is not option:
            raise KeyError(f"{option.key}: not this schema's option")
        return self._values[option.key]  # type: ignore[return-value]

    def _typed(self, key: str, kinds: tuple[type[Option[Any]], ...], getter: str) -> object:
        opt = self.schema[key]
        if not isinstance(opt, kinds):
            raise TypeError(f"{key} is of type {opt.type_name}: {getter}() cannot read it")
        return self._values[key]

    def get_str(self, key: str) -> str:
        """A string, path, endpoint or choice value."""
        v = self._typed(key, (StrOption,), "get_str")
        assert isinstance(v, str)
        return v

    def get_int(self, key: str) -> int:
        """An integer value."""
        v = self._typed(key, (IntOption,), "get_int")
        assert isinstance(v, int)
        return v

    def get_float(self, key: str) -> float:
        """A number or a duration (seconds)."""
        v = self._typed(key, (FloatOption, DurationOption), "get_float")
        assert isinstance(v, float)
        return v

    def get_bool(self, key: str) -> bool:
        """A boolean value."""
        v = self._typed(key, (BoolOption,), "get_bool")
        assert isinstance(v, bool)
        return v

    def get_list(self, key: str) -> tuple[str, ...]:
        """A list of strings, as a tuple."""
        v = self._typed(key, (ListOption,), "get_list")
        assert isinstance(v, tuple)
        return v

    def section(self, table: str) -> dict[str, object]:
        """The keys directly in ``table``, without its prefix: ``section("pool")["size"]``."""
        return {opt.name: self._values[opt.key] for opt in self.schema if opt.table == table}

    def redacted(self) -> dict[str, object]:
        """Every key and value, secrets replaced by ``<secret>``: safe for a status page."""
        return {
            k: (REDACTED if self.schema[k].secret and v not in ("", ()) else v)
            for k, v in self._values.items()
        }

    def problem(self, key: str, reason: str) -> ConfigError:
        """A ``ConfigError`` about ``key`` naming where its value came from (for role checks)."""
        return ConfigError([Problem(key, reason, _origin_text(self._sources[key]))])


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_config(
    schema: Schema,
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, object] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Load ``path`` (TOML; None for none), apply ``overrides`` then ``flags``, validate.

    ``overrides`` map dotted keys to values as TOML would hold them (``{"pool.size": 4}``);
    ``flags`` map dotted keys to command-line strings (``{"pool.size": "4"}``). Raises
    ``ConfigError`` listing every problem.
    """
    if path is None:
        return _build(schema, {}, "", overrides, flags)
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError([Problem("config", f"cannot read {source}: {reason}")]) from None
    return parse_config(schema, text, source=source, overrides=overrides, flags=flags)


def parse_config(
    schema: Schema,
    text: str,
    *,
    source: str = "<string>",
    overrides: Mapping[str, object] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Config:
    """Like ``load_config`` with the TOML given as text; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([Problem("config", f"invalid TOML: {e}", f"in {source}")]) from None
    return _build(schema, data, source, overrides, flags)


def _flatten(
    schema: Schema, data: Mapping[str, Any], prefix: str, origin: str, problems: list[Problem]
) -> Iterable[tuple[str, object]]:
    """Yield (dotted key, raw value) for known keys; record unknown and misplaced ones."""
    for name, raw in data.items():
        key = f"{prefix}{name}"
        if key in schema:
            yield key, raw
        elif schema.is_table(key):
            if isinstance(raw, dict):
                yield from _flatten(schema, raw, key + ".", origin, problems)
            else:
                problems.append(Problem(key, f"is a table of keys, got {describe(raw)}", origin))
        else:
            candidates = list(schema.keys())
            candidates += [k.rsplit(".", 1)[0] for k in candidates if "." in k]
            hint = suggest(key, candidates)
            kind = "table" if isinstance(raw, dict) else "key"
            more = f" (did you mean {hint}?)" if hint else ""
            problems.append(Problem(key, f"unknown {kind}{more}", origin))


def _build(
    schema: Schema,
    data: Mapping[str, Any],
    source: str,
    overrides: Mapping[str, object] | None,
    flags: Mapping[str, str] | None,
) -> Config:
    problems: list[Problem] = []
    values: dict[str, object] = {}
    sources: dict[str, str] = {}

    def take(key: str, raw: object, src: str, *, from_flag: bool) -> None:
        opt = schema[key]
        try:
            values[key] = opt.parse(raw, from_flag=from_flag)
            sources[key] = src
        except ValueError as e:
            problems.append(Problem(key, str(e), _origin_text(src)))

    for opt in schema:
        if not opt.required:
            values[opt.key] = opt.default
            sources[opt.key] = DEFAULT_SOURCE

    for key, raw in _flatten(schema, data, "", f"in {source}", problems):
        take(key, raw, source, from_flag=False)
    layers: list[tuple[Mapping[str, object], bool]] = [
        (overrides or {}, False),
        (dict(flags or {}), True),
    ]
    for layer, from_flag in layers:
        for key, raw in layer.items():
            if key not in schema:
                hint = schema.suggest(key)
                more = f" (did you mean {hint}?)" if hint else ""
                origin = "from the command line" if from_flag else OVERRIDE_SOURCE
                problems.append(Problem(key, f"unknown key{more}", origin))
                continue
            src = f"--{schema[key].flag}" if from_flag else OVERRIDE_SOURCE
            take(key, raw, src, from_flag=from_flag)

    for opt in schema:
        if opt.key not in values:
            if not any(p.key == opt.key for p in problems):
                problems.append(
                    Problem(opt.key, f"required: set it in the config file or with --{opt.flag}")
                )
        elif isinstance(opt, PathOption):
            try:
                opt.check_exists(str(values[opt.key]))
            except ValueError as e:
                problems.append(Problem(opt.key, str(e), _origin_text(sources[opt.key])))
    if problems:
        raise ConfigError(problems)

    ordered = {opt.key: values[opt.key] for opt in schema}
    config = Config(schema, ordered, sources)
    for check in schema.checks:
        for key, reason in check(config):
            origin = _origin_text(sources[key]) if key in sources else ""
            problems.append(Problem(key, reason, origin))
    if problems:
        raise ConfigError(problems)
    return config

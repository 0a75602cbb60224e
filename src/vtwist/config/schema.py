"""The declarative option schema of a role: one typed ``Option`` per dotted TOML key.

A role declares its configuration once, as a ``Schema`` of options::

    POOL_SIZE = IntOption("pool.size", 16, min=1, max=4096, doc="Connections in the query pool.")
    SCHEMA = Schema("vttablet", [POOL_SIZE, ...], doc="vttablet: one MariaDB behind a pool.")

Everything else is generated from it: the TOML loader and its errors (``loader``), the
command-line flags (``flags``), the documented example file (``example``). This module owns
the option types and their conversion from TOML values and from flag strings (durations are
read by ``durations``).

Every option converts a raw value with ``parse(raw, from_flag=...)``; a bad value raises
``ValueError`` whose message is the reason only ("must be >= 1, got 0"); the loader adds the
key and where the value came from. A mistake in the schema itself (a bad key, a default
that fails its own bounds) raises ``SchemaError`` when the schema is built, at import time.
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, Literal, TypeVar

from twisted.internet import endpoints

from vtwist.config.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from vtwist.config.loader import Config

T = TypeVar("T")


class SchemaError(ValueError):
    """The schema itself is wrong (a programming error, raised when the schema is built)."""


class _Required(enum.Enum):
    REQUIRED = "REQUIRED"


#: The default of an option that has none: the file or a flag must set it.
REQUIRED: Final = _Required.REQUIRED

_KEY_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")

# ---------------------------------------------------------------------------------------------
# Describing values in error messages
# ---------------------------------------------------------------------------------------------


def describe(value: object) -> str:
    """Name a raw TOML value for an error message: ``string '16'``, ``table``, ``integer 3``."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``word`` (a likely typo), or None."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _bounds(
    value: float,
    lo: float | None,
    hi: float | None,
    fmt: Callable[[float], str] | None = None,
) -> None:
    show = fmt if fmt is not None else _num
    if lo is not None and value < lo:
        raise ValueError(f"must be >= {show(lo)}, got {show(value)}")
    if hi is not None and value > hi:
        raise ValueError(f"must be <= {show(hi)}, got {show(value)}")


def _same(a: object, b: object) -> bool:
    # Durations go through decimal text; allow the last bit of a float to differ.
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _toml_str(s: str) -> str:
    """A TOML basic string (JSON-style escapes are valid TOML)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option(Generic[T]):
    """One configuration key. Subclasses fix the value type ``T`` and how values are read.

    ``key`` is the dotted TOML key (``pool.size`` is ``size`` in table ``[pool]``);
    ``default`` is the value when nothing sets it, or ``REQUIRED``. Keyword-only:
    ``doc`` (one line, shown in ``--help`` and the example file), ``example`` (the value the
    example file shows; mandatory for a required option), ``secret`` (never shown in status
    pages), ``check`` (extra validation: returns the reason the value is bad, or None).
    """

    key: str
    default: T | _Required = REQUIRED
    _: KW_ONLY
    doc: str
    example: T | None = None
    secret: bool = False
    check: Callable[[T], str | None] | None = None

    #: Human name of the value type, used in --help and in the example file.
    type_name: ClassVar[str] = "value"

    # -- what subclasses implement ----------------------------------------------------------

    def _from_toml(self, raw: object) -> T:
        """Accept a value of the right TOML type (or raise ValueError)."""
        raise NotImplementedError

    def _from_text(self, text: str) -> T:
        """Read a command-line string (or raise ValueError)."""
        raise NotImplementedError

    def _validate(self, value: T) -> None:
        """Bounds, choices, patterns (raise ValueError with the reason)."""

    def to_toml(self, value: T) -> str:
        """Render a value as TOML source."""
        raise NotImplementedError

    def constraints(self) -> str:
        """Bounds and choices in words (``">= 1"``, ``"one of a, b"``), or ``""``."""
        return ""

    # -- shared ----------------------------------------------------------------------------

    def parse(self, raw: object, *, from_flag: bool = False) -> T:
        """Convert a raw TOML value (or, with ``from_flag``, a flag string) and validate it."""
        if from_flag:
            if not isinstance(raw, str):
                raise ValueError(f"expected a string on the command line, got {describe(raw)}")
            value = self._from_text(raw)
        else:
            value = self._from_toml(raw)
        self._validate(value)
        if self.check is not None:
            reason = self.check(value)
            if reason:
                raise ValueError(reason)
        return value

    @property
    def required(self) -> bool:
        """True when nothing but the file or a flag can give this key a value."""
        return self.default is REQUIRED

    @property
    def flag(self) -> str:
        """The command-line flag, without dashes: ``pool.size`` -> ``pool-size``."""
        return self.key.replace(".", "-").replace("_", "-")

    @property
    def table(self) -> str:
        """The TOML table holding the key (``"pool"``), ``""`` for a top-level key."""
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        """The key inside its table (``"size"``)."""
        return self.key.rpartition(".")[2]

    def describe_type(self) -> str:
        """Type and constraints in words, for help text: ``"integer, >= 1"``."""
        extra = self.constraints()
        return f"{self.type_name}, {extra}" if extra else self.type_name

    def shown_default(self) -> str:
        """The default as TOML source, or ``"required"``."""
        if isinstance(self.default, _Required):
            return "required"
        return self.to_toml(self.default)

    def __post_init__(self) -> None:
        if not _KEY_RE.fullmatch(self.key):
            raise SchemaError(f"{self.key!r}: a key is lowercase words of [a-z0-9_] joined by dots")
        if not self.doc.strip() or "\n" in self.doc:
            raise SchemaError(f"{self.key}: doc must be one non-empty line")
        for label, value in (("default", self.default), ("example", self.example)):
            if value is None or isinstance(value, _Required):
                continue
            try:
                # The default goes through the same path as a TOML value: it must obey
                # its own bounds and render to a TOML that reads back the same.
                back = self.parse(tomllib.loads(f"v = {self.to_toml(value)}")["v"])
                if not _same(back, value):
                    raise ValueError("does not survive a TOML round trip")
            except (ValueError, TypeError) as e:
                raise SchemaError(f"{self.key}: bad {label} {value!r}: {e}") from None
        if self.required and self.example is None:
            raise SchemaError(f"{self.key}: a required option needs an example= value")


@dataclass(frozen=True, kw_only=True)
class StrOption(Option[str]):
    """A string; ``pattern`` (a regex) must match all of it when given."""

    pattern: str | None = None
    type_name: ClassVar[str] = "string"

    def _from_toml(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected a string, got {describe(raw)}")
        return raw

    def _from_text(self, text: str) -> str:
        return text

    def _validate(self, value: str) -> None:
        if self.pattern is not None and value and not re.fullmatch(self.pattern, value):
            raise ValueError(f"must match {self.pattern}, got {value!r}")

    def to_toml(self, value: str) -> str:
        return _toml_str(value)

    def constraints(self) -> str:
        return f"matching {self.pattern}" if self.pattern else ""


@dataclass(frozen=True, kw_only=True)
class IntOption(Option[int]):
    """An integer within ``min``..``max`` (each optional, inclusive)."""

    min: int | None = None
    max: int | None = None
    type_name: ClassVar[str] = "integer"

    def _from_toml(self, raw: object) -> int:
        # bool is an int in Python; `true` is never a valid count.
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError(f"expected an integer, got {describe(raw)}")
        return raw

    def _from_text(self, text: str) -> int:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None

    def _validate(self, value: int) -> None:
        _bounds(value, self.min, self.max)

    def to_toml(self, value: int) -> str:
        return str(value)

    def constraints(self) -> str:
        return _range_words(self.min, self.max)


def _range_words(lo: float | None, hi: float | None, fmt: Callable[[float], str] = _num) -> str:
    if lo is not None and hi is not None:
        return f"{fmt(lo)}..{fmt(hi)}"
    if lo is not None:
        return f">= {fmt(lo)}"
    if hi is not None:
        return f"<= {fmt(hi)}"
    return ""


@dataclass(frozen=True, kw_only=True)
class FloatOption(Option[float]):
    """A finite number within ``min``..``max``; TOML integers are accepted."""

    min: float | None = None
    max: float | None = None
    type_name: ClassVar[str] = "number"

    def _from_toml(self, raw: object) -> float:
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise ValueError(f"expected a number, got {describe(raw)}")
        return float(raw)

    def _from_text(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None

    def _validate(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        _bounds(value, self.min, self.max)

    def to_toml(self, value: float) -> str:
        return repr(float(value))

    def constraints(self) -> str:
        return _range_words(self.min, self.max)


@dataclass(frozen=True, kw_only=True)
class DurationOption(Option[float]):
    """A duration in seconds: a TOML number, or a string like ``"1.5s"``/``"500ms"``/``"2m"``.

    ``min`` defaults to 0 (no negative durations); ``max`` is optional. The value is float
    seconds.
    """

    min: float | None = 0.0
    max: float | None = None
    type_name: ClassVar[str] = "duration"

    def _from_toml(self, raw: object) -> float:
        if isinstance(raw, str):
            return parse_duration(raw)
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        raise ValueError(
            f"expected a duration (seconds, or a string such as '1.5s', '500ms', '2m'), "
            f"got {describe(raw)}"
        )

    def _from_text(self, text: str) -> float:
        return parse_duration(text)

    def _validate(self, value: float) -> None:
        if not math.isfinite(value):
            raise ValueError(f"must be a finite duration, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        _bounds(value, self.min, self.max, format_duration)

    def to_toml(self, value: float) -> str:
        return _toml_str(format_duration(value))

    def constraints(self) -> str:
        lo = self.min if self.min else None  # ">= 0s" says nothing
        return _range_words(lo, self.max, format_duration)


_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True, kw_only=True)
class BoolOption(Option[bool]):
    """A boolean; on the command line ``true/false``, ``yes/no``, ``on/off`` or ``1/0``."""

    type_name: ClassVar[str] = "boolean"

    def _from_toml(self, raw: object) -> bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {describe(raw)}")
        return raw

    def _from_text(self, text: str) -> bool:
        t = text.strip().lower()
        if t in _TRUE:
            return True
        if t in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")

    def to_toml(self, value: bool) -> str:
        return "true" if value else "false"


class _PlaceholderReactor:
    """Endpoint parsers only store the reactor; validating a string must not pick one."""


@dataclass(frozen=True, kw_only=True)
class EndpointOption(StrOption):
    """A Twisted endpoint string (``tcp:15001:interface=127.0.0.1``), checked by parsing it.

    ``side`` is ``"server"`` (a listener, ``serverFromString``) or ``"client"``
    (``clientFromString``). An empty string is allowed only when it is the default (meaning
    "disabled"). Parsing never listens or connects; TLS endpoints do read their key files.
    """

    side: Literal["server", "client"] = "server"
    type_name: ClassVar[str] = "endpoint"

    def _validate(self, value: str) -> None:
        super()._validate(value)
        if value == "" and self.default == "":
            return
        parse = endpoints.serverFromString if self.side == "server" else endpoints.clientFromString
        try:
            parse(_PlaceholderReactor(), value)  # type: ignore[no-untyped-call]
        except Exception as e:  # any parser complaint is the user's to fix
            raise ValueError(f"not a valid {self.side} endpoint ({e}), got {value!r}") from None


@dataclass(frozen=True, kw_only=True)
class PathOption(StrOption):
    """A filesystem path, kept as given (relative paths are relative to the working directory).

    With ``must_exist`` a non-empty value must name an existing file or directory when the
    configuration is loaded, so a typo fails at start rather than at first use.
    """

    must_exist: bool = False
    type_name: ClassVar[str] = "path"

    def _validate(self, value: str) -> None:
        super()._validate(value)
        if "\0" in value:
            raise ValueError("must not contain a NUL character")

    def check_exists(self, value: str) -> None:
        """Raise ValueError when ``must_exist`` and the path is missing (loader calls this)."""
        if self.must_exist and value and not Path(value).exists():
            raise ValueError(f"no such file or directory: {value!r}")


@dataclass(frozen=True, kw_only=True)
class ChoiceOption(StrOption):
    """One string of ``choices``."""

    choices: tuple[str, ...]
    type_name: ClassVar[str] = "choice"

    def _validate(self, value: str) -> None:
        if value not in self.choices:
            hint = suggest(value, self.choices)
            more = f" (did you mean {hint}?)" if hint else ""
            raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}{more}")

    def constraints(self) -> str:
        return f"one of {', '.join(self.choices)}"

    def __post_init__(self) -> None:
        if not self.choices:
            raise SchemaError(f"{self.key}: a choice option needs choices=")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class ListOption(Option[tuple[str, ...]]):
    """A list of strings (the value is a tuple). ``choices`` restricts the items.

    On the command line: comma-separated (``a,b``; ``""`` is the empty list), or a TOML array
    (``'["a,b", "c"]'``) when an item itself holds a comma.
    """

    choices: tuple[str, ...] | None = None
    type_name: ClassVar[str] = "list of strings"

    def _from_toml(self, raw: object) -> tuple[str, ...]:
        if not isinstance(raw, list):
            raise ValueError(f"expected an array of strings, got {describe(raw)}")
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                raise ValueError(f"item {i}: expected a string, got {describe(item)}")
        return tuple(raw)

    def _from_text(self, text: str) -> tuple[str, ...]:
        t = text.strip()
        if t.startswith("["):
            try:
                raw = tomllib.loads(f"v = {t}")["v"]
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"not a TOML array ({e}), got {text!r}") from None
            return self._from_toml(raw)
        if not t:
            return ()
        return tuple(item.strip() for item in t.split(","))

    def _validate(self, value: tuple[str, ...]) -> None:
        if self.choices is None:
            return
        for item in value:
            if item not in self.choices:
                hint = suggest(item, self.choices)
                more = f" (did you mean {hint}?)" if hint else ""
                raise ValueError(
                    f"items must be among {', '.join(self.choices)}; got {item!r}{more}"
                )

    def to_toml(self, value: tuple[str, ...]) -> str:
        return "[" + ", ".join(_toml_str(v) for v in value) + "]"

    def constraints(self) -> str:
        return f"items among {', '.join(self.choices)}" if self.choices else ""


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------

#: A cross-key check run after every key has its value: yields (key, reason) problems.
Check = Callable[["Config"], Iterable[tuple[str, str]]]


class Schema:
    """The options of one role, in the order they are documented.

    ``name`` names the role (``"vttablet"``; the example file is ``etc/<name>.toml``);
    ``doc`` is a paragraph for ``--help`` and the example file's header; ``checks`` are
    cross-key validations run by the loader (e.g. "pool.min_idle must not exceed pool.size").
    """

    def __init__(
        self,
        name: str,
        options: Iterable[Option[Any]],
        *,
        doc: str = "",
        checks: Sequence[Check] = (),
    ) -> None:
        self.name = name
        self.doc = doc
        self.options: tuple[Option[Any], ...] = tuple(options)
        self.checks: tuple[Check, ...] = tuple(checks)
        self._by_key: dict[str, Option[Any]] = {}
        self._by_flag: dict[str, Option[Any]] = {}
        for opt in self.options:
            if opt.key in self._by_key:
                raise SchemaError(f"{opt.key}: declared twice in schema {name!r}")
            other = self._by_flag.get(opt.flag)
            if other is not None or opt.flag in _RESERVED_FLAGS:
                clash = other.key if other is not None else "a built-in flag"
                raise SchemaError(f"{opt.key}: flag --{opt.flag} clashes with {clash}")
            self._by_key[opt.key] = opt
            self._by_flag[opt.flag] = opt
        # TOML cannot hold both `pool = 1` and `pool.size = 1`.
        parts = [opt.key.split(".") for opt in self.options]
        tables = {".".join(p[:i]) for p in parts for i in range(1, len(p))}
        for opt in self.options:
            if opt.key in tables:
                raise SchemaError(f"{opt.key}: is both a key and a table")

    def __getitem__(self, key: str) -> Option[Any]:
        return self._by_key[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[Option[Any]]:
        return iter(self.options)

    def __len__(self) -> int:
        return len(self.options)

    def keys(self) -> list[str]:
        """Every dotted key, in declaration order."""
        return [opt.key for opt in self.options]

    def by_flag(self, flag: str) -> Option[Any]:
        """The option behind ``--flag`` (given without the dashes)."""
        return self._by_flag[flag]

    def is_table(self, dotted: str) -> bool:
        """True when ``dotted`` is a table holding keys (``"pool"`` for ``pool.size``)."""
        prefix = dotted + "."
        return any(k.startswith(prefix) for k in self._by_key)

    def suggest(self, key: str) -> str | None:
        """The declared key closest to a misspelt one, or None."""
        return suggest(key, self._by_key)

    def __repr__(self) -> str:
        return f"<Schema {self.name!r}: {len(self.options)} options>"


#: Flags every generated Options class already has.
_RESERVED_FLAGS: Final = frozenset({"config", "help", "version"})

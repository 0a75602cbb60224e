"""Command-line flags generated from a schema: a ``twisted.python.usage.Options`` per role.

A role's ``tap.py`` declares::

    class Options(ConfigOptions):
        schema = SCHEMA

and gets ``--config FILE`` plus one flag per key (``pool.size`` -> ``--pool-size``).
``--help`` lists every flag with its key, doc, type and default. After parsing,
``postOptions`` loads the file, lets every given flag override it and leaves the frozen
result in ``options.config``; a bad configuration raises ``ConfigError`` (a ``UsageError``),
so twistd prints the reason and exits before the role starts.

Every flag takes a value, booleans included (``--tls-enabled=false``), so a flag can turn
off what the file turned on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from twisted.python import usage

from vtwist.config.loader import Config, load_config
from vtwist.config.schema import Option, Schema


def flag_help(opt: Option[Any]) -> str:
    """The ``--help`` text of one option: key, doc, type and default."""
    if opt.required:
        tail = "[required]"
    elif opt.secret:
        tail = "[default: not shown]"
    else:
        tail = f"[default: {opt.shown_default()}]"
    doc = opt.doc.rstrip(".")
    return f"{opt.key}: {doc}. ({opt.describe_type()}) {tail}"


class ConfigOptions(usage.Options):
    """Base of every role's ``Options``: set ``schema`` in the subclass; read ``config`` after.

    Extra role-specific flags may be declared the usual ``usage.Options`` way
    (``optParameters``/``optFlags`` in the subclass); they are not configuration keys.
    """

    schema: ClassVar[Schema]
    #: The loaded configuration, set by ``postOptions``.
    config: Config

    optParameters: ClassVar[list[list[Any]]] = [
        [
            "config",
            "c",
            None,
            "TOML configuration file; every key in it can be overridden "
            "by the flag of the same name.",
        ],
    ]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "schema" not in cls.__dict__:
            return
        if any("schema" in base.__dict__ for base in cls.__mro__[1:]):
            raise TypeError(f"{cls.__name__}: only one class in a hierarchy may set schema")
        schema = cls.schema
        # usage.Options gathers optParameters from every class in the MRO; ours go first.
        own = list(cls.__dict__.get("optParameters", []))
        cls.optParameters = [[o.flag, None, None, flag_help(o)] for o in schema] + own
        if "synopsis" not in cls.__dict__:
            cls.synopsis = (  # type: ignore[attr-defined]
                f"Usage: twistd [twistd options] {schema.name} [--config FILE] [options]"
            )
        if "longdesc" not in cls.__dict__ and schema.doc:
            cls.longdesc = schema.doc  # type: ignore[attr-defined]

    def __init__(self) -> None:
        # Typed wrappers: usage.Options itself is unannotated, which mypy --strict refuses
        # to call from typed code (role tests, the vtwist CLI).
        super().__init__()  # type: ignore[no-untyped-call]

    #: Set when parsing failed: ``getUsage`` is then the synopsis alone (see there).
    failed = False

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse ``options`` (``sys.argv[1:]`` when None); raises ``usage.UsageError``."""
        try:
            super().parseOptions(None if options is None else list(options))  # type: ignore[no-untyped-call]
        except usage.UsageError:
            self.failed = True
            raise

    def getUsage(self, width: int | None = None) -> str:
        """The whole ``--help`` text; after a failed parse, only the synopsis and where
        the full text is. (twistd prints the usage of a role whose options failed, then
        the error: the error should not come after a hundred lines of help.)"""
        if self.failed:
            name = self.schema.name
            synopsis: str = getattr(self, "synopsis", f"Usage: twistd {name} [options]")
            return f"{synopsis}\n`twistd {name} --help` lists every option.\n"
        text: str = super().getUsage(width)
        return text

    def flag_values(self) -> dict[str, str]:
        """The configuration flags given on the command line, by dotted key."""
        return {o.key: self[o.flag] for o in self.schema if self[o.flag] is not None}

    def postOptions(self) -> None:
        """Load ``--config`` (if given) with the flags on top; raises ``ConfigError``."""
        self.config = load_config(self.schema, self["config"], flags=self.flag_values())


def make_options(schema: Schema) -> type[ConfigOptions]:
    """A ``ConfigOptions`` subclass for ``schema`` (for when no extra flags are needed)."""
    name = "".join(part.capitalize() for part in schema.name.split("_")) + "Options"
    return type(name, (ConfigOptions,), {"schema": schema})

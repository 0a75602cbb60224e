"""Role configuration: a declarative schema, TOML loading, flags, and documented examples.

- ``schema``: option types (``StrOption``, ``IntOption``, ``FloatOption``,
  ``DurationOption``, ``BoolOption``, ``EndpointOption``, ``PathOption``, ``ListOption``,
  ``ChoiceOption``), ``Schema``, durations.
- ``loader``: ``load_config``/``parse_config`` -> frozen ``Config``; ``ConfigError``.
- ``flags``: ``ConfigOptions``, the ``usage.Options`` base every role's ``tap.Options`` uses.
- ``example``: ``render_example`` and the ``etc/`` drift check.
"""

from vtwist.config.durations import format_duration, parse_duration
from vtwist.config.example import (
    ExampleDriftError,
    assert_example_current,
    example_drift,
    render_example,
)
from vtwist.config.flags import ConfigOptions, flag_help, make_options
from vtwist.config.loader import (
    Config,
    ConfigError,
    Problem,
    load_config,
    parse_config,
)
from vtwist.config.schema import (
    REQUIRED,
    BoolOption,
    Check,
    ChoiceOption,
    DurationOption,
    EndpointOption,
    FloatOption,
    IntOption,
    ListOption,
    Option,
    PathOption,
    Schema,
    SchemaError,
    StrOption,
)

__all__ = [
    "REQUIRED",
    "BoolOption",
    "Check",
    "ChoiceOption",
    "Config",
    "ConfigError",
    "ConfigOptions",
    "DurationOption",
    "EndpointOption",
    "ExampleDriftError",
    "FloatOption",
    "IntOption",
    "ListOption",
    "Option",
    "PathOption",
    "Problem",
    "Schema",
    "SchemaError",
    "StrOption",
    "assert_example_current",
    "example_drift",
    "flag_help",
    "format_duration",
    "load_config",
    "make_options",
    "parse_config",
    "parse_duration",
    "render_example",
]

"""``python -m vtwist.config``: print, write or check a schema's example TOML file.

python -m vtwist.config render vtwist.tablet.config:SCHEMA
python -m vtwist.config write  vtwist.tablet.config:SCHEMA etc/vttablet.toml
python -m vtwist.config check  vtwist.tablet.config:SCHEMA etc/vttablet.toml
python -m vtwist.config validate vtwist.tablet.config:SCHEMA etc/vttablet.toml
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from vtwist.config.example import example_drift, render_example
from vtwist.config.loader import ConfigError, load_config
from vtwist.config.schema import Schema


def find_schema(ref: str) -> Schema:
    """Import ``module:attribute`` and return it if it is a ``Schema``."""
    module_name, _, attr = ref.partition(":")
    if not attr:
        raise SystemExit(f"{ref}: expected MODULE:ATTRIBUTE, e.g. vtwist.tablet.config:SCHEMA")
    obj = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(obj, Schema):
        raise SystemExit(f"{ref}: not a vtwist.config.Schema")
    return obj


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m vtwist.config", description=__doc__)
    parser.add_argument("command", choices=["render", "write", "check", "validate"])
    parser.add_argument("schema", help="MODULE:ATTRIBUTE naming a Schema")
    parser.add_argument("path", nargs="?", help="the example file (write, check, validate)")
    args = parser.parse_args(argv)
    schema = find_schema(args.schema)
    if args.command == "render":
        sys.stdout.write(render_example(schema))
        return 0
    if args.path is None:
        parser.error(f"{args.command} needs a PATH")
    if args.command == "write":
        Path(args.path).write_text(render_example(schema), encoding="utf-8")
        return 0
    if args.command == "check":
        drift = example_drift(schema, args.path)
        if drift is not None:
            sys.stdout.write(drift)
            return 1
        return 0
    try:
        load_config(schema, args.path)
    except ConfigError as e:
        print(f"ConfigError: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

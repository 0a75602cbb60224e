"""The documented example TOML of a schema, and the check that keeps ``etc/`` files true.

``render_example(schema)`` writes every key with its doc, type, flag and default as comments
and its default (or example) as the value; tables follow the dotted keys. ``etc/<role>.toml``
is that text exactly: ``example_drift(schema, path)`` returns a diff when the file and the
schema disagree, and a role's test calls ``assert_example_current(SCHEMA, "etc/vttablet.toml")``.
Regenerate a file with ``python -m vtwist.config write MODULE:SCHEMA PATH``.
"""

from __future__ import annotations

import difflib
import os
import textwrap
from pathlib import Path
from typing import Any

from vtwist.config.schema import Option, Schema

_WIDTH = 100


def _comment(text: str) -> list[str]:
    return textwrap.wrap(
        text, _WIDTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )


def _option_lines(opt: Option[Any]) -> list[str]:
    words = [opt.doc.rstrip(".") + "."]
    if opt.required:
        words.insert(0, "Required.")
    words.append(f"Type: {opt.describe_type()}.")
    if not opt.required and opt.example is not None:
        words.append(f"Default: {opt.shown_default()}.")
    words.append(f"Flag: --{opt.flag}.")
    value = opt.example if opt.example is not None else opt.default
    return [*_comment(" ".join(words)), f"{opt.name} = {opt.to_toml(value)}"]


def render_example(schema: Schema) -> str:
    """The example configuration file for ``schema``: every key, documented, at its default."""
    lines = [f"# {schema.name} configuration: every key, its meaning and its default."]
    if schema.doc:
        lines += ["#", *_comment(schema.doc)]
    lines += [
        "#",
        *_comment(
            "Each key can also be given as a flag, which wins over this file "
            "(pool.size is --pool-size). Durations are seconds or strings such as "
            '"1.5s", "500ms", "2m". This file is generated from the schema: '
            "python -m vtwist.config write MODULE:SCHEMA PATH."
        ),
    ]
    tables: dict[str, list[Option[Any]]] = {}
    for opt in schema:
        tables.setdefault(opt.table, []).append(opt)
    # TOML: keys outside any table must come before the first [table] header.
    for table in sorted(tables, key=lambda t: t != ""):
        lines.append("")
        if table:
            lines.append(f"[{table}]")
        for i, opt in enumerate(tables[table]):
            if i:
                lines.append("")
            lines += _option_lines(opt)
    return "\n".join(lines) + "\n"


def example_drift(schema: Schema, path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` holds exactly ``render_example(schema)``; else what differs."""
    expected = render_example(schema)
    p = Path(path)
    try:
        actual = p.read_text(encoding="utf-8")
    except OSError as e:
        return f"{p}: cannot read ({e.strerror}); it should document the {schema.name} schema"
    if actual == expected:
        return None
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=str(p),
        tofile=f"{schema.name} schema",
    )
    return "".join(diff)


class ExampleDriftError(AssertionError):
    """An example configuration file no longer matches its schema."""


def assert_example_current(schema: Schema, path: str | os.PathLike[str]) -> None:
    """Raise ``ExampleDriftError`` (with a diff and the fix) when ``path`` is stale."""
    drift = example_drift(schema, path)
    if drift is not None:
        raise ExampleDriftError(
            f"{path} differs from the {schema.name} schema; regenerate it with\n"
            f"  python -m vtwist.config write MODULE:SCHEMA {path}\n{drift}"
        )

"""Keyspace-qualified names, and statements that need no database (sans-IO, no parser).

Vitess users name a table of another keyspace ``ks.table`` (or ```ks`.table``), list one
with ``SHOW TABLES FROM ks``, and, connected without a keyspace to a cluster of several,
still run ``SELECT 1``, ``SELECT @@sql_mode``, ``SET ...``, ``SHOW VARIABLES`` or queries of
``information_schema`` (GUI tools and drivers do at connect). The gate does not parse
statements of unsharded keyspaces; a few patterns outside strings and comments do:

- ``named_keyspaces(sql, names)``: the keyspaces of ``names`` that ``sql`` names as the
  database of an object: ``ks.`` right after FROM, JOIN, INTO, UPDATE, TABLE, TABLES,
  INSERT, REPLACE, IGNORE, EXISTS, TRUNCATE, DESCRIBE, DESC, EXPLAIN, CALL or VIEW; or a
  SHOW's ``FROM|IN ks`` (the second one of ``SHOW COLUMNS|INDEX FROM t FROM ks``) and
  ``SHOW CREATE DATABASE ks``. Not seen: the second table of a comma list (``FROM a,
  ks.b``) and names that only qualify columns. Database names are case-sensitive, as in
  MariaDB on Linux; keywords are not.
- ``needs_database(info)``: False for a statement that reads nothing of a default
  database (SET, DO; a SELECT whose every FROM/JOIN reads ``information_schema``,
  ``performance_schema``, ``mysql``, ``sys`` or DUAL, or that has none; a SHOW other than
  of tables, columns, indexes, triggers, events or CREATE statements).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from vtwist.gate.classify import KIND_SELECT, KIND_SHOW, QueryInfo

#: Schemas every mysqld has: statements reading only these run on any keyspace's tablet.
SYSTEM_SCHEMAS: Final = frozenset({b"information_schema", b"performance_schema", b"mysql", b"sys"})

# Strings and comments (executable ``/*! */`` comments are kept: mysqld runs them).
_QUOTED: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\"|/\*(?!M?!)(?:.|\n)*?\*/"
    rb"|--[ \t][^\n]*|#[^\n]*"
)
_BEFORE_QUALIFIED: Final = (
    rb"(?i:FROM|JOIN|INTO|UPDATE|TABLE|TABLES|INSERT|REPLACE|IGNORE|EXISTS|TRUNCATE"
    rb"|DESCRIBE|DESC|EXPLAIN|CALL|VIEW)"
)
# SHOW forms whose FROM|IN names a table first, then (optionally) its database.
_SHOW_TABLE_FIRST: Final = frozenset({b"COLUMNS", b"FIELDS", b"INDEX", b"INDEXES", b"KEYS"})
# SHOW forms that list or show objects of a database (the default one without FROM|IN).
_SHOW_OF_DATABASE: Final = _SHOW_TABLE_FIRST | {
    b"TABLES", b"TABLE", b"OPEN", b"TRIGGERS", b"EVENTS", b"CREATE"
}  # fmt: skip
_SHOW_WORDS: Final = re.compile(rb"\s*(?:(?:FULL|EXTENDED|GLOBAL|SESSION)\s+)*([A-Za-z_]+)", re.I)
_SHOW_FROM: Final = re.compile(rb"\b(?:FROM|IN)\s+`?([A-Za-z0-9_$]+)`?(?![\w$.`])", re.I)
_TABLE_REF: Final = re.compile(rb"\b(?:FROM|JOIN)\s+(\(|[^\s,;()]+)", re.I)
# A FROM clause up to the next clause: a comma in it lists tables ``_TABLE_REF`` misses.
_FROM_CLAUSE: Final = re.compile(
    rb"\bFROM\b(.*?)(?:\b(?:WHERE|GROUP|ORDER|LIMIT|HAVING|UNION|WINDOW|FOR|LOCK|INTO)\b|$)",
    re.I | re.S,
)
_SHOW: Final = re.compile(rb"\s*(?:\(\s*)*SHOW\b", re.I)
_SCHEMA_OF: Final = re.compile(rb"`?([A-Za-z0-9_$]+)`?\s*\.")


def _bare(sql: bytes) -> bytes:
    """``sql`` with strings and comments blanked (quoted identifiers kept)."""
    if any(c in sql for c in (b"'", b'"', b"-", b"#", b"/*")):
        return _QUOTED.sub(b" ", sql)
    return sql


@lru_cache(maxsize=64)
def _patterns(names: tuple[bytes, ...]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    alt = b"|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    name = rb"(?:`(" + alt + rb")`|(" + alt + rb")(?![\w$]))"
    qualified = re.compile(rb"\b" + _BEFORE_QUALIFIED + rb"\s+" + name + rb"\s*\.")
    database = re.compile(rb"\b(?i:FROM|IN|DATABASE|SCHEMA)\s+" + name + rb"(?![\w$.`]|\s*\.)")
    return qualified, database


@lru_cache(maxsize=64)
def _encoded(names: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(n.encode() for n in names)


def named_keyspaces(sql: bytes, names: tuple[str, ...]) -> set[str]:
    """The keyspaces of ``names`` that ``sql`` names (module docstring); usually empty.

    A statement that holds none of the names (checked first, as plain substrings) costs
    one ``in`` per name.
    """
    present = tuple(n for n in _encoded(names) if n in sql)
    if not present:
        return set()
    bare = _bare(sql)
    qualified, database = _patterns(present)
    found = {(m.group(1) or m.group(2)).decode() for m in qualified.finditer(bare)}
    words = _show_words(bare)
    if words is not None:
        start = 0
        if words.group(1).upper() in _SHOW_TABLE_FIRST:
            first = _SHOW_FROM.search(bare, words.end())  # FROM t: the table, not a database
            start = first.end() if first is not None else len(bare)
        found.update((m.group(1) or m.group(2)).decode() for m in database.finditer(bare, start))
    return found


def _show_words(bare: bytes) -> re.Match[bytes] | None:
    """For a SHOW statement, the match of its first word after SHOW (FULL and the like
    skipped); None for any other statement."""
    show = _SHOW.match(bare)
    return _SHOW_WORDS.match(bare, show.end()) if show is not None else None


def needs_database(info: QueryInfo) -> bool:
    """Whether ``info`` may read the default database (module docstring): when no keyspace
    is selected and it names none, the gate answers ERROR 1046 instead of guessing one."""
    word = info.first_word
    if word in ("set", "do"):
        return False
    if info.kind == KIND_SELECT and word in ("select", "values"):
        bare = _bare(info.sql)
        if any(not _system_ref(m.group(1)) for m in _TABLE_REF.finditer(bare)):
            return True
        return any(b"," in m.group(1) for m in _FROM_CLAUSE.finditer(bare))
    if info.kind == KIND_SHOW and word == "show":
        bare = _bare(info.sql)
        words = _show_words(bare)
        if words is None or words.group(1).upper() not in _SHOW_OF_DATABASE:
            return False
        return not any(m.group(1).lower() in SYSTEM_SCHEMAS for m in _SHOW_FROM.finditer(bare))
    return True


def _system_ref(ref: bytes) -> bool:
    """A FROM/JOIN operand that reads no database of a keyspace: DUAL or a system table."""
    if ref.upper() == b"DUAL":
        return True
    m = _SCHEMA_OF.match(ref)
    return m is not None and m.group(1).lower() in SYSTEM_SCHEMAS

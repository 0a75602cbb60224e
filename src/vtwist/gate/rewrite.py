"""Session values the gate owns, written into statements it sends on (sans-IO).

The gate keeps some session state itself: the connection id clients see in the handshake
(and use with ``SHOW PROCESSLIST`` and ``KILL``), the autocommit mode (``SET autocommit``;
the tablets' pooled connections stay in autocommit) and Vitess's ``workload``. It answers
``SELECT CONNECTION_ID()`` and the ``SET`` statements itself, but a statement that merely
contains one of them (``SELECT CONNECTION_ID() AS id``, ``SET @c = CONNECTION_ID()``,
``SELECT @@autocommit``) runs on a tablet, where mysqld would answer for the tablet's
pooled connection (or not know ``workload``). ``with_session_values``
writes the gate's values in their place, outside strings, quoted identifiers and comments
(as Vitess's vtgate does for the functions and system variables it owns):

* ``CONNECTION_ID()`` -> the gate's connection id;
* ``@@autocommit`` (``@@session.``/``@@local.`` too) -> 1 or 0;
* ``@@workload`` (likewise) -> ``'OLTP'`` or ``'OLAP'``.

``DATABASE()`` is left to mysqld on purpose: ORMs compare it with
``information_schema.*.table_schema``, which holds mysqld's schema name, not a target such
as ``commerce@replica``.

A call or variable that is a whole item of a SELECT list with no alias keeps its column
name: it becomes ``<value> AS `<as written>``` (mysqld names a column by its expression's
text).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from vtwist.protocols.mysql.literals import sql_literal

__all__ = ["SessionValues", "mentions_session_values", "with_session_values"]


class SessionValues(NamedTuple):
    """What the gate writes in (see the module docstring)."""

    connection_id: int
    autocommit: bool
    workload: str  # "OLTP" or "OLAP"


# Quick test: most statements mention none of them.
_HINT: Final = re.compile(rb"connection_id|autocommit|workload", re.IGNORECASE)

# What the scan stops at: strings, quoted identifiers and comments (skipped whole),
# parentheses (nesting), and what is replaced (groups 1-3, in SessionValues' order).
_SCAN: Final = re.compile(
    rb"'(?:[^'\\]|\\.|'')*'?"
    rb'|"(?:[^"\\]|\\.|"")*"?'
    rb"|`(?:[^`]|``)*`?"
    rb"|/\*(?!!|M!).*?(?:\*/|\Z)"
    rb"|(?:--(?=\s|\Z)|#)[^\n]*"
    rb"|(\bCONNECTION_ID\s*\(\s*\))"
    rb"|(@@(?:SESSION\.|LOCAL\.)?AUTOCOMMIT\b)"
    rb"|(@@(?:SESSION\.|LOCAL\.)?WORKLOAD\b)"
    rb"|[()]",
    re.IGNORECASE | re.DOTALL,
)
# Before a whole SELECT-list item: the list's start or a comma.
_ITEM_BEFORE: Final = re.compile(
    rb"(?:\bSELECT(?:\s+(?:ALL|DISTINCT|DISTINCTROW|HIGH_PRIORITY|STRAIGHT_JOIN|"
    rb"SQL_SMALL_RESULT|SQL_BIG_RESULT|SQL_BUFFER_RESULT|SQL_NO_CACHE|SQL_CACHE|"
    rb"SQL_CALC_FOUND_ROWS))*|,)\s*\Z",
    re.IGNORECASE,
)
# After one: the next item, the end, or a clause (not an alias, not an operator).
_ITEM_AFTER: Final = re.compile(
    rb"\s*(?:\Z|;|,|(?:FROM|INTO|WHERE|GROUP|HAVING|ORDER|LIMIT|UNION|FOR|LOCK)\b)",
    re.IGNORECASE,
)


def mentions_session_values(sql: bytes) -> bool:
    """Whether ``sql`` may mention one of the session values (a cheap first test)."""
    return _HINT.search(sql) is not None


def with_session_values(sql: bytes, values: SessionValues) -> bytes:
    """``sql`` with each of the session's calls and variables outside strings, quoted
    identifiers and comments replaced by the gate's value (see the module docstring)."""
    parts: list[bytes] = []
    done = 0
    depth = 0
    literals: list[bytes] | None = None
    for m in _SCAN.finditer(sql):
        token = m.group()
        if token == b"(":
            depth += 1
            continue
        if token == b")":
            depth = max(0, depth - 1)
            continue
        which = m.lastindex
        if which is None:
            continue  # a string, quoted identifier or comment
        if literals is None:
            literals = [
                b"",
                str(values.connection_id).encode("ascii"),
                b"1" if values.autocommit else b"0",
                sql_literal(values.workload),
            ]
        start, end = m.span()
        parts.append(sql[done:start])
        parts.append(literals[which])
        if (
            depth == 0
            and _ITEM_BEFORE.search(sql, 0, start) is not None
            and _ITEM_AFTER.match(sql, end) is not None
        ):
            parts.append(b" AS `" + token.replace(b"`", b"``") + b"`")
        done = end
    if not parts:
        return sql
    parts.append(sql[done:])
    return b"".join(parts)

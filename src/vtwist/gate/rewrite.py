"""``CONNECTION_ID()`` inside statements the gate sends on (sans-IO).

A client learns its connection id from the handshake, and ``KILL <id>`` and ``SHOW
PROCESSLIST`` use the gate's ids. The gate answers ``SELECT CONNECTION_ID()`` itself, but a
statement that merely contains the call (``SELECT CONNECTION_ID() AS id``, ``SET @c =
CONNECTION_ID()``, ``INSERT ... VALUES (CONNECTION_ID())``) runs on a tablet, where mysqld
would answer with the id of the tablet's pooled connection. ``with_connection_id`` writes
the gate's id in place of each call, outside strings, quoted identifiers and comments.

A call that is a whole item of a SELECT list with no alias keeps its column name: it
becomes ``<id> AS `CONNECTION_ID()``` (the call as written), as mysqld names a column by
its expression's text.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mentions_connection_id", "with_connection_id"]

# Quick test: most statements never mention it.
_HINT: Final = re.compile(rb"connection_id", re.IGNORECASE)

# What the scan stops at: strings, quoted identifiers and comments (skipped whole),
# parentheses (nesting), and the call itself (group 1).
_SCAN: Final = re.compile(
    rb"'(?:[^'\\]|\\.|'')*'?"
    rb'|"(?:[^"\\]|\\.|"")*"?'
    rb"|`(?:[^`]|``)*`?"
    rb"|/\*(?!!|M!).*?(?:\*/|\Z)"
    rb"|(?:--(?=\s|\Z)|#)[^\n]*"
    rb"|(\bCONNECTION_ID\s*\(\s*\))"
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


def mentions_connection_id(sql: bytes) -> bool:
    """Whether ``sql`` may contain a ``CONNECTION_ID()`` call (a cheap first test)."""
    return _HINT.search(sql) is not None


def with_connection_id(sql: bytes, connection_id: int) -> bytes:
    """``sql`` with each ``CONNECTION_ID()`` call outside strings, quoted identifiers and
    comments replaced by ``connection_id`` (see the module docstring)."""
    parts: list[bytes] = []
    done = 0
    depth = 0
    value = str(connection_id).encode("ascii")
    for m in _SCAN.finditer(sql):
        token = m.group()
        if token == b"(":
            depth += 1
            continue
        if token == b")":
            depth = max(0, depth - 1)
            continue
        if m.group(1) is None:
            continue  # a string, quoted identifier or comment
        start, end = m.span()
        parts.append(sql[done:start])
        parts.append(value)
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

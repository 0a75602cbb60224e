"""Session values the gate owns, written into statements it sends on (sans-IO).

A client learns its connection id from the handshake, and ``KILL <id>`` and ``SHOW
PROCESSLIST`` use the gate's ids; ``SET autocommit`` is the gate's own session state (the
tablets' pooled connections stay in autocommit). The gate answers ``SELECT
CONNECTION_ID()`` and ``SET autocommit`` itself, but a statement that merely contains
``CONNECTION_ID()`` or ``@@autocommit`` (``SELECT CONNECTION_ID() AS id``, ``SET @c =
CONNECTION_ID()``, ``SELECT @@autocommit``) runs on a tablet, where mysqld would answer
for the tablet's pooled connection. ``with_session_values`` writes the gate's values in
their place, outside strings, quoted identifiers and comments (as Vitess's vtgate does for
the system variables it owns).

A call or variable that is a whole item of a SELECT list with no alias keeps its column
name: it becomes ``<value> AS `<as written>``` (mysqld names a column by its expression's
text).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mentions_session_values", "with_session_values"]

# Quick test: most statements mention neither.
_HINT: Final = re.compile(rb"connection_id|autocommit", re.IGNORECASE)

# What the scan stops at: strings, quoted identifiers and comments (skipped whole),
# parentheses (nesting), the call (group 1) and the variable (group 2).
_SCAN: Final = re.compile(
    rb"'(?:[^'\\]|\\.|'')*'?"
    rb'|"(?:[^"\\]|\\.|"")*"?'
    rb"|`(?:[^`]|``)*`?"
    rb"|/\*(?!!|M!).*?(?:\*/|\Z)"
    rb"|(?:--(?=\s|\Z)|#)[^\n]*"
    rb"|(\bCONNECTION_ID\s*\(\s*\))"
    rb"|(@@(?:SESSION\.|LOCAL\.)?AUTOCOMMIT\b)"
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
    """Whether ``sql`` may mention ``CONNECTION_ID()`` or ``@@autocommit`` (a cheap first
    test)."""
    return _HINT.search(sql) is not None


def with_session_values(sql: bytes, connection_id: int, autocommit: bool) -> bytes:
    """``sql`` with each ``CONNECTION_ID()`` call and session ``@@autocommit`` outside
    strings, quoted identifiers and comments replaced by the gate's value (see the module
    docstring)."""
    parts: list[bytes] = []
    done = 0
    depth = 0
    values = (b"", str(connection_id).encode("ascii"), b"1" if autocommit else b"0")
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
        start, end = m.span()
        parts.append(sql[done:start])
        parts.append(values[which])
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

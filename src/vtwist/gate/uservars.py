"""User variables the gate keeps for a session (sans-IO), so that they pin no connection.

``SET @a = 1, @b = 'x'`` (literals only: numbers, single-quoted strings, NULL, TRUE,
FALSE) is read by ``set_literals``; the session keeps the values and sends them as one
setting, ``set_statement``'s ``SET @`a` = 1, @`b` = 'x'``, with its other settings: the
tablet runs it on the pooled connection a statement gets (tagged with the session's
settings; a connection with other settings or none is reset first, which clears user
variables), so mysqld evaluates ``@a`` itself (same types, same column names) and no
session's variables reach another. Names are case-insensitive, as in MariaDB.

What is not a literal (``SET @a = NOW()``, ``@a := ...``, ``INTO @a``, a CALL with a user
variable) runs on a reserved connection as before, where the settings are replayed first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

#: Held per session at most; past either bound a SET runs on a reserved connection.
MAX_USER_VARIABLES: Final = 256
MAX_USER_VARIABLE_BYTES: Final = 16 * 1024  # (sent with every statement)

_NAME: Final = rb"[A-Za-z0-9_$.]+"
_LITERAL: Final = (
    rb"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
    rb"|'(?:[^'\\]|\\.|'')*'"
    rb"|(?i:NULL|TRUE|FALSE)(?![\w$])"
)
_SET: Final = re.compile(rb"\s*SET\s+", re.IGNORECASE)
_ITEM: Final = re.compile(
    rb"@(" + _NAME + rb")\s*:?=\s*(" + _LITERAL + rb")\s*(?:(,)\s*|;?\s*\Z)", re.DOTALL
)


def set_literals(sql: bytes) -> dict[bytes, bytes] | None:
    """The user variables a ``SET @a = <literal> [, @b = <literal>]...`` gives (lowercase
    name -> the literal as written), or None for any other statement."""
    m = _SET.match(sql)
    if m is None:
        return None
    values: dict[bytes, bytes] = {}
    pos = m.end()
    while True:
        item = _ITEM.match(sql, pos)
        if item is None:
            return None
        values[item.group(1).lower()] = item.group(2)
        if item.group(3) is None:
            return values
        pos = item.end()


def fits(held: Mapping[bytes, bytes], more: Mapping[bytes, bytes]) -> bool:
    """Whether ``held`` updated with ``more`` stays within the bounds above."""
    merged = {**held, **more}
    size = sum(len(k) + len(v) for k, v in merged.items())
    return len(merged) <= MAX_USER_VARIABLES and size <= MAX_USER_VARIABLE_BYTES


def set_statement(held: Mapping[bytes, bytes]) -> str:
    """One SET giving mysqld every held value (the session's setting for them)."""
    items = b", ".join(b"@`" + k.replace(b"`", b"``") + b"` = " + v for k, v in held.items())
    return (b"SET " + items).decode("utf-8", "surrogateescape")

"""SQL literals and ``?`` placeholder interpolation (the gate runs EXECUTE as text SQL).

``str`` means a character string in the connection's encoding, ``bytes`` a binary string
(``_binary X'..'``). Escaping is only safe for ASCII-compatible connection charsets whose
multibyte characters never contain ``\\`` or ``'`` (utf8mb4, latin1...); GBK/Big5/SJIS are
refused. The placeholder lexer skips strings, quoted identifiers and comments. Sans-IO.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import re
from collections.abc import Sequence
from decimal import Decimal

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.values import _decimal_text, _float_text, _text

# Charsets whose multibyte characters can contain 0x5C or 0x27: escaping byte-wise there
# opens SQL injection (the GBK 0xBF27 attack), so they are refused.
_UNSAFE_ENCODINGS = frozenset(
    {"gbk", "gb18030", "big5", "big5hkscs", "cp932", "cp950", "shift_jis", "shift_jis_2004"}
)
_ESCAPES = {
    b"\0": b"\\0",
    b"\n": b"\\n",
    b"\r": b"\\r",
    b"\\": b"\\\\",
    b"'": b"\\'",
    b'"': b'\\"',
    b"\x1a": b"\\Z",
}
_ESCAPE_RE = re.compile(rb"[\0\n\r\\'\"\x1a]")


def _escape_sub(m: re.Match[bytes]) -> bytes:
    return _ESCAPES[m.group()]


def _quote(raw: bytes, no_backslash_escapes: bool) -> bytes:
    if no_backslash_escapes:
        return b"'" + raw.replace(b"'", b"''") + b"'"
    return b"'" + _ESCAPE_RE.sub(_escape_sub, raw) + b"'"


@functools.lru_cache(maxsize=64)
def _check_encoding(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    if name in _UNSAFE_ENCODINGS:
        raise ValueError(f"cannot safely quote strings in {encoding}: use utf8mb4")
    return name


def sql_literal(
    value: object, no_backslash_escapes: bool = False, *, encoding: str = "utf-8"
) -> bytes:
    """``value`` as a MySQL literal: NULL, integers, floats as exact doubles (``1.5e0``),
    Decimals as exact DECIMALs, ``str`` as a quoted string in ``encoding``, bytes-likes as
    ``_binary X'hex'``, temporal values as quoted text. ``no_backslash_escapes`` follows the
    session's SQL mode (then only quotes are doubled). ValueError for NaN/infinity.
    """
    if value is None:
        return b"NULL"
    if isinstance(value, str):
        return _quote(
            value.encode(_check_encoding(encoding), "surrogateescape"), no_backslash_escapes
        )
    if isinstance(value, bytes | bytearray | memoryview):
        # A hex literal needs no escaping, so it is safe in any charset and SQL mode; the
        # introducer makes it a binary *string* (a bare X'35' is the number 53 in numeric
        # context).
        return b"_binary X'" + bytes(value).hex().encode("ascii") + b"'"
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, float):
        text = _float_text(value)
        # A literal without an exponent would be a DECIMAL; "e0" keeps it a DOUBLE.
        return (text if "e" in text else text + "e0").encode("ascii")
    if isinstance(value, Decimal):
        return _decimal_text(value).encode("ascii")
    return b"'" + _text(value) + b"'"  # temporal types; TypeError for anything else


_SPECIAL = re.compile(rb"[?'\"`#/-]")
_SPACE_OR_CONTROL = frozenset((*range(0x21), 0x7F))
# Inside a quoted run: the byte that ends it, and (when escapes apply) the backslash.
_QUOTE_END = {
    (q, esc): re.compile(re.escape(bytes((q,))) + (rb"|\\" if esc else b""))
    for q in b"'\"`"
    for esc in (False, True)
}


def _skip_quoted(sql: bytes, i: int, quote: int, backslash: bool) -> int:
    """Index just past the quoted run whose body starts at ``i`` (len(sql) if unterminated)."""
    search = _QUOTE_END[(quote, backslash)].search
    n = len(sql)
    while True:
        m = search(sql, i)
        if m is None:
            return n
        i = m.start()
        # A backslash makes the next byte literal; a doubled quote is a quote.
        if sql[i] == 0x5C or (i + 1 < n and sql[i + 1] == quote):
            i += 2
        else:
            return i + 1


def _placeholder_offsets(sql: bytes, no_backslash_escapes: bool, ansi_quotes: bool) -> list[int]:
    """Offsets of the ``?`` placeholders outside strings, quoted identifiers and comments."""
    found: list[int] = []
    n = len(sql)
    search = _SPECIAL.search
    i = 0
    while True:
        m = search(sql, i)
        if m is None:
            return found
        i = m.start()
        c = sql[i]
        if c == 0x3F:  # ?
            found.append(i)
            i += 1
        elif c == 0x27:  # '
            i = _skip_quoted(sql, i + 1, c, not no_backslash_escapes)
        elif c == 0x22:  # " is a string, or an identifier under ANSI_QUOTES
            i = _skip_quoted(sql, i + 1, c, not (no_backslash_escapes or ansi_quotes))
        elif c == 0x60:  # `
            i = _skip_quoted(sql, i + 1, c, False)
        elif c == 0x23:  # # comment to end of line
            j = sql.find(b"\n", i)
            i = n if j < 0 else j + 1
        elif c == 0x2D:  # "-- " comment needs whitespace/control (or the end) after "--"
            if sql.startswith(b"-", i + 1) and (i + 2 >= n or sql[i + 2] in _SPACE_OR_CONTROL):
                j = sql.find(b"\n", i)
                i = n if j < 0 else j + 1
            else:
                i += 1
        elif i + 1 < n and sql[i + 1] == 0x2A:  # /*
            if sql.startswith(b"!", i + 2) or sql.startswith(b"M!", i + 2):
                # Executable comment: mysqld runs its body, so its placeholders count. The
                # closing */ is harmless to skip over as ordinary bytes.
                i += 3
            else:
                j = sql.find(b"*/", i + 2)
                i = n if j < 0 else j + 2
        else:
            i += 1


def count_placeholders(
    sql: bytes, no_backslash_escapes: bool = False, *, ansi_quotes: bool = False
) -> int:
    """How many ``?`` placeholders ``sql`` has (outside strings, identifiers, comments)."""
    return len(_placeholder_offsets(sql, no_backslash_escapes, ansi_quotes))


# The text around the placeholders of statements seen recently, by (sql, no backslash
# escapes, ANSI quotes): a prepared statement is executed again and again. Bounded: cleared
# when full; statements over _PIECES_MAX_BYTES are split every time.
_PIECES: dict[tuple[bytes, bool, bool], tuple[bytes, ...]] = {}
_PIECES_ENTRIES = 1024
_PIECES_MAX_BYTES = 4096


def _pieces(sql: bytes, no_backslash_escapes: bool, ansi_quotes: bool) -> tuple[bytes, ...]:
    """``sql`` split at its placeholders (one more piece than placeholders), remembered."""
    key = (sql, no_backslash_escapes, ansi_quotes)
    pieces = _PIECES.get(key)
    if pieces is None:
        cuts = [-1, *_placeholder_offsets(sql, no_backslash_escapes, ansi_quotes), len(sql)]
        pieces = tuple([sql[a + 1 : b] for a, b in itertools.pairwise(cuts)])
        if len(sql) <= _PIECES_MAX_BYTES:
            if len(_PIECES) >= _PIECES_ENTRIES:
                _PIECES.clear()
            _PIECES[key] = pieces
    return pieces


def interpolate(
    sql: bytes,
    params: Sequence[object],
    no_backslash_escapes: bool = False,
    *,
    ansi_quotes: bool = False,
    encoding: str = "utf-8",
) -> bytes:
    """Replace each ``?`` placeholder in ``sql`` with ``sql_literal(param)``.

    MySQLError 1210 (WRONG_ARGUMENTS) when the counts differ.
    """
    pieces = _pieces(sql, no_backslash_escapes, ansi_quotes)
    if len(pieces) - 1 != len(params):
        raise MySQLError(
            ErrorCode.WRONG_ARGUMENTS,
            f"Incorrect arguments to mysqld_stmt_execute: the statement has "
            f"{len(pieces) - 1} placeholders but {len(params)} values were given; bind one "
            "value per '?'",
        )
    parts = [pieces[0]]
    for value, piece in zip(params, pieces[1:], strict=True):
        parts.append(sql_literal(value, no_backslash_escapes, encoding=encoding))
        parts.append(piece)
    return b"".join(parts)

"""Where one SQL text holds several statements (sans-IO, no Twisted).

The server must refuse ``a; b`` with ERR 1064 when the client did not negotiate
CLIENT_MULTI_STATEMENTS (or turned it off with COM_SET_OPTION), as mysqld does.
``second_statement`` finds the start of a second statement; ``split_statements`` cuts a
text into its statements. Both skip ``;`` inside strings, quoted identifiers and comments
(``#``, ``-- ``, ``/* */``; the body of an executable ``/*! */`` comment counts as code, as
mysqld runs it). A trailing ``;``, blanks and comments after the last statement, and empty
statements (``;;``) do not make a second statement.

``set_statement_inner`` finds the statement that MariaDB's ``SET STATEMENT var = value
[, ...] FOR statement`` runs with those values for its own duration only.

A stored-program definition (``CREATE [OR REPLACE] [DEFINER=...] PROCEDURE|FUNCTION|
TRIGGER|EVENT|PACKAGE``) or a MariaDB ``BEGIN NOT ATOMIC`` block is one statement even
though its body holds ``;``: mysqld parses it whole, so it is never split here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = [
    "QUOTED_OR_COMMENT",
    "is_compound",
    "multi_statement_error_text",
    "second_statement",
    "set_statement_inner",
    "split_statements",
]

_SPECIAL: Final = re.compile(rb"[;'\"`#/-]")
_SPACE_OR_CONTROL: Final = frozenset((*range(0x21), 0x7F))
_QUOTE_END: Final = {
    (q, esc): re.compile(re.escape(bytes((q,))) + (rb"|\\" if esc else b""))
    for q in b"'\"`"
    for esc in (False, True)
}
# The leading words of a statement whose body may contain ';' (checked after comments).
_COMPOUND: Final = re.compile(
    rb"(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*(?:\S+@\S+|\S+)\s+)?"
    rb"(?:SQL\s+SECURITY\s+\w+\s+)?(?:AGGREGATE\s+)?"
    rb"(?:PROCEDURE|FUNCTION|TRIGGER|EVENT|PACKAGE)\b"
    rb"|BEGIN\s+NOT\s+ATOMIC\b)",
    re.IGNORECASE,
)


def _skip_quoted(sql: bytes, i: int, quote: int, backslash: bool) -> int:
    """Index just past the quoted run whose body starts at ``i`` (len(sql) if unterminated)."""
    search = _QUOTE_END[(quote, backslash)].search
    n = len(sql)
    while True:
        m = search(sql, i)
        if m is None:
            return n
        i = m.start()
        # A backslash escapes the next byte; a doubled quote stands for one quote.
        if sql[i] == 0x5C or (i + 1 < n and sql[i + 1] == quote):
            i += 2
        else:
            return i + 1


def _line_comment_end(sql: bytes, i: int) -> int:
    j = sql.find(b"\n", i)
    return len(sql) if j < 0 else j + 1


def _is_dash_comment(sql: bytes, i: int) -> bool:
    # "--" starts a comment only when followed by whitespace/control or the end.
    return sql.startswith(b"--", i) and (i + 2 >= len(sql) or sql[i + 2] in _SPACE_OR_CONTROL)


def _semicolons(sql: bytes, no_backslash_escapes: bool, ansi_quotes: bool) -> Iterator[int]:
    """Offsets of the ``;`` that end statements (outside strings, identifiers, comments)."""
    n = len(sql)
    search = _SPECIAL.search
    i = 0
    while True:
        m = search(sql, i)
        if m is None:
            return
        i = m.start()
        c = sql[i]
        if c == 0x3B:  # ;
            yield i
            i += 1
        elif c == 0x27:  # '
            i = _skip_quoted(sql, i + 1, c, not no_backslash_escapes)
        elif c == 0x22:  # " is a string, or an identifier under ANSI_QUOTES
            i = _skip_quoted(sql, i + 1, c, not (no_backslash_escapes or ansi_quotes))
        elif c == 0x60:  # `
            i = _skip_quoted(sql, i + 1, c, False)
        elif c == 0x23:  # #
            i = _line_comment_end(sql, i)
        elif c == 0x2D:  # -
            i = _line_comment_end(sql, i) if _is_dash_comment(sql, i) else i + 1
        elif i + 1 < n and sql[i + 1] == 0x2A:  # /*
            if sql.startswith(b"!", i + 2) or sql.startswith(b"M!", i + 2):
                i += 3  # executable comment: its body is code
            else:
                j = sql.find(b"*/", i + 2)
                i = n if j < 0 else j + 2
        else:
            i += 1


def _skip_blank(sql: bytes, i: int, semicolons: bool) -> int:
    """The first offset from ``i`` that is not whitespace or a comment (nor ``;`` if
    ``semicolons``); ``len(sql)`` if there is none."""
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in _SPACE_OR_CONTROL or (semicolons and c == 0x3B):
            i += 1
        elif c == 0x23 or _is_dash_comment(sql, i):
            i = _line_comment_end(sql, i)
        elif sql.startswith(b"/*", i) and not (
            sql.startswith(b"/*!", i) or sql.startswith(b"/*M!", i)
        ):
            j = sql.find(b"*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            return i
    return n


def is_compound(sql: bytes) -> bool:
    """Whether ``sql`` starts a stored-program definition or a ``BEGIN NOT ATOMIC`` block."""
    start = _skip_blank(sql, 0, semicolons=False)
    return _COMPOUND.match(sql, start) is not None


def second_statement(
    sql: bytes, no_backslash_escapes: bool = False, *, ansi_quotes: bool = False
) -> int | None:
    """The offset where a second statement starts in ``sql``, or ``None`` if it holds one."""
    if b";" not in sql or is_compound(sql):
        return None
    for semi in _semicolons(sql, no_backslash_escapes, ansi_quotes):
        nxt = _skip_blank(sql, semi + 1, semicolons=True)
        if nxt < len(sql):
            if _skip_blank(sql, 0, semicolons=True) >= semi:
                continue  # nothing before this ';': an empty statement, not a first one
            return nxt
        return None
    return None


def split_statements(
    sql: bytes, no_backslash_escapes: bool = False, *, ansi_quotes: bool = False
) -> list[bytes]:
    """The statements of ``sql`` without their ``;``; blank or comment-only pieces dropped."""
    if b";" not in sql or is_compound(sql):
        return [sql] if _skip_blank(sql, 0, semicolons=True) < len(sql) else []
    out: list[bytes] = []
    start = 0
    for semi in [*_semicolons(sql, no_backslash_escapes, ansi_quotes), len(sql)]:
        piece = sql[start:semi]
        if _skip_blank(piece, 0, semicolons=False) < len(piece):
            out.append(piece)
        start = semi + 1
    return out


def multi_statement_error_text(sql: bytes, offset: int) -> str:
    """The ERR 1064 message for a second statement at ``offset`` when multi-statements are
    off: mysqld's wording (near what, at which line) plus what to do about it."""
    near = sql[offset : offset + 80].decode("utf-8", "replace")
    line = sql.count(b"\n", 0, offset) + 1
    return (
        "You have an error in your SQL syntax; check the manual that corresponds to your "
        f"MySQL server version for the right syntax to use near '{near}' at line {line} "
        "(several statements in one query need the CLIENT_MULTI_STATEMENTS option: enable "
        "multi-statements in the client or send one statement per query)"
    )


_SET_STATEMENT: Final = re.compile(
    rb"(?:\s+|/\*(?!!)(?:.|\n)*?\*/|--[ \t][^\n]*(?:\n|$)|#[^\n]*)*SET\s+STATEMENT\b",
    re.IGNORECASE,
)
#: A quoted identifier or a comment (group 1), else a quoted string; an unclosed one runs
#: to the end of the text. For scans that must step over what quotes and comments hold.
QUOTED_OR_COMMENT: Final = re.compile(
    rb"(`(?:[^`]++|``)*+`?|/\*(?:[^*]++|\*(?!/))*+(?:\*/)?|(?:--[ \t]|#)[^\n]*+)"
    rb"|'(?:[^'\\]++|\\.|'')*+'?|\"(?:[^\"\\]++|\\.|\"\")*+\"?",
    re.DOTALL,
)
_FOR: Final = re.compile(rb"\bFOR\b", re.IGNORECASE)


def set_statement_inner(sql: bytes) -> int | None:
    """For ``SET STATEMENT var = value [, ...] FOR statement`` (MariaDB: the values hold for
    that statement only, leaving the session as it was), the offset of ``statement`` in
    ``sql``; None for any other text."""
    m = _SET_STATEMENT.match(sql)
    if m is None:
        return None
    # Strings, identifiers and comments blanked out (same length: offsets hold).
    masked = QUOTED_OR_COMMENT.sub(lambda q: b" " * len(q.group()), sql[m.end() :])
    found = _FOR.search(masked)
    if found is None:
        return None
    return m.end() + found.end()

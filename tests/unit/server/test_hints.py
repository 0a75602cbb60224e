"""The keyword pre-filter: the same answers for short and long statements."""

from __future__ import annotations

import pytest

from vtwist.protocols.mysql.hints import LONG_TEXT, Hint

HINT = Hint(b"lock", b"@", b"/*")
PAD = b"'" + b"x" * LONG_TEXT + b"'"  # a long string value


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        (b"SELECT a FROM t FOR UPDATE", False),
        (b"SELECT GET_LOCK('a', 1)", True),
        (b"select @x", True),
        (b"SELECT /* c */ 1", True),
        (b"SELECT 1 -- lock", True),  # in a comment: kept (callers decide)
        (b"SELECT `lock` FROM t", True),  # a quoted identifier: kept
    ],
)
def test_short_and_long_texts_agree(sql: bytes, found: bool) -> None:
    assert HINT.search(sql) is found
    assert HINT.search(sql + b", " + PAD) is found
    assert HINT.search(PAD + b", " + sql) is found


def test_long_texts_skip_words_inside_strings_only() -> None:
    assert not HINT.search(b"INSERT INTO t VALUES ('lock @ /*', " + PAD + b")")
    # A quote inside an identifier or a comment does not start a string.
    assert HINT.search(b"SELECT `it's` FROM t WHERE a = " + PAD + b" -- '\n AND @x")
    assert HINT.search(b"SELECT 1 /* it's */ , " + PAD + b", @x")
    assert HINT.search(b"SELECT 'it''s \\' still', " + PAD + b", @x")

"""Cheap keyword pre-filters over statement text (sans-IO, no Twisted).

Classification looks for a few words anywhere in a statement (``@``, ``lock``, ``into``...)
before it scans it properly, outside strings. A case-insensitive regex alternation does
that in one pass and is the fastest way for the statements applications send most, a few
hundred bytes; but Python's ``re`` tries the alternation at every position, which for a
60 MB ``INSERT`` of a BLOB takes seconds of the reactor's time.

So above ``LONG_TEXT`` bytes ``Hint`` looks in the statement's *skeleton* instead: the
text with its quoted strings (where the bulk of a long statement is) emptied to ``''``,
quoted identifiers and comments kept (so that a quote inside one does not start a string),
lowered once, and searched word by word with ``bytes.find``. Every caller scans outside
strings afterwards, so a word found only inside a string was never one they wanted. The
last skeleton is kept, since one statement meets several hints in a row.
"""

from __future__ import annotations

import re
from typing import Final

from vtwist.protocols.mysql.splitter import QUOTED_OR_COMMENT

__all__ = ["LONG_TEXT", "Hint"]

#: Bytes of text above which ``Hint`` searches the skeleton word by word.
LONG_TEXT: Final = 4096


def _token(m: re.Match[bytes]) -> bytes:
    # Quoted identifiers and comments are kept, quoted strings emptied.
    kept = m.group(1)
    return kept if kept is not None else b"''"


class _Skeleton:
    """The lowered skeleton of the last long text asked about, by the text's length and
    hash (``bytes`` keeps its hash once computed; the text itself is not kept alive)."""

    key: tuple[int, int] = (-1, 0)
    low: bytes = b""

    @classmethod
    def of(cls, text: bytes) -> bytes:
        key = (len(text), hash(text))
        if key != cls.key:
            cls.low = QUOTED_OR_COMMENT.sub(_token, text).lower()
            cls.key = key
        return cls.low


class Hint:
    """Whether a text contains any of ``words`` (ASCII, case-insensitive), for callers
    that look for them outside strings (see the module docstring)."""

    __slots__ = ("_regex", "_words")

    def __init__(self, *words: bytes) -> None:
        self._words = tuple(w.lower() for w in words)
        self._regex = re.compile(b"|".join(re.escape(w) for w in self._words), re.IGNORECASE)

    def search(self, text: bytes) -> bool:
        """True if ``text`` may contain one of the words outside its strings."""
        if len(text) <= LONG_TEXT:
            return self._regex.search(text) is not None
        low = _Skeleton.of(text)
        return any(w in low for w in self._words)

"""One gate session's diagnostics: what SHOW WARNINGS, SHOW ERRORS, their ``COUNT(*)``
forms, ``@@warning_count`` and ``@@error_count`` answer (sans-IO).

mysqld keeps them per connection, but a session's statements run on pooled tablet
connections that other sessions borrow in between: there, SHOW WARNINGS would answer for
whoever ran last. So the tablet fetches ``SHOW WARNINGS`` right after a statement that had
warnings (``QueryResult.notes``), and the gate keeps them for the session, changed as
mysqld changes its own:

- a statement with warnings: its notes and its warning count (which may exceed the notes
  kept, as ``max_error_count`` makes it on mysqld);
- an error, the gate's or a tablet's: one ``Error`` row with its code and message;
- a statement without warnings clears them, except those mysqld lets through unchanged
  (``keeps``): SET, USE, BEGIN/COMMIT/ROLLBACK/SAVEPOINT, DO, and the diagnostics
  statements themselves, a statement reading ``@@warning_count`` or ``@@error_count``
  included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from vtwist.gate import answers
from vtwist.gate.classify import (
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_ROLLBACK,
    KIND_SAVEPOINT,
    KIND_SET,
    KIND_USE,
    QueryInfo,
)
from vtwist.protocols.mysql.constants import ColumnType
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.tabletrpc_ops import Note

__all__ = ["Diagnostics", "keeps", "reads_counts"]

_KEEPING_KINDS: Final = frozenset(
    {KIND_SET, KIND_USE, KIND_BEGIN, KIND_COMMIT, KIND_ROLLBACK, KIND_SAVEPOINT}
)
_READS_COUNTS: Final = re.compile(rb"@@(?:session\.|local\.)?(?:warning|error)_count\b", re.I)

COLUMNS: Final = (
    answers.text_column("Level", 7),
    ColumnDefinition41("Code", ColumnType.LONG, answers.BINARY, 4),
    answers.text_column("Message", 512),
)


def reads_counts(sql: bytes) -> bool:
    """Whether ``sql`` reads ``@@warning_count`` or ``@@error_count`` (which the gate then
    writes in, ``rewrite``): such a statement leaves the diagnostics as they were."""
    return _READS_COUNTS.search(sql) is not None


def keeps(info: QueryInfo) -> bool:
    """Whether ``info``, when it reports no warning, leaves the diagnostics as they were
    (for one that read the counts, see ``reads_counts``)."""
    return info.kind in _KEEPING_KINDS or info.first_word == "do"


class Diagnostics:
    """The diagnostics of one session (module docstring)."""

    __slots__ = ("error_count", "notes", "warning_count")

    def __init__(self) -> None:
        self.notes: Sequence[Note] = ()
        self.warning_count = 0
        self.error_count = 0

    def noted(self, warnings: int, notes: Sequence[Note], keep: bool) -> None:
        """A statement ended with ``warnings`` counted and ``notes`` fetched; ``keep``: it
        is one that leaves them as they were when it has none (``keeps``)."""
        if warnings:
            self.notes = notes
            self.warning_count = warnings
            self.error_count = sum(1 for n in notes if n.level == "Error")
        elif self.warning_count and not keep:
            self.notes = ()
            self.warning_count = self.error_count = 0

    def failed(self, code: int, message: str) -> None:
        """A statement failed with ERROR ``code``."""
        self.notes = (Note("Error", code, message),)
        self.warning_count = self.error_count = 1

    def count(self, errors: bool) -> answers.Result:
        """SHOW COUNT(*) WARNINGS (ERRORS with ``errors``)."""
        name = "error_count" if errors else "warning_count"
        value = self.error_count if errors else self.warning_count
        return answers.single(f"@@session.{name}", value, integer=True)

    def show(self, errors: bool, offset: int, limit: int | None) -> answers.Result:
        """SHOW WARNINGS (ERRORS with ``errors``) [LIMIT ``offset``, ``limit``]."""
        notes = [n for n in self.notes if n.level == "Error"] if errors else list(self.notes)
        end = None if limit is None else offset + limit
        return answers.table(COLUMNS, notes[offset:end])

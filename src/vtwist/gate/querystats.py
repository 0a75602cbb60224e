"""The gate's query statistics by digest, and its recent errors (sans-IO: no Twisted).

A statement's *digest* is its text with every literal (quoted string, number, hex or bit
value) replaced by ``?``, comments dropped, ``IN (?, ?, ...)`` lists and the rows of a
multi-row ``VALUES`` folded, and white space collapsed: the statements an application
sends from one line of its code share a digest, whatever their values. A prepared
statement's digest is that of its text with ``?`` placeholders, so it matches the same
statement sent as text. Literal values never reach the statistics (only ``?``), so the
page showing them does not show the application's data.

``QueryStats`` keeps, for each (user, database, digest), what ProxySQL's query digest
table and Vitess's /queryz give operators: how many times it ran, how many failed, total,
minimum and maximum time, rows sent and affected, first and last seen. It is bounded:
``stats.max_digests`` entries, the least recently seen dropped for a new one (counted in
``evicted``); digests longer than ``stats.max_digest_length`` bytes are cut. It also keeps
the last ``stats.recent_errors`` errors sent to clients (time, user, database, code,
message and digest). ``vtwist.gate.querystats_page`` renders both at ``/debug/queryz``.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

from vtwist.protocols.mysql.hints import Hint

# Values: quoted strings ("..." too, as mysqld reads them without ANSI_QUOTES; one cut
# short by ``DIGEST_PREFIX`` counts too), hex and bit values, numbers that are not part of
# a name. The lookahead lets the scan skip most positions at once.
_VALUE: Final = (
    rb"'(?:[^'\\]++|\\.|'')*+(?:'|\Z)|\"(?:[^\"\\]++|\\.|\"\")*+(?:\"|\Z)"
    rb"|\b[xXbB]'[0-9A-Fa-f]*+(?:'|\Z)|\b0x[0-9A-Fa-f]+\b|\b0b[01]+\b"
    rb"|(?<![\w$@.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w$])"
)
_VALUES: Final = re.compile(rb"(?=['\"\d.xXbB])(?:" + _VALUE + rb")", re.DOTALL)
# Values, quoted identifiers (kept: group 1) and comments (dropped: group 2), for a
# statement with a backquote or a comment; an identifier or a string is matched whole, so
# what looks like a value or a comment inside it is left alone.
_COMMENT: Final = rb"/\*(?:.|\n)*?\*/|--[ \t][^\n]*|--$|#[^\n]*"
_TOKENS: Final = re.compile(
    rb"(?=['\"`\d.xXbB/#-])(?:(`(?:[^`]++|``)*+`)|" + _VALUE + rb"|(" + _COMMENT + rb"))",
    re.DOTALL,
)
_SLOW_HINT: Final = Hint(b"`", b"#", b"/*", b"--")
# A list item once values are ?: a value, a negative one, NULL, DEFAULT, TRUE, FALSE.
_ITEM: Final = rb"(?:-?\?|NULL|DEFAULT|TRUE|FALSE)"
_LIST: Final = rb"\( ?" + _ITEM + rb"(?: ?, ?" + _ITEM + rb")* ?\)"
_IN_LIST: Final = re.compile(rb"\b(IN) ?" + _LIST, re.IGNORECASE)
_ROWS: Final = re.compile(rb"(" + _LIST + rb")(?: ?, ?" + _LIST + rb")+", re.IGNORECASE)
#: Bytes of a statement its digest is made from (a digest is cut to
#: ``stats.max_digest_length`` anyway): a 10 MB multi-row INSERT costs no more than this.
DIGEST_PREFIX: Final = 64 * 1024


def _token(m: re.Match[bytes]) -> bytes:
    if m.group(2) is not None:
        return b" "
    ident = m.group(1)
    return ident if ident is not None else b"?"


def query_digest(sql: bytes) -> bytes:
    """The digest of ``sql`` (module docstring), e.g. ``SELECT c FROM t WHERE id IN (...)``.
    A statement longer than ``DIGEST_PREFIX`` is digested from its first ``DIGEST_PREFIX``
    bytes (a list cut there becomes ``(...)``), then `` ...``: its values stay out."""
    cut = len(sql) > DIGEST_PREFIX
    if cut:
        sql = sql[:DIGEST_PREFIX]
    slow = _SLOW_HINT.search(sql)
    text = _TOKENS.sub(_token, sql) if slow else _VALUES.sub(b"?", sql)
    text = b" ".join(text.split()).rstrip(b"; ")
    if cut:
        opened = text.rfind(b"(")
        if opened > text.rfind(b")"):  # a list the cut left open
            text = text[:opened] + b"(...)"
    if b"(" in text:
        text = _IN_LIST.sub(rb"\1 (...)", text)
        text = _ROWS.sub(rb"\1, ...", text)
    return text + b" ..." if cut else text


@dataclass(slots=True)
class DigestStats:
    """What one (user, database, digest) did since it was first seen (times in seconds)."""

    user: str
    database: str
    digest: bytes
    first_seen: float
    last_seen: float
    count: int = 0
    errors: int = 0
    total: float = 0.0
    min: float = float("inf")
    max: float = 0.0
    rows_sent: int = 0
    rows_affected: int = 0

    @property
    def mean(self) -> float:
        """Mean time per statement."""
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class RecentError:
    """One error a client got."""

    when: float
    user: str
    database: str
    code: int
    message: str
    digest: bytes


DIGEST_CACHE_SIZE: Final = 1024  # statement texts whose digest is kept (then all dropped)
MAX_CACHED_TEXT: Final = 512  # longer texts are not kept

#: The orders ``QueryStats.top`` knows, by the name a page asks for.
ORDERS: Final = ("total", "count", "mean", "max", "errors", "rows_sent", "last_seen")


class QueryStats:
    """Bounded statistics by digest, and the recent errors (module docstring)."""

    def __init__(self, *, max_digests: int, max_digest_length: int, recent_errors: int) -> None:
        self.max_digests = max(1, max_digests)
        self.max_digest_length = max(16, max_digest_length)
        self.evicted = 0
        self.since: float | None = None
        self._digests: OrderedDict[tuple[str, str, bytes], DigestStats] = OrderedDict()
        self._errors: deque[RecentError] = deque(maxlen=max(0, recent_errors))
        self._cache: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self._digests)

    def digest(self, sql: bytes) -> bytes:
        """``query_digest(sql)``, cut to ``max_digest_length``; statements seen lately
        (the same text: pings, ``SELECT @@...``, ``COMMIT``) come from a small cache."""
        digest = self._cache.get(sql)
        if digest is None:
            digest = query_digest(sql)
            if len(digest) > self.max_digest_length:
                digest = digest[: self.max_digest_length - 3] + b"..."
            if len(self._cache) >= DIGEST_CACHE_SIZE:
                self._cache.clear()
            if len(sql) <= MAX_CACHED_TEXT:
                self._cache[sql] = digest
        return digest

    def record(
        self,
        user: str,
        database: str,
        digest: bytes,
        seconds: float,
        now: float,
        rows_sent: int = 0,
        rows_affected: int = 0,
        failed: bool = False,
    ) -> None:
        """One statement of ``digest`` (from ``digest``) ended after ``seconds``;
        ``failed``: with an error, or otherwise than with a result (the client left)."""
        key = (user, database, digest)
        entry = self._digests.get(key)
        if entry is None:
            if self.since is None:
                self.since = now
            while len(self._digests) >= self.max_digests:
                self._digests.popitem(last=False)
                self.evicted += 1
            entry = self._digests[key] = DigestStats(user, database, digest, now, now)
        else:
            self._digests.move_to_end(key)
            entry.last_seen = now
        entry.count += 1
        entry.total += seconds
        if seconds < entry.min:
            entry.min = seconds
        if seconds > entry.max:
            entry.max = seconds
        entry.rows_sent += rows_sent
        entry.rows_affected += rows_affected
        if failed:
            entry.errors += 1

    def error(
        self, now: float, user: str, database: str, code: int, message: str, sql: bytes
    ) -> None:
        """A client got MySQL error ``code`` for ``sql``: kept among the recent errors, with
        the statement's digest (not its values)."""
        if self._errors.maxlen:
            self._errors.append(RecentError(now, user, database, code, message, self.digest(sql)))

    def top(self, order: str = "total", limit: int | None = None) -> list[DigestStats]:
        """The entries, largest first by ``order`` (one of ``ORDERS``), at most ``limit``."""
        if order not in ORDERS:
            raise ValueError(f"unknown order {order!r}: one of {', '.join(ORDERS)}")
        entries = sorted(self._digests.values(), key=lambda e: getattr(e, order), reverse=True)
        return entries if limit is None else entries[:limit]

    def recent_errors(self) -> list[RecentError]:
        """The recent errors, newest first."""
        return list(reversed(self._errors))

    def reset(self) -> None:
        """Forget every entry and error (the eviction count too)."""
        self._digests.clear()
        self._errors.clear()
        self._cache.clear()
        self.evicted = 0
        self.since = None

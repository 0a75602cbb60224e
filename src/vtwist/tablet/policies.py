"""The tablet's query policies: what a statement is, whether it may run here, and the errors.

Sans-IO (no Twisted). ``classify(sql)`` looks at a statement just enough to decide:

- its ``kind`` for metrics (select, insert, update, delete, begin, commit, rollback, other);
- whether it writes (refused unless the tablet is a serving primary: ERROR 1290);
- whether it sets session state a pooled connection cannot keep (``SET``, user-variable
  assignment, ``CREATE TEMPORARY TABLE``, ``GET_LOCK``, ``LOCK TABLES``, ``FLUSH TABLES
  WITH READ LOCK``, ``HANDLER``, ``USE``, ``PREPARE``, a ``CALL`` with a user-variable
  argument...): refused in autocommit on a
  pooled connection (ERROR 1235, "reserve a connection"), allowed in a transaction or on a
  reserved connection, whose connection is then reset before it goes back to the pool;
- whether it may have touched session state anyway (``CALL``, ``LAST_INSERT_ID(expr)``...):
  allowed, and its pooled connection is reset after it.

``QueryPolicy`` adds the configured denylist (regular expressions, and table names found
after FROM/JOIN/INTO/UPDATE/TABLE: a light scan, not a parser) and the row limits. The
error helpers build the MySQL errors the caller sees; each names the config key involved
and what to do. Codes (documented in the README):

=====================================  =========  ========================================
refusal                                code       SQLSTATE
=====================================  =========  ========================================
write on a non-primary / not serving   1290       HY000 (ER_OPTION_PREVENTS_STATEMENT)
denylisted table                       1142       42000 (ER_TABLEACCESS_DENIED_ERROR)
denylist pattern                       1105       HY000 ("disallowed due to rule")
session state on a pooled connection   1235       42000 (ER_NOT_SUPPORTED_YET)
several statements in one execute      1235       42000
result over query.max_result_rows      1104       42000 ("Row count exceeded N")
query.timeout                          1317       70100 (ER_QUERY_INTERRUPTED)
unknown/ended transaction or reserved  1105       HY000
tablet not serving                     1105       HY000 (retry on another tablet)
=====================================  =========  ========================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.hints import Hint
from vtwist.protocols.mysql.literals import sql_literal
from vtwist.protocols.mysql.splitter import second_statement, set_statement_inner

ER_TOO_BIG_SELECT: Final = 1104
ER_TABLEACCESS_DENIED: Final = 1142
ER_NOT_SUPPORTED_YET: Final = 1235

KIND_SELECT = "select"
KIND_INSERT = "insert"
KIND_UPDATE = "update"
KIND_DELETE = "delete"
KIND_BEGIN = "begin"
KIND_COMMIT = "commit"
KIND_ROLLBACK = "rollback"
KIND_OTHER = "other"
#: Every ``kind`` a metric label may take.
KINDS: Final = (
    KIND_SELECT,
    KIND_INSERT,
    KIND_UPDATE,
    KIND_DELETE,
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_ROLLBACK,
    KIND_OTHER,
)

# Leading blanks, comments and '(' before the first word (an executable /*! */ comment's
# body is code: its words count).
_LEAD: Final = re.compile(
    rb"(?:\s+|\(|/\*(?!!)(?:.|\n)*?\*/|/\*!\d*|--[ \t][^\n]*(?:\n|$)|#[^\n]*)*"
)
_WORD: Final = re.compile(rb"[A-Za-z_]+")
_SECOND_WORD: Final = re.compile(rb"\s+([A-Za-z_]+)")

# First words of statements that never write. Anything unknown counts as a write.
_READ_ONLY_WORDS: Final = frozenset(
    {
        b"SELECT",
        b"WITH",
        b"VALUES",
        b"TABLE",
        b"SHOW",
        b"DESCRIBE",
        b"DESC",
        b"EXPLAIN",
        b"ANALYZE",
        b"HELP",
        b"DO",
        b"SET",
        b"USE",
        b"BEGIN",
        b"START",
        b"COMMIT",
        b"ROLLBACK",
        b"SAVEPOINT",
        b"RELEASE",
        b"PREPARE",
        b"EXECUTE",
        b"DEALLOCATE",
        b"CHECKSUM",
        b"UNLOCK",
        b"LOCK",
        b"XA",
        b"HANDLER",
    }
)
_KIND_BY_WORD: Final = {
    b"SELECT": KIND_SELECT,
    b"WITH": KIND_SELECT,
    b"VALUES": KIND_SELECT,
    b"TABLE": KIND_SELECT,
    b"INSERT": KIND_INSERT,
    b"REPLACE": KIND_INSERT,
    b"UPDATE": KIND_UPDATE,
    b"DELETE": KIND_DELETE,
}
# Statements that always carry session state (checked on the first word).
_STATE_WORDS: Final = frozenset(
    {b"SET", b"USE", b"LOCK", b"PREPARE", b"EXECUTE", b"DEALLOCATE", b"HANDLER"}
)
# A cheap pre-filter: only statements containing one of these bytes get the full scan.
_STATE_HINT: Final = Hint(b"@", b"lock", b"temporary", b"last_insert_id", b"call", b"into")
_STATE_ANYWHERE: Final = re.compile(
    rb"@[A-Za-z0-9_$.]+\s*:=|\bINTO\s+@|\bGET_LOCK\s*\(|\bTEMPORARY\s+TABLE\b"
    rb"|\bWITH\s+READ\s+LOCK\b"
    # A CALL with a user variable argument (an OUT parameter sets it).
    rb"|(?s:^\s*CALL\b.*?(?<!@)@(?!@))",
    re.IGNORECASE,
)
_MAYBE_DIRTY: Final = re.compile(
    rb"\bLAST_INSERT_ID\s*\(\s*[^)\s]|\bRELEASE_(?:ALL_)?LOCKS?\s*\(|^\s*CALL\b",
    re.IGNORECASE,
)
# Strings, quoted identifiers and comments, removed before scanning for the patterns above.
_LITERALS: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\""
    rb"|/\*(?!!)(?:.|\n)*?\*/|--[ \t][^\n]*|#[^\n]*",
)
_GLOBAL_SET: Final = re.compile(rb"\s*SET\s+(?:GLOBAL\b|@@GLOBAL\.)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Statement:
    """What the policies need to know about one statement (``classify``)."""

    kind: str
    first_word: str
    is_write: bool
    sets_state: bool  # refused in autocommit on a pooled connection
    maybe_dirty: bool  # allowed; the connection is reset before reuse
    multi: bool  # several statements in one text


def _first_word(sql: bytes) -> tuple[bytes, int]:
    m = _LEAD.match(sql)
    start = m.end() if m else 0
    w = _WORD.match(sql, start)
    if w is None:
        return b"", start
    return w.group().upper(), w.end()


def classify(sql: bytes) -> Statement:
    """Classify one statement (see the module docstring); cheap for plain point queries."""
    word, end = _first_word(sql)
    kind = _KIND_BY_WORD.get(word, KIND_OTHER)
    second = b""
    if word in (b"START", b"ROLLBACK", b"LOCK", b"CREATE", b"SET", b"BEGIN", b"XA"):
        m = _SECOND_WORD.match(sql, end)
        second = m.group(1).upper() if m else b""
    if word == b"SET" and second == b"STATEMENT":
        inner = set_statement_inner(sql)
        if inner is not None:
            # MariaDB's SET STATEMENT ... FOR s: s, run with values for itself alone.
            return classify(sql[inner:])
    if (word == b"BEGIN" and second != b"NOT") or (word == b"START" and second == b"TRANSACTION"):
        kind = KIND_BEGIN
    elif word == b"COMMIT":
        kind = KIND_COMMIT
    elif word == b"ROLLBACK" and second != b"TO":
        kind = KIND_ROLLBACK
    is_write = word not in _READ_ONLY_WORDS and kind not in (KIND_SELECT,)
    sets_state = word in _STATE_WORDS
    if word == b"SET" and _GLOBAL_SET.match(sql):
        sets_state, is_write = False, True  # global, not session, state: a write
    if word == b"XA":
        sets_state = True
    maybe_dirty = False
    if not sets_state and _STATE_HINT.search(sql):
        bare = _LITERALS.sub(b" ", sql)
        if _STATE_ANYWHERE.search(bare):
            sets_state = True
        elif _MAYBE_DIRTY.search(bare):
            maybe_dirty = True
    if word == b"SELECT" and sets_state:
        is_write = False
    multi = b";" in sql and second_statement(sql) is not None
    key = (word, kind, is_write, sets_state, maybe_dirty or sets_state, multi)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        # Statements are immutable and few tell apart: share them (a frozen dataclass
        # costs more to build than this lookup).
        if len(_STATEMENTS) >= MAX_SHARED_STATEMENTS:
            _STATEMENTS.clear()
        stmt = _STATEMENTS[key] = Statement(
            kind,
            word.decode("ascii").lower(),
            is_write,
            sets_state,
            maybe_dirty or sets_state,
            multi,
        )
    return stmt


MAX_SHARED_STATEMENTS: Final = 1024
_STATEMENTS: dict[tuple[bytes, str, bool, bool, bool, bool], Statement] = {}


# --- bind variables -------------------------------------------------------------------------

_BIND: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\"|`(?:[^`]++|``)*+`|/\*(?:.|\n)*?\*/"
    rb"|--[ \t][^\n]*|#[^\n]*|(?<![:\w@]):([A-Za-z_][A-Za-z0-9_]*)"
)

BindValue = object


def bind(sql: bytes, bind_vars: Mapping[str, object] | None) -> bytes:
    """Replace ``:name`` placeholders with the literals of ``bind_vars[name]``.

    Placeholders inside strings, quoted identifiers and comments are left alone, as are
    names not in ``bind_vars``; a list value becomes ``(v1, v2, ...)`` (for ``IN :ids``).
    MySQLError 1210 if a value cannot be written as a literal.
    """
    if not bind_vars:
        return sql

    def sub(m: re.Match[bytes]) -> bytes:
        name = m.group(1)
        if name is None:
            return m.group()
        key = name.decode("ascii")
        if key not in bind_vars:
            return m.group()
        value = bind_vars[key]
        try:
            if isinstance(value, list):
                if not value:
                    raise ValueError("an empty list cannot be bound")
                return b"(" + b", ".join(sql_literal(v) for v in value) + b")"
            return sql_literal(value)
        except (TypeError, ValueError) as e:
            raise MySQLError(
                ErrorCode.WRONG_ARGUMENTS,
                f"Incorrect arguments to execute: bind variable :{key} ({e}); "
                "bind a scalar or a non-empty list of scalars",
            ) from None

    return _BIND.sub(sub, sql)


# --- table names ----------------------------------------------------------------------------

_TOKENS: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\""
    rb"|/\*(?!!)(?:.|\n)*?\*/|--[ \t][^\n]*|#[^\n]*"
    rb"|(`(?:[^`]|``)+`|[A-Za-z0-9_$]+)(?:\s*\.\s*(`(?:[^`]|``)+`|[A-Za-z0-9_$]+))?|(,)"
)
_TABLE_KEYWORDS: Final = frozenset({b"FROM", b"JOIN", b"INTO", b"UPDATE", b"TABLE", b"TABLES"})
_NOT_TABLES: Final = frozenset(
    {b"SELECT", b"WHERE", b"SET", b"VALUES", b"VALUE", b"IF", b"NOT", b"EXISTS", b"DUAL"}
    | {b"LOW_PRIORITY", b"IGNORE", b"QUICK", b"DELAYED", b"HIGH_PRIORITY", b"LATERAL"}
)


def _ident(token: bytes) -> str:
    if token.startswith(b"`"):
        token = token[1:-1].replace(b"``", b"`")
    return token.decode("utf-8", "replace").lower()


def referenced_tables(sql: bytes) -> set[str]:
    """Table names (``t`` and ``db.t``, lower case) named after FROM, JOIN, INTO, UPDATE or
    TABLE(S), including comma-separated FROM lists. A best-effort scan for the denylist."""
    out: set[str] = set()
    expect = False  # the next identifier is a table name
    in_list = False  # inside a FROM list: a ',' makes the next identifier a table again
    for m in _TOKENS.finditer(sql):
        first, second, comma = m.group(1), m.group(2), m.group(3)
        if comma is not None:
            expect = in_list
            continue
        if first is None:
            continue  # a string or a comment
        upper = first.upper()
        if second is None and upper in _TABLE_KEYWORDS:
            expect = True
            in_list = upper in (b"FROM", b"UPDATE", b"TABLES")
            continue
        if expect and upper not in _NOT_TABLES:
            if second is not None:
                db, table = _ident(first), _ident(second)
                out.add(table)
                out.add(f"{db}.{table}")
            else:
                out.add(_ident(first))
            expect = False
            continue
        if second is None and upper in (b"WHERE", b"SET", b"ON", b"USING", b"GROUP", b"ORDER"):
            in_list = False
            expect = False
        elif second is None and upper in (b"AS",):
            continue
        else:
            expect = False
    return out


# --- errors ---------------------------------------------------------------------------------


def not_writable_error(alias: str, tablet_type: str, serving: bool) -> MySQLError:
    """ERROR 1290: a write reached a tablet that is not a serving primary."""
    what = f"a {tablet_type}" if serving or tablet_type != "primary" else "a primary not serving"
    return MySQLError(
        ErrorCode.OPTION_PREVENTS_STATEMENT,
        f"The tablet {alias} is {what} (--read-only) so it cannot execute this statement; "
        "send writes to the shard's serving primary",
    )


def not_serving_error(alias: str, reason: str) -> MySQLError:
    """ERROR 1105: the tablet takes no new work now (gates retry on another tablet)."""
    return MySQLError(
        ErrorCode.UNKNOWN_ERROR,
        f"vttablet {alias} is not serving ({reason or 'no reason given'}); "
        "retry on another tablet of the shard",
    )


def session_state_error(first_word: str) -> MySQLError:
    """ERROR 1235: a statement that sets session state, on a pooled autocommit connection."""
    return MySQLError(
        ER_NOT_SUPPORTED_YET,
        f"This tablet does not yet support session state ({first_word.upper()} ...) on a "
        "pooled connection: the state would be lost with the connection; reserve a "
        "connection (reserve with settings) or run it inside a transaction",
        "42000",
    )


def multi_statement_error() -> MySQLError:
    """ERROR 1235: several statements in one execute."""
    return MySQLError(
        ER_NOT_SUPPORTED_YET,
        "This tablet does not yet support several statements in one execute; "
        "send one statement per request",
        "42000",
    )


def transaction_statement_error(kind: str) -> MySQLError:
    """ERROR 1235: BEGIN/COMMIT/ROLLBACK sent as a statement instead of the RPC operation."""
    return MySQLError(
        ER_NOT_SUPPORTED_YET,
        f"This tablet does not yet support {kind.upper()} through execute; "
        f"use the {kind} operation of the tablet RPC",
        "42000",
    )


def several_results_error() -> MySQLError:
    """ERROR 1312 (0A000), what mysqld says when a procedure's results cannot be sent: a
    streamed CALL whose procedure returned several result sets."""
    return MySQLError(
        ErrorCode.SP_BADSELECT,
        "PROCEDURE can't return a result set in the given context: a streamed statement "
        "(workload OLAP) relays one result set and this CALL returned several; run it with "
        "SET workload = 'oltp', or make the procedure return at most one (its other "
        "statements still ran)",
        "0A000",
    )


def row_limit_error(limit: int) -> MySQLError:
    """ERROR 1104 (42000): "Row count exceeded N", as Vitess words it."""
    return MySQLError(
        ER_TOO_BIG_SELECT,
        f"Row count exceeded {limit} (query.max_result_rows); add a LIMIT or a tighter "
        "WHERE, or stream the query",
        "42000",
    )


def result_size_error(limit: int) -> MySQLError:
    """ERROR 1104 (42000): a non-streamed result larger than the RPC frame."""
    return MySQLError(
        ER_TOO_BIG_SELECT,
        f"Result exceeds {limit} bytes (rpc.max_frame_size); stream the query or select less",
        "42000",
    )


def timeout_error(timeout: float, key: str) -> MySQLError:
    """ERROR 1317 (70100): the statement was killed on mysqld after ``timeout`` seconds."""
    return MySQLError(
        ErrorCode.QUERY_INTERRUPTED,
        f"Query execution was interrupted: it ran longer than {key} ({timeout:g}s) and "
        "was killed on mysqld; make the query cheaper or raise the timeout",
    )


def killed_error(why: str) -> MySQLError:
    """ERROR 1317 (70100): the statement was killed on mysqld for ``why``."""
    return MySQLError(
        ErrorCode.QUERY_INTERRUPTED, f"Query execution was interrupted: killed on mysqld ({why})"
    )


# --- the configured policy ------------------------------------------------------------------


class QueryPolicy:
    """The configured limits and denylist, checked before a statement is sent to mysqld."""

    def __init__(
        self,
        *,
        max_result_rows: int,
        warn_result_rows: int,
        denied_patterns: Iterable[str] = (),
        denied_tables: Iterable[str] = (),
    ) -> None:
        self.max_result_rows = max_result_rows
        self.warn_result_rows = warn_result_rows
        self.denied_patterns: list[tuple[str, re.Pattern[bytes]]] = [
            (p, re.compile(p.encode("utf-8"), re.IGNORECASE | re.DOTALL)) for p in denied_patterns
        ]
        self.denied_tables = frozenset(t.lower() for t in denied_tables)

    def row_limit(self, requested: int) -> int:
        """The row limit of one execute: the caller may lower the tablet's, never raise it."""
        if requested > 0:
            return min(requested, self.max_result_rows)
        return self.max_result_rows

    def check_denylist(self, sql: bytes, stmt: Statement) -> None:
        """Raise the denylist error if ``sql`` matches a pattern or names a denied table."""
        for i, (text, pattern) in enumerate(self.denied_patterns):
            if pattern.search(sql):
                raise MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"Query disallowed due to rule: query.denylist_patterns[{i}] ({text!r}); "
                    "ask the tablet's operator, or change the query",
                )
        if self.denied_tables:
            hit = referenced_tables(sql) & self.denied_tables
            if hit:
                table = sorted(hit)[0]
                command = stmt.first_word.upper() or "statement"
                raise MySQLError(
                    ER_TABLEACCESS_DENIED,
                    f"{command} command denied by the tablet for table '{table}' "
                    "(query.denylist_tables); ask the tablet's operator",
                    "42000",
                )

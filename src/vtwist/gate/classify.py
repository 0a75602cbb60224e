"""Cheap statement classification for routing (sans-IO, no parser).

``classify(sql)`` looks at the first words and a few patterns (outside strings and
comments) and returns a ``QueryInfo``:

- ``kind``: select, insert, update, delete, replace, begin, commit, rollback, savepoint,
  set, use, show, ddl, other;
- ``is_write``: must run on a primary (anything not known to be read-only counts);
- ``locks``: a SELECT with FOR UPDATE / LOCK IN SHARE MODE / FOR SHARE (primary only);
- ``sets_state``: leaves session state on the backend connection (SET of session or user
  variables, user-variable assignment, temporary tables, GET_LOCK, LOCK TABLES, PREPARE,
  XA, a CALL with a user variable argument...), so the gate runs it on a reserved tablet
  connection;
- ``owned``: a statement the gate answers itself (``OWNED_*``), with ``arg`` (USE's
  database, KILL's id, ``SET workload = 'olap'|'oltp'``...).

MariaDB's ``SET STATEMENT var = value FOR s`` is classified as ``s`` (its values last for
``s`` only, so it leaves no session state).

The tablet has its own, stricter check; the gate must be a superset of it so that the
tablet never has to refuse a stateful statement on a pooled connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.hints import Hint
from vtwist.protocols.mysql.splitter import set_statement_inner
from vtwist.protocols.tabletrpc_ops import TRANSACTION_CHARACTERISTICS

KIND_SELECT: Final = "select"
KIND_INSERT: Final = "insert"
KIND_UPDATE: Final = "update"
KIND_DELETE: Final = "delete"
KIND_REPLACE: Final = "replace"
KIND_BEGIN: Final = "begin"
KIND_COMMIT: Final = "commit"
KIND_ROLLBACK: Final = "rollback"
KIND_SAVEPOINT: Final = "savepoint"
KIND_SET: Final = "set"
KIND_USE: Final = "use"
KIND_SHOW: Final = "show"
KIND_DDL: Final = "ddl"
KIND_OTHER: Final = "other"
KINDS: Final = (
    KIND_SELECT,
    KIND_INSERT,
    KIND_UPDATE,
    KIND_DELETE,
    KIND_REPLACE,
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_ROLLBACK,
    KIND_SAVEPOINT,
    KIND_SET,
    KIND_USE,
    KIND_SHOW,
    KIND_DDL,
    KIND_OTHER,
)

# Gate-owned statements.
OWNED_VERSION_COMMENT: Final = "version_comment"
OWNED_VERSION: Final = "version"
OWNED_CONNECTION_ID: Final = "connection_id"
OWNED_DATABASE: Final = "database"
OWNED_PROCESSLIST: Final = "processlist"
OWNED_KILL: Final = "kill"
OWNED_KILL_QUERY: Final = "kill_query"
OWNED_TABLETS: Final = "vitess_tablets"
OWNED_SHARDS: Final = "vitess_shards"
OWNED_KEYSPACES: Final = "vitess_keyspaces"
OWNED_TARGET: Final = "vitess_target"
OWNED_REPLICATION_STATUS: Final = "vitess_replication_status"  # arg: LIKE pattern or ""
OWNED_DATABASES: Final = "databases"
OWNED_USE: Final = "use"
OWNED_AUTOCOMMIT: Final = "autocommit"
OWNED_SET_NAMES: Final = "set_names"
OWNED_WORKLOAD: Final = "workload"
OWNED_SHOW_WARNINGS: Final = "show_warnings"  # arg: "warnings|errors:offset:limit"
OWNED_COUNT_WARNINGS: Final = "count_warnings"  # arg: "warnings" or "errors"
OWNED_LOAD_LOCAL: Final = "load_local"  # arg: the file name
OWNED_QUERY_TIMEOUT: Final = "query_timeout"  # arg: milliseconds (0: the default)
OWNED_DATABASE_DDL: Final = "database_ddl"  # CREATE/DROP DATABASE|SCHEMA (``database_ddl``)
OWNED_SERVER_ADMIN: Final = "server_admin"  # refused; arg: what it is, e.g. "RESET MASTER"

_LEAD: Final = re.compile(
    rb"(?:\s+|\(|/\*(?!!)(?:.|\n)*?\*/|/\*!\d*|--[ \t][^\n]*(?:\n|$)|#[^\n]*)*"
)
_WORD: Final = re.compile(rb"[A-Za-z_]+")
_NEXT_WORD: Final = re.compile(rb"\s*([A-Za-z_]+)")
# Strings, quoted identifiers and comments: removed before looking for patterns.
_LITERALS: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\"|`(?:[^`]++|``)*+`"
    rb"|/\*(?!!)(?:.|\n)*?\*/|--[ \t][^\n]*|#[^\n]*",
)
_STRINGS: Final = re.compile(
    rb"'(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\"|`(?:[^`]++|``)*+`"
)
_COMMENTS: Final = re.compile(rb"/\*(?!!)(?:.|\n)*?\*/|--[ \t][^\n]*|#[^\n]*")

_READ_WORDS: Final = frozenset(
    {b"SELECT", b"WITH", b"VALUES", b"TABLE", b"SHOW", b"DESCRIBE", b"DESC", b"EXPLAIN"}
    | {b"HELP", b"DO", b"SET", b"USE", b"BEGIN", b"START", b"COMMIT", b"ROLLBACK"}
    | {b"SAVEPOINT", b"RELEASE", b"PREPARE", b"EXECUTE", b"DEALLOCATE", b"UNLOCK", b"LOCK"}
    | {b"XA", b"KILL"}
)
_KIND_BY_WORD: Final = {
    b"SELECT": KIND_SELECT,
    b"WITH": KIND_SELECT,
    b"VALUES": KIND_SELECT,
    b"TABLE": KIND_SELECT,
    b"INSERT": KIND_INSERT,
    b"REPLACE": KIND_REPLACE,
    b"UPDATE": KIND_UPDATE,
    b"DELETE": KIND_DELETE,
    b"SET": KIND_SET,
    b"USE": KIND_USE,
    b"SHOW": KIND_SHOW,
    b"DESCRIBE": KIND_SHOW,
    b"DESC": KIND_SHOW,
    b"EXPLAIN": KIND_SHOW,
    b"COMMIT": KIND_COMMIT,
    b"SAVEPOINT": KIND_SAVEPOINT,
    b"RELEASE": KIND_SAVEPOINT,
    b"CREATE": KIND_DDL,
    b"ALTER": KIND_DDL,
    b"DROP": KIND_DDL,
    b"RENAME": KIND_DDL,
    b"TRUNCATE": KIND_DDL,
}
_STATE_WORDS: Final = frozenset(
    {b"SET", b"LOCK", b"UNLOCK", b"PREPARE", b"EXECUTE", b"DEALLOCATE", b"XA", b"HANDLER"}
)
# LAST_INSERT_ID(expr), which sets the connection's LAST_INSERT_ID() (``sets_last_insert_id``).
_LAST_INSERT_ID_EXPR: Final = rb"\bLAST_INSERT_ID\s*\(\s*[^)\s]"
_STATE_ANYWHERE: Final = re.compile(
    rb"@[A-Za-z0-9_$.]+\s*:=|\bINTO\s+@|\bGET_LOCK\s*\(|\bTEMPORARY\s+TABLE\b|"
    + _LAST_INSERT_ID_EXPR
    + rb"|\bRELEASE_(?:ALL_)?LOCKS?\s*\(|\bSQL_CALC_FOUND_ROWS\b|\bWITH\s+READ\s+LOCK\b",
    re.IGNORECASE,
)
_STATE_HINT: Final = Hint(b"@", b"lock", b"temporary", b"last_insert_id", b"into", b"calc")
# A user variable (not ``@@name``): a CALL with one as an argument may set it (an OUT or
# INOUT parameter), which a later statement of the session reads.
_USER_VARIABLE: Final = re.compile(rb"(?<!@)@(?!@)")
_LOCKING: Final = re.compile(
    rb"\bFOR\s+UPDATE\b|\bLOCK\s+IN\s+SHARE\s+MODE\b|\bFOR\s+SHARE\b", re.IGNORECASE
)
_LOCK_HINT: Final = Hint(b"update", b"share")
_GLOBAL_SET: Final = re.compile(rb"SET\s+(?:GLOBAL\b|@@GLOBAL\.)", re.IGNORECASE)
_AUTOCOMMIT: Final = re.compile(
    rb"SET\s+(?:SESSION\s+|LOCAL\s+|@@SESSION\.|@@LOCAL\.|@@)?AUTOCOMMIT\s*(?:=|:=)\s*"
    rb"(0|1|ON|OFF|TRUE|FALSE|'ON'|'OFF')\s*;?\s*$",
    re.IGNORECASE,
)
_SET_NAMES: Final = re.compile(
    rb"SET\s+NAMES\s+['\"`]?(utf8mb4|utf8|utf8mb3)['\"`]?"
    rb"(?:\s+COLLATE\s+['\"`]?(?:utf8mb4|utf8|utf8mb3)_general_ci['\"`]?)?\s*;?\s*$",
    re.IGNORECASE,
)
_OWNED_SELECTS: Final = {
    b"select @@version_comment limit 1": OWNED_VERSION_COMMENT,
    b"select @@version_comment": OWNED_VERSION_COMMENT,
    b"select version()": OWNED_VERSION,
    b"select @@version": OWNED_VERSION,
    b"select connection_id()": OWNED_CONNECTION_ID,
    b"select database()": OWNED_DATABASE,
    b"select schema()": OWNED_DATABASE,
}
_OWNED_SHOWS: Final = {
    b"show processlist": OWNED_PROCESSLIST,
    b"show full processlist": OWNED_PROCESSLIST,
    b"show vitess_tablets": OWNED_TABLETS,
    b"show vitess_shards": OWNED_SHARDS,
    b"show vitess_keyspaces": OWNED_KEYSPACES,
    b"show vitess_target": OWNED_TARGET,
    b"show keyspaces": OWNED_KEYSPACES,
    b"show databases": OWNED_DATABASES,
    b"show schemas": OWNED_DATABASES,
}
# SHOW WARNINGS|ERRORS [LIMIT [offset,] count | LIMIT count OFFSET offset], normalized.
_SHOW_DIAGNOSTICS: Final = re.compile(
    rb"show (warnings|errors)(?: limit (\d+)(?: ?, ?(\d+)| offset (\d+))?)?"
)
# SHOW VITESS_TABLETS|SHARDS|KEYSPACES, KEYSPACES, DATABASES|SCHEMAS with LIKE 'pattern'
# (normalized): arg "like:<pattern>" (tablets match by hostname, shards as ks/shard).
_SHOW_LIKE: Final = re.compile(
    rb"show (vitess_tablets|vitess_shards|vitess_keyspaces|keyspaces|databases|schemas)"
    rb" like '((?:[^'\\]++|\\.|'')*+)'"
)
_LIKE_OWNED: Final = {
    b"vitess_tablets": OWNED_TABLETS,
    b"vitess_shards": OWNED_SHARDS,
    b"vitess_keyspaces": OWNED_KEYSPACES,
    b"keyspaces": OWNED_KEYSPACES,
    b"databases": OWNED_DATABASES,
    b"schemas": OWNED_DATABASES,
}
# SHOW VITESS_REPLICATION_STATUS [LIKE 'keyspace pattern'], normalized.
_REPLICATION_STATUS: Final = re.compile(
    rb"show vitess_replication_status(?: like '((?:[^'\\]++|\\.|'')*+)')?"
)
_SHOW_COUNT: Final = re.compile(rb"show count ?\( ?\* ?\) ?(warnings|errors)")
# LOAD DATA|XML [LOW_PRIORITY|CONCURRENT] LOCAL INFILE 'name': the gate reads the file
# from its client (the tablet's connection to mysqld sends it on).
_LOAD_LOCAL: Final = re.compile(
    rb"LOAD\s+(?:DATA|XML)\s+(?:(?:LOW_PRIORITY|CONCURRENT)\s+)?LOCAL\s+INFILE\s*"
    rb"('(?:[^'\\]++|\\.|'')*+'|\"(?:[^\"\\]++|\\.|\"\")*+\")",
    re.IGNORECASE | re.DOTALL,
)
_UNESCAPE: Final = {q: re.compile(rb"\\(.)|" + re.escape(q + q), re.DOTALL) for q in (b"'", b'"')}
_ESCAPED: Final = {
    **{b"0": b"\0", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"Z": b"\x1a"},
    **{b"%": b"\\%", b"_": b"\\_"},  # kept, as mysqld keeps them (for LIKE)
}
_WORKLOAD: Final = re.compile(
    rb"SET\s+(?:SESSION\s+|@@SESSION\.|@@)?WORKLOAD\s*=\s*['\"`]?(OLAP|OLTP)['\"`]?\s*;?\s*$",
    re.IGNORECASE,
)
_QUERY_TIMEOUT: Final = re.compile(
    rb"SET\s+(?:SESSION\s+|@@SESSION\.|@@)?QUERY_TIMEOUT\s*=\s*(\d{1,10})\s*;?\s*$", re.IGNORECASE
)
# Vitess's comment directive: /*vt+ ... QUERY_TIMEOUT_MS=n ... */ anywhere in a statement.
_TIMEOUT_DIRECTIVE: Final = re.compile(
    rb"/\*vt\+(?:[^*]|\*(?!/))*?\bQUERY_TIMEOUT_MS\s*=\s*(\d{1,10})\b", re.IGNORECASE
)
_DATABASE_DDL_HEAD: Final = re.compile(rb"(?:CREATE|DROP)\s+(?:DATABASE|SCHEMA)\b", re.IGNORECASE)
_DATABASE_DDL: Final = re.compile(
    rb"\s*(CREATE|DROP)\s+(?:DATABASE|SCHEMA)\s+(IF\s+(?:NOT\s+)?EXISTS\s+)?"
    rb"(`(?:[^`]|``)+`|[^\s;`]+)",
    re.IGNORECASE,
)
# Statements that manage mysqld's replication, binary logs or process: the tablets and
# vtorc own those, so the gate refuses them (mysqld would let an account with RELOAD
# RESET MASTER, wiping the binary logs the replicas follow).
_SERVER_ADMIN: Final = re.compile(
    rb"(RESET\s+(?:MASTER|SLAVE|REPLICA)|PURGE\s+(?:BINARY|MASTER)\s+LOGS"
    rb"|CHANGE\s+(?:MASTER|REPLICATION)|(?:START|STOP)\s+(?:ALL\s+)?(?:SLAVES?|REPLICAS?)"
    rb"|SHUTDOWN|RESTART|(?:INSTALL|UNINSTALL)\s+(?:PLUGIN|SONAME))\b",
    re.IGNORECASE,
)
_ADMIN_WORDS: Final = frozenset(
    (b"RESET", b"PURGE", b"CHANGE", b"START", b"STOP", b"SHUTDOWN", b"RESTART", b"INSTALL",
     b"UNINSTALL")
)  # fmt: skip
_KILL: Final = re.compile(rb"KILL\s+(?:(QUERY|CONNECTION)\s+)?(\d+)\s*;?\s*$", re.IGNORECASE)
_USE: Final = re.compile(rb"USE\s+(`(?:[^`]|``)+`|\S+?)\s*;?\s*$", re.IGNORECASE)
_SPACES: Final = re.compile(rb"\s+")


@dataclass(frozen=True, slots=True)
class QueryInfo:
    """What routing needs to know about one statement (see the module docstring).

    Routing plugins receive it, with ``sql`` the statement's text.
    """

    sql: bytes
    kind: str
    first_word: str
    is_write: bool
    locks: bool = False
    sets_state: bool = False
    owned: str | None = None
    arg: str = ""

    @property
    def is_read(self) -> bool:
        """A plain read: may go to a replica (not a write, not locking, no state)."""
        return not self.is_write and not self.locks and not self.sets_state


def strip_comments(sql: bytes) -> bytes:
    """``sql`` without its comments (``/*! */`` executable comments are kept)."""
    return _COMMENTS.sub(b" ", sql)


def _first_word(sql: bytes, start: int = -1) -> tuple[bytes, int]:
    if start < 0:
        m = _LEAD.match(sql)
        start = m.end() if m else 0
    w = _WORD.match(sql, start)
    if w is None:
        return b"", start
    return w.group().upper(), w.end()


def _collapsed(sql: bytes) -> bytes:
    """``sql`` without comments, runs of blanks made one space, and no trailing ';'."""
    return _SPACES.sub(b" ", strip_comments(sql)).strip().rstrip(b";").strip()


def _normalized(sql: bytes) -> bytes:
    return _collapsed(sql).lower()


def _owned(word: bytes, sql: bytes, body: bytes) -> tuple[str | None, str]:
    if word == b"SELECT":
        # Every gate-owned SELECT has a '(' or '@@', which normalizing cannot create: most
        # SELECTs need no normalized copy.
        if b"(" not in sql and b"@@" not in sql:
            return None, ""
        text = _collapsed(sql)
        if len(text) <= 40:
            owned = _OWNED_SELECTS.get(text.lower())
            if owned is None:
                return None, ""
            # The column is named as the client wrote the expression (as mysqld does):
            # ``SELECT @@version`` answers a column "@@version", ``select version()`` one
            # named "version()".
            column = text[7:]
            if column.lower().endswith(b" limit 1"):
                column = column[:-8]
            return owned, column.decode("ascii", "replace")
    elif word == b"SHOW":
        norm = _normalized(sql)
        owned = _OWNED_SHOWS.get(norm)
        if owned is not None:
            return owned, ""
        if b"warnings" in norm or b"errors" in norm:
            return _diagnostics(norm)
        if norm.startswith(b"show vitess_replication_status"):
            m = _REPLICATION_STATUS.fullmatch(norm)
            if m:
                quoted = m.group(1)
                arg = "%" if quoted is None else _unquoted(b"'" + quoted + b"'").decode()
                return OWNED_REPLICATION_STATUS, arg
        elif b" like '" in norm:
            m = _SHOW_LIKE.fullmatch(norm)
            if m:
                pattern = _unquoted(b"'" + m.group(2) + b"'").decode("utf-8", "replace")
                return _LIKE_OWNED[m.group(1)], "like:" + pattern
        return None, ""
    elif word == b"CREATE" or word == b"DROP":
        if _DATABASE_DDL_HEAD.match(body):
            return OWNED_DATABASE_DDL, ""
    elif word in _ADMIN_WORDS:
        m = _SERVER_ADMIN.match(body)
        if m:
            return OWNED_SERVER_ADMIN, " ".join(m.group(1).decode().upper().split())
    elif word == b"KILL":
        m = _KILL.match(body)
        if m:
            query = (m.group(1) or b"").upper() == b"QUERY"
            return (OWNED_KILL_QUERY if query else OWNED_KILL), m.group(2).decode()
    elif word == b"LOAD":
        m = _LOAD_LOCAL.match(body)
        if m:
            return OWNED_LOAD_LOCAL, _unquoted(m.group(1)).decode("utf-8", "surrogateescape")
    elif word == b"USE":
        m = _USE.match(body)
        if m:
            return OWNED_USE, _identifier(m.group(1))
    elif word == b"SET":
        m = _AUTOCOMMIT.match(body)
        if m:
            value = m.group(1).strip(b"'").upper()
            return OWNED_AUTOCOMMIT, "1" if value in (b"1", b"ON", b"TRUE") else "0"
        if _SET_NAMES.match(body):
            return OWNED_SET_NAMES, ""
        m = _WORKLOAD.match(body)
        if m:
            return OWNED_WORKLOAD, m.group(1).decode().lower()
        m = _QUERY_TIMEOUT.match(body)
        if m:
            return OWNED_QUERY_TIMEOUT, str(int(m.group(1)))
    return None, ""


def _unquoted(literal: bytes) -> bytes:
    """The value of a quoted SQL string (backslash escapes, doubled quotes)."""

    def one(m: re.Match[bytes]) -> bytes:
        c = m.group(1)
        if c is None:
            return m.group()[:1]  # '' or ""
        return _ESCAPED.get(c, c)

    return _UNESCAPE[literal[:1]].sub(one, literal[1:-1])


def _diagnostics(norm: bytes) -> tuple[str | None, str]:
    m = _SHOW_DIAGNOSTICS.fullmatch(norm)
    if m:
        which, first, second, offset = m.groups()
        if second is not None:  # LIMIT offset, count
            start, limit = first, second
        else:
            start, limit = offset or b"0", first
        count = "" if limit is None else limit.decode()
        return OWNED_SHOW_WARNINGS, f"{which.decode()}:{int(start)}:{count}"
    m = _SHOW_COUNT.fullmatch(norm)
    if m:
        return OWNED_COUNT_WARNINGS, m.group(1).decode()
    return None, ""


def directive_timeout_ms(sql: bytes) -> int | None:
    """The milliseconds of a ``/*vt+ QUERY_TIMEOUT_MS=n */`` comment directive in ``sql``,
    else None (0 turns the statement's timeout off, back to the default)."""
    if b"/*" not in sql:  # (one scan of most statements)
        return None
    m = _TIMEOUT_DIRECTIVE.search(_STRINGS.sub(b"''", sql))
    return int(m.group(1)) if m else None


def classify(sql: bytes) -> QueryInfo:
    """Classify one statement (see the module docstring); a few regex matches at most."""
    lead = _LEAD.match(sql)
    lead_end = lead.end() if lead else 0
    word, end = _first_word(sql, lead_end)
    kind = _KIND_BY_WORD.get(word, KIND_OTHER)
    second = b""
    if word in (b"START", b"BEGIN", b"ROLLBACK", b"CREATE", b"SET"):
        m = _NEXT_WORD.match(sql, end)
        second = m.group(1).upper() if m else b""
    if word == b"SET" and second == b"STATEMENT":
        inner = set_statement_inner(sql)
        if inner is not None:
            # SET STATEMENT ... FOR s: s with values for itself alone, no session state.
            i = classify(sql[inner:])
            return QueryInfo(sql, i.kind, i.first_word, i.is_write, i.locks, i.sets_state)
    if (word == b"BEGIN" and second != b"NOT") or (word == b"START" and second == b"TRANSACTION"):
        kind = KIND_BEGIN
    elif word == b"ROLLBACK":
        kind = KIND_SAVEPOINT if second == b"TO" else KIND_ROLLBACK
    body = sql[lead_end:] if lead_end else sql
    is_write = word not in _READ_WORDS and kind != KIND_SELECT
    sets_state = word in _STATE_WORDS
    if word == b"SET" and _GLOBAL_SET.match(body):
        sets_state, is_write = False, True
    owned, arg = _owned(word, sql, body)
    if owned is not None:
        sets_state = False
    locks = False
    check_state = not sets_state and owned is None and _STATE_HINT.search(sql)
    check_lock = kind == KIND_SELECT and _LOCK_HINT.search(sql)
    if check_state or check_lock:
        bare = _LITERALS.sub(b" ", sql)
        if check_state and (
            _STATE_ANYWHERE.search(bare) or (word == b"CALL" and _USER_VARIABLE.search(bare))
        ):
            sets_state = True
        if check_lock and _LOCKING.search(bare):
            locks = True
    if word == b"CREATE" and second == b"TEMPORARY":
        sets_state, is_write = True, True
    return QueryInfo(
        sql, kind, word.decode("ascii").lower(), is_write, locks, sets_state, owned, arg
    )


# A SET that only gives session system variables values: ``SET [SESSION|LOCAL] name = v``,
# ``@@[session.|local.]name = v``, several of them, ``SET NAMES``/``CHARACTER SET``, or
# ``SET SESSION TRANSACTION ...``. What disqualifies one (anywhere outside quotes): a user
# variable (a lone ``@``), GLOBAL/PERSIST, a subquery, and the SET forms that are not
# settings (PASSWORD, ROLE, DEFAULT ROLE, STATEMENT ... FOR, TRANSACTION without SESSION).
_SETTING_NOT: Final = re.compile(
    rb"(?<!@)@(?!@)|\bGLOBAL\b|\bPERSIST(?:_ONLY)?\b|\bSELECT\b"
    rb"|^\s*SET\s+(?:PASSWORD|ROLE|DEFAULT\s+ROLE|STATEMENT|TRANSACTION)\b",
    re.IGNORECASE,
)


# An executable comment, ``/*!40100 WITH CONSISTENT SNAPSHOT */`` (mysqldump's) or
# MariaDB's ``/*M!100100 ... */``: mysqld runs its text, so it counts as written.
_EXECUTABLE: Final = re.compile(rb"/\*M?!\d*(.*?)\*/", re.DOTALL)
_START_TRANSACTION: Final = re.compile(rb"\s*START\s+TRANSACTION\b(.*)", re.IGNORECASE | re.DOTALL)
_CHARACTERISTICS: Final = {name.encode(): name for name in TRANSACTION_CHARACTERISTICS}


def database_ddl(sql: bytes) -> tuple[str, bool, str]:
    """``CREATE|DROP DATABASE|SCHEMA [IF [NOT] EXISTS] name ...`` (executable comments read
    as mysqld reads them: mysqldump writes ``CREATE DATABASE /*!32312 IF NOT EXISTS*/ `x```):
    ("CREATE" or "DROP", whether IF [NOT] EXISTS was given, the name). Raises MySQLError
    1064 when the name is missing."""
    m = _DATABASE_DDL.match(strip_comments(_EXECUTABLE.sub(rb" \1 ", sql)))
    if m is None:
        raise MySQLError(
            ErrorCode.PARSE_ERROR,
            "You have an error in your SQL syntax: CREATE or DROP DATABASE needs a name",
            "42000",
        )
    return m.group(1).upper().decode(), m.group(2) is not None, _identifier(m.group(3))


def _identifier(raw: bytes) -> str:
    """A name as written, unquoted if in backticks (a doubled backtick is one)."""
    if raw.startswith(b"`"):
        raw = raw[1:-1].replace(b"``", b"`")
    return raw.decode("utf-8", "replace")


def transaction_characteristics(sql: bytes) -> str:
    """The characteristics of a ``START TRANSACTION ...`` (``"READ ONLY"``,
    ``"WITH CONSISTENT SNAPSHOT, READ WRITE"``...), normalized; "" for BEGIN [WORK] or a
    bare START TRANSACTION. Raises ``MySQLError`` 1064 for anything else after it."""
    m = _START_TRANSACTION.match(strip_comments(_EXECUTABLE.sub(rb" \1 ", sql)))
    if m is None:
        return ""
    rest = m.group(1).strip().rstrip(b";").strip()
    if not rest:
        return ""
    out = []
    for part in rest.split(b","):
        name = _CHARACTERISTICS.get(b" ".join(part.split()).upper())
        if name is None:
            raise MySQLError(
                ErrorCode.PARSE_ERROR,
                "You have an error in your SQL syntax near "
                f"{part.strip().decode(errors='replace')!r}: START TRANSACTION takes READ ONLY, "
                "READ WRITE and WITH CONSISTENT SNAPSHOT",
                "42000",
            )
        out.append(name)
    return ", ".join(out)


_CHAIN: Final = re.compile(rb"\bAND\s+(NO\s+)?CHAIN\b", re.IGNORECASE)
_RELEASE: Final = re.compile(rb"\b(NO\s+)?RELEASE\b", re.IGNORECASE)


def transaction_end(sql: bytes) -> tuple[bool, bool]:
    """For ``COMMIT|ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]``: (chain, release), what
    the session does after: begin a new transaction with the same characteristics, or
    close the connection."""
    body = strip_comments(sql)
    chain, release = _CHAIN.search(body), _RELEASE.search(body)
    return (chain is not None and not chain.group(1), release is not None and not release.group(1))


_COMPLETION_TYPE: Final = re.compile(
    rb"\bcompletion_type\s*:?=\s*(['\"]?)([A-Za-z0-9_]+)\1", re.IGNORECASE
)


def chains_by_default(sql: bytes) -> bool:
    """Whether SET ``sql`` gives ``completion_type`` a value other than NO_CHAIN (0): plain
    COMMIT and ROLLBACK would then chain a transaction or close the connection."""
    body = strip_comments(sql)
    quoted = [m.span() for m in _LITERALS.finditer(body)]
    for m in _COMPLETION_TYPE.finditer(body):
        if any(start <= m.start() < end for start, end in quoted):
            continue  # inside a string
        if m.group(2).upper() not in (b"0", b"NO_CHAIN", b"DEFAULT"):
            return True
    return False


_LAST_INSERT_ID_SET: Final = re.compile(_LAST_INSERT_ID_EXPR, re.IGNORECASE)


def sets_last_insert_id(sql: bytes) -> bool:
    """Whether ``sql`` calls ``LAST_INSERT_ID(expr)`` (outside strings and comments), which
    sets the connection's LAST_INSERT_ID() to ``expr``."""
    return _LAST_INSERT_ID_SET.search(_LITERALS.sub(b" ", sql)) is not None


def replayable_setting(info: QueryInfo) -> bool:
    """True for a SET statement that only sets session system variables (``_SETTING_NOT``):
    running it again on another connection, before the session's other statements, gives
    them the same session. Such statements can prepare pooled tablet connections (tablet
    ``settings``) instead of holding one connection for the session. Anything else that
    sets state, user variables included, is not one."""
    if info.kind != KIND_SET or not info.sets_state or info.owned is not None:
        return False
    body = strip_comments(info.sql)
    return _SETTING_NOT.search(_LITERALS.sub(b" ", body)) is None


_TEMPLATE_KINDS: Final = frozenset(
    {KIND_SELECT, KIND_INSERT, KIND_UPDATE, KIND_DELETE, KIND_REPLACE}
)


def reusable(info: QueryInfo) -> bool:
    """True when ``info``, the classification of a prepared statement's text, holds for
    every execute of it (its ``?`` replaced by ``sql_literal`` values), so executes need
    not classify again: a SELECT, INSERT, UPDATE, DELETE or REPLACE, not gate-owned, with
    no session state or lock, whose text has none of the words the state (and, for a
    SELECT, lock) checks look for. A value adds no such word outside its quotes (it is a
    number, NULL, a quoted string or ``_binary X'..'``), and the first word, which sets
    the rest, is never a placeholder."""
    return (
        info.kind in _TEMPLATE_KINDS
        and info.owned is None
        and not info.sets_state
        and not info.locks
        and not _STATE_HINT.search(info.sql)
        and (info.kind != KIND_SELECT or not _LOCK_HINT.search(info.sql))
    )

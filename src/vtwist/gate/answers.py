"""Result sets the gate answers itself (sans-IO builders): version, CONNECTION_ID(),
DATABASE(), SHOW PROCESSLIST, SHOW VITESS_TABLETS|SHARDS|KEYSPACES|TARGET|REPLICATION_STATUS,
SHOW DATABASES.

Each builder returns ``(columns, rows)``: ``ColumnDefinition41``s and text-row payloads.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vtwist.gate.discovery import TabletHandle
from vtwist.protocols.mysql.constants import ColumnType
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.values import encode_text_row

UTF8MB4 = 45
BINARY = 63

Result = tuple[list[ColumnDefinition41], list[bytes]]


def text_column(name: str, length: int = 1024) -> ColumnDefinition41:
    """A VARCHAR result column."""
    return ColumnDefinition41(name, ColumnType.VAR_STRING, UTF8MB4, length * 4)


def int_column(name: str) -> ColumnDefinition41:
    """A BIGINT result column."""
    return ColumnDefinition41(name, ColumnType.LONGLONG, BINARY, 21)


def _cell(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def table(columns: Sequence[ColumnDefinition41], rows: Iterable[Sequence[object]]) -> Result:
    """A result of ``columns`` with ``rows`` (values: str, int, bytes or None)."""
    return list(columns), [encode_text_row([_cell(v) for v in row]) for row in rows]


def single(name: str, value: object, integer: bool = False) -> Result:
    """A one-column, one-row result."""
    col = int_column(name) if integer else text_column(name)
    return table([col], [[value]])


def keyspaces(names: Iterable[str], header: str = "Database") -> Result:
    """SHOW DATABASES / SHOW VITESS_KEYSPACES."""
    return table([text_column(header, 64)], ([n] for n in names))


def shards(pairs: Iterable[tuple[str, str]]) -> Result:
    """SHOW VITESS_SHARDS: ``keyspace/shard`` per row."""
    return table([text_column("Shards", 128)], ([f"{k}/{s}"] for k, s in pairs))


def _term_start(handle: TabletHandle) -> str:
    start = handle.primary_term_start
    if handle.tablet_type != "primary" or not start:
        return ""
    moment = datetime.datetime.fromtimestamp(start, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


TABLET_COLUMNS = (
    "Cell",
    "Keyspace",
    "Shard",
    "TabletType",
    "State",
    "Alias",
    "Hostname",
    "PrimaryTermStartTime",
)


def tablets(handles: Iterable[TabletHandle]) -> Result:
    """SHOW VITESS_TABLETS (Vitess's columns; State is SERVING, NOT_SERVING or
    DISCONNECTED; TabletType upper-case as Vitess shows it)."""
    rows = [
        [
            h.cell,
            h.keyspace,
            h.shard,
            h.tablet_type.upper(),
            h.state,
            h.alias,
            h.hostname,
            _term_start(h),
        ]
        for h in handles
    ]
    return table([text_column(c, 128) for c in TABLET_COLUMNS], rows)


def like(pattern: str) -> re.Pattern[str]:
    """A SQL LIKE ``pattern`` (``%``, ``_``, backslash escapes) as a case-insensitive regex."""
    out = []
    escaped = False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


REPLICATION_COLUMNS = (
    "Keyspace",
    "Shard",
    "TabletType",
    "Alias",
    "Hostname",
    "ReplicationSource",
    "ReplicationHealth",
    "ReplicationLag",
    "ThrottlerStatus",
)


def replication_status(
    reports: Iterable[tuple[TabletHandle, Mapping[str, Any] | None, str]],
) -> Result:
    """SHOW VITESS_REPLICATION_STATUS (Vitess's columns) from ``(tablet, its manage
    "status" report or None, why not)``: the source as host:port, the replication threads
    and last error as a JSON object, the lag in seconds (NULL: unknown), and an empty
    ThrottlerStatus (vtwist has no tablet throttler)."""
    rows = []
    for h, report, error in reports:
        repl = (report or {}).get("replication") or {}
        source = f"{repl['host']}:{repl['port']}" if repl.get("host") else ""
        last = repl.get("last_sql_error") or repl.get("last_io_error") or error
        health = {
            "EventStreamRunning": repl.get("io_running", "No" if report else ""),
            "EventApplierRunning": repl.get("sql_running", "No" if report else ""),
            "LastError": last,
        }
        lag = repl.get("seconds_behind")
        rows.append(
            [
                h.keyspace,
                h.shard,
                h.tablet_type.upper(),
                h.alias,
                h.hostname,
                source,
                json.dumps(health, separators=(",", ":")),
                lag,
                "",
            ]
        )
    return table([text_column(c, 256) for c in REPLICATION_COLUMNS], rows)


PROCESS_COLUMNS = ("Id", "User", "Host", "db", "Command", "Time", "State", "Info")


def processlist(rows: Iterable[Sequence[object]]) -> Result:
    """SHOW PROCESSLIST from ``(id, user, host, db, command, seconds, state, info)`` rows."""
    cols = [
        int_column("Id"),
        text_column("User", 32),
        text_column("Host", 64),
        text_column("db", 64),
        text_column("Command", 16),
        ColumnDefinition41("Time", ColumnType.LONG, BINARY, 7),
        text_column("State", 30),
        text_column("Info", 100),
    ]
    return table(cols, rows)

"""The MySQL server's plain data and defaults (sans-IO, no Twisted).

``ClientInfo`` describes an authenticated client session (given to
``IQueryHandlerFactory.open_session`` and ``IQueryHandler.change_user``); ``PrepareInfo``
is what a handler answers to COM_STMT_PREPARE; ``Statement`` is the server's record of a
prepared statement, passed back to the handler on every execute and close.
``ServerMetrics`` is the hook object the server reports to, and the ``DEFAULT_*`` values
are the defaults of ``server.MySQLServerFactory``'s bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vtwist.protocols.mysql.constants import CHARSET_BINARY, Capability, ColumnType
from vtwist.protocols.mysql.messages import ColumnDefinition41

__all__ = [
    "DEFAULT_SERVER_VERSION",
    "MAX_PARAMS",
    "ClientInfo",
    "PrepareInfo",
    "ServerMetrics",
    "Statement",
    "param_definition",
]

# COM_STMT_PREPARE_OK carries the parameter count in 2 bytes.
MAX_PARAMS = 0xFFFF

# The server's defaults (``server.MySQLServerFactory`` options).
# mysqld-compatible, and old enough that clients do not assume MySQL-8-only features
# (utf8mb4_0900 collations, @@transaction_isolation) that a MariaDB backend lacks.
DEFAULT_SERVER_VERSION = "5.7.9-vtwist"
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 8 * 3600.0  # mysqld's wait_timeout
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_MAX_PIPELINE_BYTES = 1024 * 1024
DEFAULT_MAX_OVERRUN_BYTES = 4 * 1024 * 1024
DEFAULT_CURSOR_BUFFER_ROWS = 1024
DEFAULT_CURSOR_BUFFER_BYTES = 1024 * 1024
DEFAULT_MAX_PREPARED_STATEMENTS = 4096
DEFAULT_WRITE_BUFFER_BYTES = 64 * 1024
DEFAULT_CLOSE_TIMEOUT = 10.0


class ServerMetrics:
    """Hooks the server calls for metrics; the defaults do nothing (subclass to count)."""

    def connection_opened(self) -> None:
        """A client connected and got a greeting."""

    def connection_closed(self) -> None:
        """A greeted client's connection ended."""

    def connection_rejected(self, reason: str) -> None:
        """A client was refused before the greeting (``max_connections``, ``blocked``)."""

    def auth_finished(self, ok: bool, plugin: str) -> None:
        """An authentication (login or COM_CHANGE_USER) succeeded or failed."""

    def command(self, name: str) -> None:
        """A command was dispatched (``ComQuery``, ``ComPing``...)."""


@dataclass(frozen=True)
class ClientInfo:
    """Who is connected: filled in by the server after a successful authentication.

    ``host`` is the peer address as it appears in ``'user'@'host'`` (an IP address, or
    ``localhost`` for a UNIX socket); ``capabilities`` are the negotiated ones (server &
    client); ``charset`` is the collation id of the login packet; ``attrs`` the client's
    connection attributes; ``secure`` is true over TLS; ``auth_plugin`` the plugin that
    authenticated the user.
    """

    connection_id: int
    user: str
    host: str
    port: int = 0
    database: str = ""
    capabilities: int = 0
    charset: int = 45
    attrs: Mapping[str, str] = field(default_factory=dict)
    secure: bool = False
    auth_plugin: str = ""

    @property
    def multi_statements(self) -> bool:
        """Whether the client negotiated CLIENT_MULTI_STATEMENTS at login."""
        return bool(self.capabilities & Capability.MULTI_STATEMENTS)

    @property
    def deprecate_eof(self) -> bool:
        """Whether result sets end with OK packets (CLIENT_DEPRECATE_EOF) on this session."""
        return bool(self.capabilities & Capability.DEPRECATE_EOF)


def param_definition() -> ColumnDefinition41:
    """The definition mysqld sends for a ``?`` parameter whose type it does not know."""
    return ColumnDefinition41("?", ColumnType.VAR_STRING, CHARSET_BINARY)


@dataclass(frozen=True)
class PrepareInfo:
    """A handler's answer to COM_STMT_PREPARE.

    ``param_count`` is the number of ``?`` placeholders (``literals.count_placeholders``
    counts them like mysqld). ``params`` are their definitions: leave it empty to send
    mysqld's generic ``?`` definition for each one. ``columns`` are the result columns
    (empty for a statement without a result set, or when unknown). ``state`` is the
    handler's own data (a plan, the normalized SQL...), handed back in ``Statement``.
    """

    param_count: int
    params: Sequence[ColumnDefinition41] = ()
    columns: Sequence[ColumnDefinition41] = ()
    warnings: int = 0
    state: object = None

    def __post_init__(self) -> None:
        if not 0 <= self.param_count <= MAX_PARAMS:
            raise ValueError(f"param_count must be between 0 and {MAX_PARAMS}")
        if self.params and len(self.params) != self.param_count:
            raise ValueError(f"{len(self.params)} parameter definitions for {self.param_count}")
        if len(self.columns) > 0xFFFF:
            raise ValueError("a prepared statement has at most 65535 columns")

    def param_definitions(self) -> list[ColumnDefinition41]:
        """The parameter definitions to send (generic ones when ``params`` is empty)."""
        if self.params:
            return list(self.params)
        return [param_definition()] * self.param_count


@dataclass(frozen=True)
class Statement:
    """A statement prepared on one session: the id the client uses, its SQL, the handler's
    ``PrepareInfo``."""

    statement_id: int
    sql: bytes
    prepared: PrepareInfo

    @property
    def param_count(self) -> int:
        """How many parameters each execute binds."""
        return self.prepared.param_count

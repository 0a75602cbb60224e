"""Every zope.interface of vtwist, in one place.

Providers declare ``@implementer(...)`` and have a ``verifyObject`` test. Interfaces here
import nothing from the gate, tablet or orchestrator, so every layer can depend on this
module.
"""

from __future__ import annotations

from zope.interface import Interface

# --- authentication (owned by the MySQL server side) -------------------------------------


class IAuthServer(Interface):
    """Where the MySQL server finds its users: what it calls to authenticate a client.

    The server runs the exchange itself (``vtwist.protocols.mysql.auth.ServerAuth``, e.g.
    ``ServerAuth.for_store(store, ...)``); the store only answers lookups. Methods are
    synchronous and are called on the reactor thread, so implementations must not block
    (no file or network I/O per call: load and cache, as ``vtwist.users.StaticUsers``
    does).
    """

    def default_plugin() -> str:
        """The auth plugin named in the server greeting (and used for unknown users)."""

    def account(user: str) -> Account | None:  # noqa: N805
        """The stored verifiers and preferred plugin of ``user``, or ``None`` if unknown.

        ``None`` must not be distinguishable by the client: the server then runs the same
        exchange with a decoy account and fails with the same error as a wrong password.
        """

    def sha2_cache() -> Sha2Cache:
        """The caching_sha2_password fast-path cache, filled after each full authentication.

        It lives as long as the store, so its entries survive across connections.
        """


import typing  # noqa: E402  (kept in this section so parallel edits of the file stay local)

if typing.TYPE_CHECKING:
    from vtwist.protocols.mysql.auth import Account, Sha2Cache

# --- topology (owned by vtwist.topo) ------------------------------------------------------
# TOPO-SECTION

# --- gate <-> tablet RPC (owned by vtwist.protocols.tabletrpc) -------------------------------
# This section's imports live here because sections are edited independently; the
# assignment keeps isort from merging them into the top import block.
_TABLETRPC_OWNER = "vtwist.protocols.tabletrpc"

from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.interfaces import IPushProducer  # noqa: E402
from zope.interface import Attribute  # noqa: E402

from vtwist.protocols.tabletrpc_ops import (  # noqa: E402
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    TransactionArgs,
)


class ITabletRPCRequest(Interface):
    """One in-flight tablet RPC request, as the tablet's ``ITabletService`` sees it.

    The RPC server cancels a request when its deadline passes, when the gate cancels or
    kills it, or when the gate's connection is lost; it then calls the ``on_cancel`` hooks
    (where the tablet ``KILL QUERY``s on mysqld) and ``cancel()``s the Deferred the service
    returned. The gate gets ERROR 1317 (70100) for deadline, cancel and kill.
    """

    request_id = Attribute("int: the gate's id of the request, unique on its connection")
    op = Attribute("str: the operation name (``execute``, ``begin``...)")
    deadline = Attribute("float | None: expiry time, in the server clock's seconds()")
    cancelled = Attribute("bool: true once the request was cancelled")
    cancel_reason = Attribute(
        "str | None: why it was cancelled: deadline, cancelled, killed, connection lost, "
        "stream overflow"
    )
    peer = Attribute("str: the gate's address, for logs")

    def on_cancel(hook: Callable[[str], object]) -> None:  # noqa: N805
        """Call ``hook(reason)`` once if the request is cancelled (at once if it already was).

        Hooks are not called for a request that completed normally.
        """


class IRowSink(Interface):
    """Where ``stream_execute`` writes its result; the RPC server chunks and flow-controls it.

    It follows Twisted's ``IConsumer`` contract: the service registers a streaming
    producer (typically its MySQL connection), which is paused while the gate has no credit
    left or the gate's connection is congested, resumed later, and stopped if the request
    is cancelled. Rows written while paused are buffered up to the server's
    ``max_stream_buffer_bytes``; beyond that the request fails.
    """

    def send_fields(fields: Sequence[bytes]) -> None:  # noqa: N805
        """Give the column definitions (raw ColumnDefinition41 payloads), once, before rows."""

    def send_rows(rows: Sequence[bytes]) -> None:  # noqa: N805
        """Give rows (raw text-row payloads), in order."""

    def registerProducer(producer: IPushProducer, streaming: bool) -> None:  # noqa: N805
        """Attach the producer of the rows; only streaming (push) producers are supported."""

    def unregisterProducer() -> None:
        """Detach the producer (it is done)."""


class ITabletService(Interface):
    """What a tablet offers over the RPC; ``TabletRPCServer`` dispatches each request here.

    Every method receives the request context first and may return its result directly or
    as a Deferred (cancellable: see ``ITabletRPCRequest``). Failures are ``MySQLError``s and
    reach the gate as such; any other exception becomes ERROR 1105 and is logged. ``kill``
    of a ``request_id`` is handled by the RPC server itself and never reaches ``kill``.
    """

    def execute(
        request: ITabletRPCRequest,  # noqa: N805
        args: ExecuteArgs,
    ) -> Deferred[QueryResult] | QueryResult:
        """Run one statement (pooled, in ``args.transaction_id`` or on ``args.reserved_id``)."""

    def stream_execute(
        request: ITabletRPCRequest,  # noqa: N805
        args: ExecuteArgs,
        sink: IRowSink,
    ) -> Deferred[QueryResult] | QueryResult:
        """Run one statement writing fields and rows to ``sink``; return the OK part."""

    def begin(request: ITabletRPCRequest, args: BeginArgs) -> Deferred[int] | int:  # noqa: N805
        """Open a transaction; return its id (> 0)."""

    def commit(request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:  # noqa: N805
        """Commit; return the reserved id the connection stays under (0: back to the pool)."""

    def rollback(request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:  # noqa: N805
        """Roll back; return the reserved id the connection stays under (0: none)."""

    def reserve(
        request: ITabletRPCRequest,  # noqa: N805
        args: ReserveArgs,
    ) -> Deferred[ReserveResult] | ReserveResult:
        """Dedicate a connection (running ``args.settings``, optionally BEGIN); return ids."""

    def release(request: ITabletRPCRequest, args: ReleaseArgs) -> Deferred[None] | None:  # noqa: N805
        """Roll back and give back a reserved connection or transaction."""

    def kill(request: ITabletRPCRequest, args: KillArgs) -> Deferred[bool] | bool:  # noqa: N805
        """Kill the query (or connection) of a transaction/reservation; true if one was."""

    def health() -> Mapping[str, Any]:
        """The current health snapshot.

        Keys the gate reads: ``serving`` (bool), ``tablet_type`` (str), ``primary_term``
        (int), ``lag_s`` (float | None), ``error`` (str | None), plus any others.
        """

    def subscribe_health(listener: Callable[[Mapping[str, Any]], object]) -> Callable[[], None]:  # noqa: N805
        """Call ``listener(snapshot)`` on every health change; return the unsubscriber."""


# --- MySQL server query handling (owned by vtwist.protocols.mysql.server) ----------------
# QUERYHANDLER-SECTION

__all__ = ["Interface"]

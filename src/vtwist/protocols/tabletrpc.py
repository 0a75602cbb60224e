"""The gate <-> tablet RPC (ARCHITECTURE section 3): the public names in one place.

One multiplexed TCP connection (TLS optional) per gate-tablet pair carries length-prefixed
msgpack frames (wire format and versioning: ``tabletrpc_codec``). The pieces:

- ``tabletrpc_codec``: sans-IO frames and messages, with their validation (no Twisted).
- ``tabletrpc_ops``: sans-IO operations: arguments, results and their validation.
- ``tabletrpc_framing``: the Twisted base of both peers (HELLO, write coalescing,
  TCP_NODELAY).
- ``tabletrpc_client``: ``TabletRPCClient`` (gate side) and its factory.
- ``tabletrpc_server``: ``TabletRPCServer`` (tablet side), dispatching to an
  ``ITabletService`` (``vtwist.interfaces``), and its factory.
- ``tabletrpc_requests``: the per-request context and the stream row sink of the server,
  and ``InfilePull``, the tablet's side of a LOAD DATA LOCAL INFILE file streamed from the
  gate (``execute(..., infile=reader)`` with an ``IInfileReader`` on the gate,
  ``request.read_infile(n)`` in the tablet's service).
- ``tabletrpc_connector``: ``TabletRPCConnector``, the gate's reconnecting link to a tablet.

Typical use::

    # tablet
    endpoint.listen(TabletRPCServerFactory(my_service, reactor))
    # gate
    link = TabletRPCConnector(clientFromString(reactor, "tcp:127.0.0.1:15999"), reactor)
    link.subscribe_health(on_health)
    link.startService()
    result = await link.require_client().execute("select 1", deadline=reactor.seconds() + 5)
"""

from __future__ import annotations

from vtwist.interfaces import IInfileReader, IRowSink, ITabletRPCRequest, ITabletService
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.protocols.tabletrpc_codec import (
    DEFAULT_MAX_FRAME_SIZE,
    INFILE_DATA_OVERHEAD,
    PROTOCOL_VERSION,
    Chunk,
)
from vtwist.protocols.tabletrpc_connector import TabletRPCConnector
from vtwist.protocols.tabletrpc_ops import (
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    StreamHealthArgs,
    TransactionArgs,
)
from vtwist.protocols.tabletrpc_requests import InfilePull, RequestContext, RowSink
from vtwist.protocols.tabletrpc_server import TabletRPCServer, TabletRPCServerFactory

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "INFILE_DATA_OVERHEAD",
    "PROTOCOL_VERSION",
    "BeginArgs",
    "Chunk",
    "ExecuteArgs",
    "IInfileReader",
    "IRowSink",
    "ITabletRPCRequest",
    "ITabletService",
    "InfilePull",
    "KillArgs",
    "QueryResult",
    "ReleaseArgs",
    "RequestContext",
    "ReserveArgs",
    "ReserveResult",
    "RowSink",
    "StreamHealthArgs",
    "TabletRPCClient",
    "TabletRPCClientFactory",
    "TabletRPCConnector",
    "TabletRPCServer",
    "TabletRPCServerFactory",
    "TransactionArgs",
]

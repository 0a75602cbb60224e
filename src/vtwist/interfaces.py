"""Every zope.interface of vtwist, in one place.

Providers declare ``@implementer(...)`` and have a ``verifyObject`` test. Interfaces here
import nothing from the gate, tablet or orchestrator, so every layer can depend on this
module.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from zope.interface import Attribute, Interface

if typing.TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.internet.interfaces import IPushProducer
    from twisted.python.failure import Failure

    from vtwist.protocols.mysql.auth import Account, Sha2Cache
    from vtwist.protocols.mysql.errors import MySQLError
    from vtwist.protocols.mysql.messages import ColumnDefinition41
    from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
    from vtwist.protocols.tabletrpc_ops import (
        BeginArgs,
        ExecuteArgs,
        KillArgs,
        ManageArgs,
        QueryResult,
        ReleaseArgs,
        ReserveArgs,
        ReserveResult,
        TransactionArgs,
    )
    from vtwist.topo.records import Keyspace, Shard, Tablet
    from vtwist.topo.vschema import VSchema

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

    def account(user: str) -> Account | None:
        """The stored verifiers and preferred plugin of ``user``, or ``None`` if unknown.

        ``None`` must not be distinguishable by the client: the server then runs the same
        exchange with a decoy account and fails with the same error as a wrong password.
        """

    def sha2_cache() -> Sha2Cache:
        """The caching_sha2_password fast-path cache, filled after each full authentication.

        It lives as long as the store, so its entries survive across connections.
        """


# --- topology (owned by vtwist.topo) ------------------------------------------------------


class ITopoWatch(Interface):
    """A watch on one topo object, returned by the ``ITopoServer.watch_*`` methods.

    The callback receives the whole current value (not a diff): first the value found when
    the watch starts, then the value after each change. It always runs on the reactor
    thread, in the order of the changes; intermediate values may be skipped when changes
    come faster than they are read, but the last one is always delivered. The watch
    survives lost connections and expired sessions: it re-arms itself and re-reads on
    reconnection, so a change made while disconnected is delivered then.
    """

    path = Attribute("str: the znode path watched")

    def when_ready() -> Deferred[None]:
        """Fire once the first value has been delivered (wait on it with a timeout)."""

    def cancel() -> None:
        """Stop delivering; the callback is not called after this returns."""


class ITopoLock(Interface):
    """An exclusive lock held by this process (``ITopoServer.lock_shard``).

    It is an ephemeral node of this process's session: it is lost if the session
    expires, and released if the process dies.
    """

    path = Attribute("str: the lock's directory")

    def held() -> bool:
        """True while the lock is held: acquired, not released, session not expired."""

    def check() -> None:
        """Raise ``LockLostError`` unless ``held()``: call it before acting under the lock."""

    def release() -> Deferred[None]:
        """Release the lock (a no-op if it was lost or already released)."""


class ITopoElection(Interface):
    """This process's candidacy in a leader election (``ITopoServer.election``).

    The candidate campaigns until it resigns: after losing leadership with its session it
    campaigns again on the new session.
    """

    path = Attribute("str: the election's directory")
    identifier = Attribute("str: this candidate's identifier, as ``leader()`` reports it")

    def is_leader() -> bool:
        """True while this candidate leads."""

    def when_leader() -> Deferred[None]:
        """Fire when this candidate leads (at once if it does now)."""

    def leader() -> Deferred[str | None]:
        """The identifier of the current leader, or None if nobody leads."""

    def add_listener(listener: Callable[[bool], object]) -> Callable[[], None]:
        """Call ``listener(True)`` on winning and ``listener(False)`` on losing leadership,
        on the reactor thread; return the unsubscriber."""

    def resign() -> Deferred[None]:
        """Leave the election (releasing leadership if held); no further campaign."""


class ITopoServer(Interface):
    """The topo-server (ARCHITECTURE section 2): keyspaces, shards, VSchemas, tablets,
    shard locks, elections and watches. Implemented over ZooKeeper and in memory.

    Every method is called on the reactor thread; Deferreds fire on it. Errors are the
    ``vtwist.topo.errors`` classes: ``NoNodeError``, ``NodeExistsError``,
    ``BadVersionError`` (a stale compare-and-swap write), ``TopoUnavailableError`` (not
    connected, timed out), ``ValidationError``, ``LockTimeoutError``...
    """

    layout = Attribute("vtwist.topo.layout.Layout: the paths under the configured root")

    def state() -> str:
        """connecting, connected, degraded, expired or closed (``TopoState``)."""

    def add_state_listener(listener: Callable[[str], object]) -> Callable[[], None]:
        """Call ``listener(state)`` at each state change; return the unsubscriber."""

    def connect(timeout: float) -> Deferred[None]:
        """Connect; fail with TopoUnavailableError after ``timeout`` seconds (the client
        keeps trying in the background, and watches fill in once it connects)."""

    def close() -> Deferred[None]:
        """Resign elections, release locks, end the session (tablets registered here vanish)."""

    # keyspaces
    def create_keyspace(keyspace: Keyspace) -> Deferred[Keyspace]:
        """Create a keyspace; NodeExistsError if it exists."""

    def get_keyspace(name: str) -> Deferred[Keyspace]:
        """Read a keyspace (with its ``node_version``); NoNodeError if absent."""

    def list_keyspaces() -> Deferred[list[str]]:
        """The keyspace names, sorted."""

    def update_keyspace(keyspace: Keyspace) -> Deferred[Keyspace]:
        """Write a keyspace read earlier; BadVersionError if it changed since."""

    # shards
    def create_shard(shard: Shard) -> Deferred[Shard]:
        """Create a shard of an existing keyspace; NodeExistsError if it exists."""

    def get_shard(keyspace: str, shard: str) -> Deferred[Shard]:
        """Read a shard (with its ``node_version``); NoNodeError if absent."""

    def list_shards(keyspace: str) -> Deferred[list[str]]:
        """The shard names of a keyspace, sorted; NoNodeError if the keyspace is absent."""

    def update_shard(shard: Shard) -> Deferred[Shard]:
        """Compare-and-swap on the znode version: BadVersionError if it changed since read."""

    # vschema
    def get_vschema(keyspace: str) -> Deferred[VSchema]:
        """A keyspace's VSchema; NoNodeError if none was saved."""

    def save_vschema(keyspace: str, vschema: VSchema) -> Deferred[VSchema]:
        """Store a validated VSchema (its ``sharded`` must match the keyspace's); with a
        ``node_version`` the write is a compare-and-swap."""

    # tablets
    def register_tablet(tablet: Tablet) -> Deferred[Tablet]:
        """Publish this process's tablet as an EPHEMERAL node; it is re-created after a
        session expiry. NodeExistsError if another live session holds the alias."""

    def update_tablet(tablet: Tablet) -> Deferred[Tablet]:
        """Rewrite a tablet registered by this process. The record is kept and written
        again after a reconnection even if this write fails."""

    def unregister_tablet(alias: str) -> Deferred[None]:
        """Remove a tablet registered by this process."""

    def get_tablet(alias: str) -> Deferred[Tablet]:
        """Read one tablet; NoNodeError if absent."""

    def list_tablets(cell: str) -> Deferred[list[Tablet]]:
        """The tablets of a cell, sorted by alias."""

    def list_cells() -> Deferred[list[str]]:
        """The cells that have (or had) tablets, sorted."""

    # coordination
    def lock_shard(
        keyspace: str,
        shard: str,
        timeout: float,
        purpose: str = "",
    ) -> Deferred[ITopoLock]:
        """Take the shard's lock (one reparent at a time); LockTimeoutError after ``timeout``."""

    def election(name: str, identifier: str) -> ITopoElection:
        """Start campaigning in election ``name`` (e.g. ``vtorc``) as ``identifier``."""

    # watches
    def watch_tablets(
        cell: str,
        callback: Callable[[dict[str, Tablet]], object],
    ) -> ITopoWatch:
        """Follow a cell's tablets: ``callback({alias: Tablet})``."""

    def watch_shard(
        keyspace: str,
        shard: str,
        callback: Callable[[Shard | None], object],
    ) -> ITopoWatch:
        """Follow a shard record: ``callback(Shard)``, or ``callback(None)`` while absent."""

    def watch_vschema(
        keyspace: str,
        callback: Callable[[VSchema | None], object],
    ) -> ITopoWatch:
        """Follow a keyspace's VSchema: ``callback(VSchema | None)``."""

    def watch_keyspaces(callback: Callable[[dict[str, Keyspace]], object]) -> ITopoWatch:
        """Follow every keyspace record: ``callback({name: Keyspace})``."""

    def watch_shards(
        keyspace: str,
        callback: Callable[[dict[str, Shard]], object],
    ) -> ITopoWatch:
        """Follow every shard of a keyspace: ``callback({name: Shard})``."""


class ITopoCache(Interface):
    """The last known topology, kept current by watches (``vtwist.topo.cache.TopoCache``).

    Reads never block and never fail: while ZooKeeper is unreachable the last known values
    are served and ``state()`` says ``degraded`` (or ``expired``). Consumers (gate, tablet,
    orchestrator) read it synchronously on the reactor thread and subscribe to changes.
    """

    def state() -> str:
        """connecting, connected, degraded, expired or closed, for metrics and status pages."""

    def keyspaces() -> dict[str, Keyspace]:
        """Every known keyspace."""

    def shards(keyspace: str) -> dict[str, Shard]:
        """The known shards of a keyspace (empty if unknown)."""

    def shard(keyspace: str, shard: str) -> Shard | None:
        """One shard record, or None if unknown."""

    def vschema(keyspace: str) -> VSchema | None:
        """A keyspace's VSchema, or None if unknown."""

    def tablets(cell: str | None = None) -> dict[str, Tablet]:
        """The known tablets of one watched cell, or of all watched cells."""

    def subscribe(
        listener: Callable[[str, tuple[str, ...]], object],
    ) -> Callable[[], None]:
        """Call ``listener(kind, key)`` after each change: kind is ``keyspaces``,
        ``shards`` (key: keyspace), ``vschema`` (key: keyspace), ``tablets`` (key: cell) or
        ``state`` (key: the new state); return the unsubscriber."""


# --- gate <-> tablet RPC (owned by vtwist.protocols.tabletrpc) -------------------------------


class IInfileReader(Interface):
    """The file of a LOAD DATA LOCAL INFILE statement, read in pieces as it arrives (from
    the gate's client, or over the tablet RPC), so that no layer holds the whole file.
    """

    def read(max_bytes: int) -> Deferred[bytes]:
        """The next bytes of the file: at least one and at most ``max_bytes`` (> 0), or
        ``b""`` once the file has ended. One read at a time. Fails with ``MySQLError`` when
        the file cannot be had (its sender went away or stalled, or it is longer than its
        limit); later reads then fail the same way."""


class IClientFile(IInfileReader):
    """The LOAD DATA LOCAL INFILE file a client of the gate is sending
    (``IResultSink.local_infile``). The client sends all of it before it reads the reply,
    so the reply waits for ``finish``."""

    consumed = Attribute("int: bytes handed out by ``read`` so far")

    def finish() -> Deferred[None]:
        """Read the rest of the file from the client and drop it. Fires once the client's
        end-of-file packet came (at once if it had), or fails as ``read`` does when the
        client goes away or stalls (the connection is then closed). After it, ``read``
        answers ``b""`` (or its error)."""


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

    def on_cancel(hook: Callable[[str], object]) -> None:
        """Call ``hook(reason)`` once if the request is cancelled (at once if it already was).

        Hooks are not called for a request that completed normally.
        """

    def read_infile(max_bytes: int) -> Deferred[bytes]:
        """For an ``execute`` whose ``infile_stream`` is set: the next piece of the LOAD
        DATA LOCAL INFILE file, asked of the gate (``IInfileReader.read``'s contract: at
        most ``max_bytes``, ``b""`` at the end, one read at a time). Fails with
        ``MySQLError`` when the gate reports that the file failed (its client went away,
        stalled, or sent more than the gate takes), or when the request is cancelled."""


class IRowSink(Interface):
    """Where ``stream_execute`` writes its result; the RPC server chunks and flow-controls it.

    It follows Twisted's ``IConsumer`` contract: the service registers a streaming
    producer (typically its MySQL connection), which is paused while the gate has no credit
    left or the gate's connection is congested, resumed later, and stopped if the request
    is cancelled. Rows written while paused are buffered up to the server's
    ``max_stream_buffer_bytes``; beyond that the request fails.
    """

    def send_fields(fields: Sequence[bytes]) -> None:
        """Give the column definitions (raw ColumnDefinition41 payloads), once, before rows."""

    def send_rows(rows: Sequence[bytes]) -> None:
        """Give rows (raw text-row payloads), in order."""

    def registerProducer(producer: IPushProducer, streaming: bool) -> None:
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
        request: ITabletRPCRequest,
        args: ExecuteArgs,
    ) -> Deferred[QueryResult] | QueryResult:
        """Run one statement (pooled, in ``args.transaction_id`` or on ``args.reserved_id``)."""

    def stream_execute(
        request: ITabletRPCRequest,
        args: ExecuteArgs,
        sink: IRowSink,
    ) -> Deferred[QueryResult] | QueryResult:
        """Run one statement writing fields and rows to ``sink``; return the OK part."""

    def begin(request: ITabletRPCRequest, args: BeginArgs) -> Deferred[int] | int:
        """Open a transaction; return its id (> 0)."""

    def commit(request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:
        """Commit; return the reserved id the connection stays under (0: back to the pool)."""

    def rollback(request: ITabletRPCRequest, args: TransactionArgs) -> Deferred[int] | int:
        """Roll back; return the reserved id the connection stays under (0: none)."""

    def reserve(
        request: ITabletRPCRequest,
        args: ReserveArgs,
    ) -> Deferred[ReserveResult] | ReserveResult:
        """Dedicate a connection (running ``args.settings``, optionally BEGIN); return ids."""

    def release(request: ITabletRPCRequest, args: ReleaseArgs) -> Deferred[None] | None:
        """Roll back and give back a reserved connection or transaction."""

    def kill(request: ITabletRPCRequest, args: KillArgs) -> Deferred[bool] | bool:
        """Kill the query (or connection) of a transaction/reservation; true if one was."""

    def manage(
        request: ITabletRPCRequest, args: ManageArgs
    ) -> Deferred[dict[str, Any]] | dict[str, Any]:
        """Run a tablet-manager action (reparents, vtorc); return its report as a map."""

    def health() -> Mapping[str, Any]:
        """The current health snapshot.

        Keys the gate reads: ``serving`` (bool), ``tablet_type`` (str), ``primary_term``
        (int), ``lag_s`` (float | None), ``error`` (str | None), plus any others.
        """

    def subscribe_health(listener: Callable[[Mapping[str, Any]], object]) -> Callable[[], None]:
        """Call ``listener(snapshot)`` on every health change; return the unsubscriber."""


# --- MySQL server query handling (owned by vtwist.protocols.mysql.server) ----------------


class ReplyEndsCommand:
    """The type of ``REPLY_ENDS_COMMAND`` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REPLY_ENDS_COMMAND"


REPLY_ENDS_COMMAND: typing.Final = ReplyEndsCommand()
"""What ``IQueryHandler.query`` and a non-cursor ``execute`` may return instead of a
Deferred: the command is over once its reply in the sink is complete, and a failure is
reported with ``IResultSink.fail``. It spares a Deferred and its callbacks on every
query of a relay."""


class IResultSink(Interface):
    """Where an ``IQueryHandler`` writes the reply to one COM_QUERY or COM_STMT_EXECUTE.

    A reply is one or more results; each is either ``ok(...)`` (no result set) or
    ``start(columns)``, any number of ``row``/``rows``, then ``done(...)`` (or all three in
    one ``result_set(...)`` call). A result whose
    ``status`` has SERVER_MORE_RESULTS_EXISTS (0x0008) is followed by another (multi-
    statements, CALL); the last one must not have it. ``error(e)`` ends the reply at any
    point (also mid-result, and instead of the next result). Status flags (AUTOCOMMIT,
    IN_TRANS, NO_BACKSLASH_ESCAPES...) are the handler's: the sink sends them as given.

    Rows are raw payloads: text-protocol rows, or binary-protocol rows when ``start`` said
    ``binary=True``. For a COM_STMT_EXECUTE (``binary`` attribute true) text rows are
    converted to binary rows using the column types (``values.text_row_to_binary``), so a
    handler may answer an execute with a text query's result. Binary rows on a COM_QUERY
    are refused.

    Back-pressure (Twisted's ``IConsumer`` contract, streaming producers only): a handler
    relaying a large result registers the producer of its rows (e.g. the backend
    connection's transport). The sink pauses it while the client's socket is congested (or,
    for a cursor, while the cursor's bounded buffer is full) and resumes it later. When the
    reply ends the sink resumes a producer it paused and forgets it (no unregister needed);
    if the reply is aborted (client gone, cursor closed, overrun) it calls
    ``stopProducing()`` and cancels the handler's Deferred. A handler that keeps writing
    while paused may write ``max_overrun_bytes`` more (factory option), after which the
    reply fails with ERR 1105 and is aborted: memory stays bounded.

    After the reply ended or was aborted (``closed``), every write is ignored. Writing out
    of order (a row before ``start``...) raises ``LocalProtocolError``.
    """

    binary = Attribute("bool: true for COM_STMT_EXECUTE (rows go out binary)")
    cursor = Attribute("bool: true when rows are buffered for COM_STMT_FETCH")
    closed = Attribute("bool: the reply ended or was aborted; writes are ignored")
    paused = Attribute(
        "bool: true while the handler should hold its rows (client congested, cursor buffer full)"
    )

    def ok(
        affected_rows: int = 0,
        last_insert_id: int = 0,
        status: int = 0,
        warnings: int = 0,
        info: bytes = b"",
    ) -> None:
        """A result without a result set (OK packet)."""

    def start(columns: Sequence[ColumnDefinition41], binary: bool = False) -> None:
        """A result set with these (at least one) columns begins; ``binary``: rows given
        are already binary-protocol rows (only for COM_STMT_EXECUTE)."""

    def row(payload: bytes) -> None:
        """One row of the current result set."""

    def rows(payloads: Iterable[bytes]) -> None:
        """Several rows, written in one go (cheaper than ``row`` in a loop)."""

    def done(
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> None:
        """The current result set is complete."""

    def result_set(
        columns: Sequence[ColumnDefinition41],
        rows: Sequence[bytes],
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
        binary: bool = False,
    ) -> None:
        """A whole result set in one call: ``start(columns, binary)``, ``rows(rows)``,
        ``done(status, warnings, affected_rows, last_insert_id, info)`` (cheapest for a
        result already in memory)."""

    def error(error: MySQLError) -> None:
        """End the reply with this error (ERR packet)."""

    def local_infile(filename: str, max_bytes: int) -> IClientFile:
        """For a LOAD DATA LOCAL INFILE, before anything else of the reply: ask the client
        for ``filename``; its contents are read as the caller asks for them
        (``IClientFile``). Reading more than ``max_bytes`` in all fails with MySQLError 1153.
        The client's bytes wait in a buffer bounded by the server's
        ``max_infile_buffer_bytes`` (reading from the client pauses beyond it). The reply
        follows as usual (``ok`` or ``error``), once ``finish`` has fired."""

    def fail(reason: BaseException | Failure) -> None:
        """The handler failed, as if its Deferred had failed (for a handler that returned
        ``REPLY_ENDS_COMMAND``): a ``MySQLError`` ends the reply as ``error`` does, any
        other exception is logged and sent as ERR 1105; once the reply is closed the
        failure is only logged (nothing at all for a cancellation)."""

    def register_producer(producer: IPushProducer) -> None:
        """Attach the streaming producer of the rows (paused at once if congested)."""

    def unregister_producer() -> None:
        """Detach the producer (resumed first if the sink had paused it)."""


class IQueryHandler(Interface):
    """One client session's commands, as the MySQL server dispatches them.

    The server (``vtwist.protocols.mysql.server``) owns the wire: handshake, TLS, auth,
    framing, prepared-statement ids, cursors, the multi-statement check and back-pressure;
    it never imports the gate. Commands reach the handler one at a time, in the client's
    order: the next one is dispatched only after the previous call's Deferred fired and
    its reply was sent. One exception: the execute that opened a cursor keeps running
    (filling the cursor's buffer) while later commands are dispatched, until the cursor is
    exhausted or closed.

    Methods return a Deferred (a coroutine or a plain value are accepted as well). A
    ``MySQLError`` failure is sent to the client as ERR as it is; any other exception
    becomes ERR 1105 "internal error: ..." (logged with its traceback) and the session
    goes on. Deferreds may be cancelled (client gone, cursor closed). ``query`` and an
    ``execute`` without ``cursor`` may instead return ``REPLY_ENDS_COMMAND`` and complete
    the reply (or call ``sink.fail``) later: nothing is cancelled then, an aborted reply
    only stops the registered producer.

    Not routed to the handler: COM_QUIT, COM_STMT_SEND_LONG_DATA (the data arrives with the
    execute's parameters), unknown commands (ERR 1047), and a COM_QUERY holding several
    statements when multi-statements are off (ERR 1064).
    """

    def status() -> int:
        """The session's current server status flags (AUTOCOMMIT, IN_TRANS,
        NO_BACKSLASH_ESCAPES...), for the OK packets the server sends itself (login, ping,
        init_db, reset, change_user, set_option) and for cursor fetches."""

    def query(sql: bytes, sink: IResultSink) -> Deferred[None] | ReplyEndsCommand:
        """COM_QUERY: run ``sql`` (the whole text; several statements only when
        multi-statements are on) and write the reply into ``sink``. The reply must be
        complete when the Deferred fires."""

    def init_db(schema: str) -> Deferred[None]:
        """COM_INIT_DB (and the database of the login packet): make ``schema`` the default
        database; fail with e.g. ERR 1049 if it does not exist."""

    def field_list(table: str, wildcard: str) -> Deferred[Sequence[ColumnDefinition41]]:
        """COM_FIELD_LIST: the column definitions of ``table`` matching the LIKE pattern
        ``wildcard`` (empty: all). The server adds the default-value field if missing."""

    def prepare(sql: bytes) -> Deferred[PrepareInfo]:
        """COM_STMT_PREPARE: the statement's parameter count and definitions; the server
        allocates the statement id (per session) and answers the client."""

    def execute(
        statement: Statement,
        params: Sequence[object],
        sink: IResultSink,
        cursor: bool,
    ) -> Deferred[None] | ReplyEndsCommand:
        """COM_STMT_EXECUTE of ``statement`` with its decoded parameter values
        (``values.decode_execute_params``: int, float, Decimal, str for character strings,
        bytes for binary strings and long data, date/time values, None).

        With ``cursor`` (CURSOR_TYPE_READ_ONLY asked, and the result has a result set)
        rows go to a bounded buffer read by COM_STMT_FETCH; the Deferred may then fire
        long after the execute's own reply (see the class docstring)."""

    def close_statement(statement: Statement) -> Deferred[None]:
        """COM_STMT_CLOSE (no reply to the client; failures are only logged)."""

    def reset_connection() -> Deferred[None]:
        """COM_RESET_CONNECTION: reset the session (transaction, variables, temporary
        tables...). The server has already dropped statements and cursors."""

    def change_user(info: ClientInfo) -> Deferred[None]:
        """COM_CHANGE_USER succeeded: the session now belongs to ``info.user`` (and
        ``info.database``); reset the session as ``reset_connection`` does."""

    def ping() -> Deferred[None]:
        """COM_PING: fail (e.g. ERR 1053 during shutdown) if the session cannot serve."""

    def statistics() -> Deferred[str]:
        """COM_STATISTICS: the human-readable status line (``Uptime: ...``)."""

    def set_multi_statements(on: bool) -> Deferred[None]:
        """COM_SET_OPTION: multi-statements were turned on or off for this session."""

    def close() -> None:
        """The client is gone: release everything (called once, last)."""


class IQueryHandlerFactory(Interface):
    """Makes the ``IQueryHandler`` of each authenticated client session."""

    def open_session(info: ClientInfo) -> IQueryHandler | Deferred[IQueryHandler]:
        """A client authenticated as ``info.user``: its session's handler. A
        ``MySQLError`` is sent to the client (e.g. ERR 1203, too many connections for the
        user) and the connection closed. A Deferred still pending when the client leaves
        is cancelled: its canceller must release whatever it was opening."""


# --- gate routing (owned by vtwist.gate) --------------------------------------------------


class IRoutingPolicy(Interface):
    """How the gate picks a tablet, found with ``twisted.plugin.getPlugins(IRoutingPolicy)``.

    A plugin module in a ``twisted/plugins/`` directory holds objects providing both
    ``twisted.plugin.IPlugin`` and this interface; the gate config's ``routing.policy``
    names one by ``name``. ``candidates`` are the gate's tablet handles (attributes
    ``alias``, ``cell``, ``keyspace``, ``shard``, ``tablet_type``, ``inflight``, ``lag_s``,
    ``primary_term``); ``query`` is the statement's ``QueryInfo`` (``sql`` bytes, ``kind``,
    ``is_write``, ``locks``, ``sets_state``).
    """

    name = Attribute("str: the name the gate config selects the policy by")

    def choose(candidates: Sequence[Any], query: Any) -> Any:
        """One of ``candidates`` (never empty) for ``query``."""

    def redirect(query: Any) -> str | None:
        """A target (``@replica``, ``ks@rdonly``...) to send this plain read to instead
        of the session's, or None. Only asked for reads outside transactions; writes,
        locking reads and stateful statements are never redirected."""

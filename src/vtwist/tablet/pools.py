"""The tablet's connection pools to its mysqld, and the lease of one connection.

- ``query``: autocommit statements and streams (app user);
- ``transaction``: transactions and reserved connections (app user);
- ``query_found_rows`` and ``transaction_found_rows``: the same, for the sessions of gate
  clients that asked for CLIENT_FOUND_ROWS (an UPDATE then counts the rows it matched, not
  the rows it changed). mysqld fixes that flag at login, so those sessions need connections
  of their own; the pools have the sizes and bounds of the first two and open no connection
  until such a session comes;
- ``dba``: ``KILL QUERY`` for timeouts and cancels, health probes, ``read_only`` changes
  (dba user), so a kill never waits behind the queries it is meant to stop.

Each is a bounded ``MySQLPool`` (size, wait queue, wait timeout, idle timeout, lifetime)
built from the config. A ``Lease`` is one borrowed connection: it knows whether the
connection may hold session state (``dirty``: reset before reuse) and it is given back with
``give_back()`` only once the statement that ran on it, and any kill aimed at it, are over
(``settled``), so a late ``KILL QUERY`` can never hit the next borrower's statement.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from vtwist.config import Config, Option
from vtwist.protocols.mysql.client import MySQLClient, Target, connect
from vtwist.protocols.mysql.pool import MySQLPool, PooledConnection
from vtwist.tablet import config as keys

log = Logger()

Pool = MySQLPool[MySQLClient]


def mysqld_target(config: Config) -> Target:
    """Where mysqld is: its unix socket when ``mysql.socket`` is set, else host and port."""
    socket = config.value(keys.MYSQL_SOCKET)
    if socket:
        return socket
    return (config.value(keys.MYSQL_HOST), config.value(keys.MYSQL_PORT))


def connector(
    reactor: Any,
    config: Config,
    user: str,
    password: str,
    found_rows: bool = False,
    local_files: bool = False,
) -> Callable[[], Deferred[MySQLClient]]:
    """A pool's ``connect_fn``: one logged-in connection to the tablet's mysqld.

    Multi-statements are off (the tablet runs one statement per request; mysqld refuses a
    smuggled second one); there is no read timeout: ``query.timeout`` kills long statements
    and ``query.kill_grace`` closes connections whose statement will not die. With
    ``local_files`` (the app pools) mysqld may ask for a LOAD DATA LOCAL INFILE file: the
    connection sends the one the gate's client sent with the statement, never a file of
    the tablet's host.
    """
    return partial(
        connect,
        reactor,
        mysqld_target(config),
        user,
        password,
        keys.mysql_database(config) or None,
        connect_timeout=config.value(keys.MYSQL_CONNECT_TIMEOUT),
        read_timeout=None,
        charset=config.value(keys.MYSQL_CHARSET),
        multi_statements=False,
        found_rows=found_rows,
        local_files=local_files,
    )


class TabletPools:
    """The query, transaction and dba pools of one tablet (and the found-rows twins of the
    first two: see the module docstring)."""

    def __init__(
        self,
        query: Pool,
        transaction: Pool,
        dba: Pool,
        query_found_rows: Pool | None = None,
        transaction_found_rows: Pool | None = None,
    ) -> None:
        self.query = query
        self.transaction = transaction
        self.dba = dba
        # Without twins (tests), found-rows sessions share the plain pools.
        self.query_found_rows = query_found_rows or query
        self.transaction_found_rows = transaction_found_rows or transaction

    def for_queries(self, found_rows: bool) -> Pool:
        """The pool of autocommit statements for a session with or without FOUND_ROWS."""
        return self.query_found_rows if found_rows else self.query

    def statement_pools(self) -> set[Pool]:
        """The pools of autocommit statements, with and without FOUND_ROWS (maybe one)."""
        return {self.query, self.query_found_rows}

    def for_transactions(self, found_rows: bool) -> Pool:
        """The pool of transactions and reserved connections, likewise."""
        return self.transaction_found_rows if found_rows else self.transaction

    @classmethod
    def from_config(cls, reactor: Any, config: Config) -> TabletPools:
        """Build the pools (no connection is opened until first use)."""
        app_user, app_password = config.value(keys.APP_USER), keys.mysql_password(config, "app")
        app = connector(reactor, config, app_user, app_password, local_files=True)
        app_found = connector(
            reactor, config, app_user, app_password, found_rows=True, local_files=True
        )
        dba = connector(
            reactor, config, config.value(keys.DBA_USER), keys.mysql_password(config, "dba")
        )
        common: dict[str, Any] = {
            "idle_timeout": config.value(keys.POOL_IDLE_TIMEOUT),
            "max_lifetime": config.value(keys.POOL_MAX_LIFETIME),
            "ping_on_checkout_after": config.value(keys.POOL_PING_AFTER) or None,
            "clock": reactor,
        }

        def make(
            fn: Callable[[], Deferred[MySQLClient]],
            name: str,
            size: Option[int],
            wait: Option[float],
            waiters: Option[int],
        ) -> Pool:
            return MySQLPool(
                fn,
                config.value(size),
                config.value(waiters),
                config.value(wait),
                name=name,
                settings=size.key.rsplit(".", 1)[0],
                **common,
            )

        query = (keys.QUERY_POOL_SIZE, keys.QUERY_POOL_WAIT, keys.QUERY_POOL_WAITERS)
        transaction = (keys.TX_POOL_SIZE, keys.TX_POOL_WAIT, keys.TX_POOL_WAITERS)
        return cls(
            make(app, "query", *query),
            make(app, "transaction", *transaction),
            make(dba, "dba", keys.DBA_POOL_SIZE, keys.DBA_POOL_WAIT, keys.DBA_POOL_WAITERS),
            make(app_found, "query_found_rows", *query),
            make(app_found, "transaction_found_rows", *transaction),
        )

    def named(self) -> list[tuple[str, Pool]]:
        """``(label, pool)`` for metrics and the status page."""
        out = [("query", self.query), ("transaction", self.transaction), ("dba", self.dba)]
        if self.query_found_rows is not self.query:
            out.append(("query_found_rows", self.query_found_rows))
        if self.transaction_found_rows is not self.transaction:
            out.append(("transaction_found_rows", self.transaction_found_rows))
        return out

    def close(self) -> Deferred[None]:
        """Close every pool; fires once every connection is closed."""
        d = gatherResults([p.close() for _, p in self.named()], consumeErrors=True)
        return d.addBoth(lambda _: None)


class Lease:
    """One connection borrowed from a pool, until ``give_back``.

    ``dirty``: the connection may hold session state (a reserved connection, a statement
    that set state): it is reset (COM_RESET_CONNECTION) before it returns to the pool.
    ``broken``: it must not be reused (a kill that did not finish, a lost statement).
    """

    __slots__ = ("_settle_waiters", "_unsettled", "broken", "dirty", "pc", "pool")

    def __init__(self, pool: Pool, pc: PooledConnection[MySQLClient]) -> None:
        self.pool = pool
        self.pc = pc
        self.dirty = False
        self.broken = False
        self._unsettled = 0
        self._settle_waiters: list[Deferred[None]] = []

    @property
    def client(self) -> MySQLClient:
        """The borrowed connection."""
        return self.pc.client

    @property
    def connection_id(self) -> int:
        """mysqld's id of the connection (what KILL takes)."""
        return self.pc.client.connection_id

    @property
    def settled(self) -> bool:
        """True when no statement or kill is in progress on the connection."""
        return self._unsettled == 0

    def hold(self) -> Callable[[], None]:
        """Mark work in progress (a statement, a kill); call the returned function when done."""
        self._unsettled += 1
        done = False

        def release() -> None:
            nonlocal done
            if done:
                return
            done = True
            self._unsettled -= 1
            if self._unsettled == 0:
                waiters, self._settle_waiters = self._settle_waiters, []
                for d in waiters:
                    d.callback(None)

        return release

    def when_settled(self) -> Deferred[None]:
        """Fires once every hold is released (at once if none is held)."""
        if self._unsettled == 0:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._settle_waiters.append(d)
        return d

    def give_back(self, reset: bool = False) -> Deferred[None]:
        """Return the connection to its pool once settled: reset first when ``dirty`` or
        ``reset``, closed instead when ``broken``. Never fails."""
        if self._unsettled == 0 and not (reset or self.dirty):
            # The per-query case: nothing to wait for or reset, so no coroutine.
            pc = self.pc
            if pc.lent:
                self.pool.release(pc, self.broken)  # (release checks is_broken itself)
            return succeed(None)
        return Deferred.fromCoroutine(self._give_back(reset))

    async def _give_back(self, reset: bool) -> None:
        await self.when_settled()
        pc = self.pc
        if not pc.lent:
            return
        client = pc.client
        broken = self.broken or client.is_broken
        if not broken and (reset or self.dirty):
            try:
                await client.reset_connection()
                pc.tag = ()  # its settings are gone with the rest of the session
            except Exception as e:  # whatever went wrong, the connection is not clean
                log.info(
                    "reset of connection {id} failed, dropping it: {e}",
                    id=client.connection_id,
                    e=e,
                )
                broken = True
        self.pool.release(pc, broken)

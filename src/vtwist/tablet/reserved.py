"""Connections held across requests: transactions and reserved connections, by id.

A ``Held`` connection is a transaction-pool ``Lease`` with a ``transaction_id`` (an open
transaction), a ``reserved_id`` (a reserved connection: session state the pool cannot
reset), or both. ``HeldConnections`` maps the ids the gate uses to them and ends the
abandoned ones: a transaction with no statement for ``transaction.timeout`` seconds, a
reservation idle for ``reserved.idle_timeout`` (the service rolls back and frees the
connection). Ids are unique within the process and across restarts (the counter starts at
the start time in microseconds x 1024), so a gate never reaches another transaction with a
stale id. Ended ids are remembered (at most ``remember``) so that using one later gets an
error saying how it ended, not just "unknown".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_ops import HELD_GONE
from vtwist.tablet.pools import Lease

#: How many statements a held connection's recent history keeps, for /debug/status.
LAST_SQL_CHARS = 200


class Held:
    """One held connection (see the module docstring)."""

    __slots__ = (
        "busy",
        "closed",
        "created",
        "last_sql",
        "last_used",
        "lease",
        "reserved_id",
        "timer",
        "transaction_id",
        "tx_started",
    )

    def __init__(self, lease: Lease, now: float) -> None:
        self.lease = lease
        self.transaction_id = 0
        self.reserved_id = 0
        self.created = now
        self.tx_started = 0.0
        self.last_used = now
        self.busy = False
        self.closed = False  # its connection went back to the pool (or is going)
        self.last_sql = ""
        self.timer: IDelayedCall | None = None

    def describe(self) -> str:
        """``transaction 12``, ``reserved connection 13``, or both."""
        parts = []
        if self.transaction_id:
            parts.append(f"transaction {self.transaction_id}")
        if self.reserved_id:
            parts.append(f"reserved connection {self.reserved_id}")
        return " on ".join(parts) or "released connection"


class HeldConnections:
    """The registry of held connections and their idle timers."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        transaction_timeout: float,
        reserved_idle_timeout: float,
        remember: int,
        on_expire: Callable[[Held, str], object],
    ) -> None:
        self.clock = clock
        self.transaction_timeout = transaction_timeout
        self.reserved_idle_timeout = reserved_idle_timeout
        self.remember = remember
        self.on_expire = on_expire
        self._by_id: dict[int, Held] = {}
        self._ended: OrderedDict[int, str] = OrderedDict()
        self._next_id = int(time.time() * 1_000_000) * 1024

    def new_id(self) -> int:
        """A fresh transaction or reserved id."""
        self._next_id += 1
        return self._next_id

    # --- ids ----------------------------------------------------------------------------

    def set_transaction(self, held: Held) -> int:
        """Give ``held`` a new transaction id (it opened a transaction)."""
        tid = self.new_id()
        held.transaction_id = tid
        held.tx_started = self.clock.seconds()
        self._by_id[tid] = held
        return tid

    def set_reserved(self, held: Held) -> int:
        """Give ``held`` a new reserved id (it is now a reserved connection)."""
        rid = self.new_id()
        held.reserved_id = rid
        held.lease.dirty = True  # whatever the session set must not reach the pool
        self._by_id[rid] = held
        return rid

    def end_transaction(self, held: Held, how: str) -> None:
        """The transaction of ``held`` ended (``how``: committed, rolled back...)."""
        if held.transaction_id:
            self._forget(held.transaction_id, how)
            held.transaction_id = 0

    def end(self, held: Held, how: str) -> None:
        """Forget every id of ``held`` (it goes back to the pool)."""
        self.end_transaction(held, how)
        if held.reserved_id:
            self._forget(held.reserved_id, how)
            held.reserved_id = 0
        self._disarm(held)

    def _forget(self, id_: int, how: str) -> None:
        self._by_id.pop(id_, None)
        if self.remember:
            self._ended[id_] = how
            while len(self._ended) > self.remember:
                self._ended.popitem(last=False)

    def find(self, transaction_id: int = 0, reserved_id: int = 0) -> Held:
        """The held connection of these ids (one may be 0); MySQLError 1105 if none."""
        held = None
        for kind, id_ in (("transaction", transaction_id), ("reserved connection", reserved_id)):
            if not id_:
                continue
            found = self._by_id.get(id_)
            if found is None or (kind == "transaction" and found.transaction_id != id_):
                raise self._unknown(kind, id_)
            if held is not None and found is not held:
                raise MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"transaction {transaction_id} does not run on reserved connection "
                    f"{reserved_id}; send the ids begin/reserve returned",
                )
            held = found
        if held is None:
            raise MySQLError(ErrorCode.UNKNOWN_ERROR, "no transaction or reserved id given")
        return held

    def _unknown(self, kind: str, id_: int) -> MySQLError:
        how = self._ended.get(id_)
        if how is not None:
            return MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"{kind} {id_} has ended ({how}){HELD_GONE}",
            )
        return MySQLError(
            ErrorCode.UNKNOWN_ERROR,
            f"{kind} {id_} is unknown to this tablet (it ended long ago, or the tablet "
            f"restarted){HELD_GONE}",
        )

    # --- activity and expiry ------------------------------------------------------------

    def start_use(self, held: Held, what: str) -> None:
        """A statement starts on ``held``: refuse if one is running. (Its idle timer keeps
        running: when it fires during a statement it looks again later.)"""
        if held.busy:
            raise MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"{held.describe()} is busy with another statement; send its statements one "
                "at a time",
            )
        held.busy = True
        if what:
            held.last_sql = what[:LAST_SQL_CHARS]

    def end_use(self, held: Held) -> None:
        """The statement on ``held`` is over: its idle time counts from now."""
        held.busy = False
        held.last_used = self.clock.seconds()
        if held.timer is None:
            self.arm(held)

    def arm(self, held: Held) -> None:
        """(Re)start the idle timer of ``held`` for what it holds now."""
        self._disarm(held)
        limit = self._limit(held)
        if limit is not None:
            held.timer = self.clock.callLater(limit[0], self._expired, held)

    def _limit(self, held: Held) -> tuple[float, str] | None:
        """How long ``held`` may stay idle, and the key saying so (None: no limit)."""
        if held.transaction_id:
            return self.transaction_timeout, "transaction.timeout"
        if held.reserved_id:
            return self.reserved_idle_timeout, "reserved.idle_timeout"
        return None

    def _disarm(self, held: Held) -> None:
        t, held.timer = held.timer, None
        if t is not None and t.active():
            t.cancel()

    def _expired(self, held: Held) -> None:
        # One lazy timer per held connection, not one per statement: when it fires, the
        # connection expires only if it is idle and was for the whole limit; otherwise
        # the timer looks again when the limit would be reached.
        held.timer = None
        limit = self._limit(held)
        if limit is None or held.closed:
            return
        timeout, key = limit
        left = timeout if held.busy else held.last_used + timeout - self.clock.seconds()
        if left > 0:
            held.timer = self.clock.callLater(left, self._expired, held)
            return
        self.on_expire(held, f"idle longer than {key} ({timeout:g}s), rolled back by the tablet")

    # --- views --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Held]:
        seen: set[int] = set()
        for held in list(self._by_id.values()):
            if id(held) not in seen:
                seen.add(id(held))
                yield held

    def counts(self) -> tuple[int, int]:
        """(open transactions, reserved connections)."""
        held = list(self)
        return (sum(1 for h in held if h.transaction_id), sum(1 for h in held if h.reserved_id))

# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The gate's graceful stop (SIGTERM): lame duck, then its client sessions drained.

The gate role stops its services one at a time, last started first, so at stop:

1. ``LameDuck``: ``/debug/health`` answers 503 "shutting down" at once, while the MySQL
   listener still takes new clients for ``shutdown.lameduck_period``, long enough for a
   load balancer that probes the health page to send new clients to another gate;
2. the MySQL listener stops;
3. ``SessionDrain``: each client session is closed as soon as no command of it runs and
   it has no transaction open (a statement running gets its reply first; a transaction
   may still run statements and COMMIT; one that an autocommit-off read opened and that
   has only read does not hold its session). After ``shutdown.grace_period`` every session
   left is closed (its transaction rolled back by the tablet), then the tablet links and
   the topo close.

An idle client sees its connection closed (``MySQL server has gone away`` on its next
statement, which connection pools and ORMs handle by reconnecting): as with mysqld's own
shutdown, no client is answered with an error for a statement that ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from vtwist.gate.gate import Gate

if TYPE_CHECKING:
    from vtwist.gate.session import GateSession

log = Logger()

DRAIN_POLL: Final = 0.05  # seconds between two looks at the sessions left


def _outside_transaction(session: GateSession) -> Callable[[], bool]:
    """Whether ``session`` may close once idle: outside a transaction, or in one that an
    autocommit-off read opened and that has only read (closing it loses nothing)."""
    return lambda: not session.in_transaction or session.reads_only


class LameDuck(Service):
    """At stop: the gate reports not healthy, and the stop waits ``period`` seconds."""

    def __init__(self, gate: Gate, clock: IReactorTime, period: float) -> None:
        self.gate = gate
        self.clock = clock
        self.period = period

    def stopService(self) -> Deferred[None] | None:
        """Shutting down: unhealthy now, then the lame-duck period."""
        super().stopService()
        self.gate.shutting_down = True
        if self.period <= 0:
            return None
        log.info(
            "shutting down: lame duck for {period}s (/debug/health answers 503)",
            period=self.period,
        )
        return deferLater(self.clock, self.period, lambda: None)


class SessionDrain(Service):
    """At stop (once the MySQL listener stopped): close each session once it is idle and
    outside a transaction; at most ``grace`` seconds, then close what is left."""

    def __init__(self, gate: Gate, clock: IReactorTime, grace: float) -> None:
        self.gate = gate
        self.clock = clock
        self.grace = grace

    def stopService(self) -> Deferred[None]:
        """Drain the client sessions (module docstring)."""
        super().stopService()
        self.gate.shutting_down = True
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        gate = self.gate
        server = gate.server
        if server is None or not server.connections:
            return
        log.info(
            "shutting down: draining {n} client session(s), at most {grace}s",
            n=len(server.connections),
            grace=self.grace,
        )
        deadline = self.clock.seconds() + self.grace
        while True:
            for conn_id, proto in list(server.connections.items()):
                session = gate.sessions.get(conn_id)
                if session is None:
                    proto.close()  # not logged in yet: nothing to wait for
                else:
                    proto.close_when_idle(_outside_transaction(session))
            if not server.connections:
                return
            if self.clock.seconds() >= deadline:
                break
            await deferLater(self.clock, DRAIN_POLL, lambda: None)
        left = list(server.connections.values())
        log.warn(
            "shutting down: closing {n} client session(s) still busy after shutdown.grace_period",
            n=len(left),
        )
        for proto in left:
            proto.close()

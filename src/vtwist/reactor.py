"""``vtwist-epoll``: Twisted's epoll reactor without the log context around each I/O event.

For every socket event the stock reactor goes through ``log.callWithLogger``: it asks the
transport for its log prefix, copies a context dictionary and runs the handler inside that
context, so that old-style ``twisted.python.log.msg`` calls made meanwhile are tagged with
the connection. vtwist logs with ``twisted.logger`` and names the connection in its own
events, so it has no use for that context, and a proxy handles two or more socket events
per query: py-spy of the test passthrough under sysbench put the wrapping at about a tenth
of its CPU. This reactor dispatches each event straight to ``_doReadOrWrite`` (which still
turns a handler's exception into a logged error and a dropped connection), and a plain
read event (EPOLLIN alone) straight to the transport's ``doRead`` with the same handling;
an exception that escapes even that is logged here, as the stock reactor does. The only
visible change: old-style log lines written during an event say ``[-]`` instead of the
connection.

Select it with ``twistd --reactor=vtwist-epoll ROLE ...`` (``vtwist up`` does, for every
role); ``install()`` installs it in-process. Everything else is the stock epoll reactor.
"""

from __future__ import annotations

import errno
from select import EPOLLIN
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.logger import Logger

__all__ = ["REACTOR_NAME", "DirectEPollReactor", "install"]

REACTOR_NAME = "vtwist-epoll"

log = Logger()


class DirectEPollReactor(EPollReactor):
    """The epoll reactor, dispatching I/O events without ``log.callWithLogger``."""

    def doPoll(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: forever) and handle the ready sockets."""
        poller: Any = self._poller
        selectables: dict[int, Any] = self._selectables
        try:
            events = poller.poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        handle: Any = self._doReadOrWrite
        disconnect: Any = self._disconnectSelectable
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if event == EPOLLIN:
                # Data to read, nothing else (most events of a proxy): ``_doReadOrWrite``'s
                # read branch, inlined.
                why: Any = None
                try:
                    why = _NO_FILEDESC if selectable.fileno() == -1 else selectable.doRead()
                except KeyboardInterrupt:
                    raise
                except BaseException as e:  # the handler's bug: log it, drop the connection
                    why = e
                    log.failure("error reading from {selectable!r}", selectable=selectable)
                if why:
                    try:
                        disconnect(selectable, why, True)
                    except BaseException:
                        log.failure("error disconnecting {selectable!r}", selectable=selectable)
                continue
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.failure("error handling an I/O event on {selectable!r}", selectable=selectable)

    # ``doIteration`` is the name the reactor loop calls.
    doIteration = doPoll


def install() -> DirectEPollReactor:
    """Install ``DirectEPollReactor`` as the global reactor (before anything imports it)."""
    reactor = DirectEPollReactor()  # type: ignore[no-untyped-call]
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor

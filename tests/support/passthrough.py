"""A test-only MySQL passthrough: vtwist's server in front, one vtwist client per session
behind it, a real MariaDB at the end.

It exists to let real clients (PyMySQL, mysqlclient, mysql-connector-python, the
``mariadb`` CLI, sysbench) judge the server and the client together, and to benchmark
them against a plain byte forwarder. It is not the gate: no routing, no pooling.

Each client session (``PassthroughSession``, an ``IQueryHandler``) holds ONE dedicated
backend connection, opened at login with the client's database and character set and
closed when the client leaves. Commands are relayed:

* COM_QUERY and COM_STMT_EXECUTE stream event by event (``Relay``): column definitions and
  rows are handed to the server's sink as they arrive, never accumulated; binary rows of
  an execute go out raw. The relay is also the sink's push producer: pausing it pauses
  the backend socket, so a slow client slows the backend down.
* Prepared statements are backend server-side statements (the server's statement keeps
  the backend's ``PreparedStatement`` in ``PrepareInfo.state``); the server decodes and
  checks the client's parameters, and the backend client sends them on in the wire form
  the client used (``values.ExecuteParams``).
* Cursors: an execute asked with a cursor streams into the server's bounded cursor
  buffer, which answers COM_STMT_FETCH. The backend connection is busy until the result
  is exhausted; a command that needs the backend before then closes the cursor (its next
  fetch reports ERR 1105 telling the client to fetch every row first) and the rest of the
  backend result is read and dropped.
* COM_INIT_DB, COM_FIELD_LIST, COM_PING, COM_STATISTICS, COM_SET_OPTION and
  COM_RESET_CONNECTION go to the backend; COM_CHANGE_USER opens a new backend connection
  (the backend account stays the passthrough's own) and closes the old one.
* ``select @@version_comment limit 1`` is answered here ("vtwist passthrough"), as the
  gate will own it.

Backend errors reach the client with the backend's code, SQLSTATE and message. This module
holds the factory, the in-process runner and the program; the session and the relay are
in ``tests.support.passthrough_session``.

Run it in-process with ``start_passthrough`` (tests) or as a program (the benchmark)::

    python -m tests.support.passthrough --listen PORT --backend-port P \\
        --backend-user U --backend-password PW --users FILE [--tls-cert C --tls-key K]

With ``VTWIST_PASSTHROUGH_PROFILE=FILE`` in the environment the program runs under
cProfile and writes the statistics to FILE when it stops (SIGTERM).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.support.passthrough_session import (
    VERSION_COMMENT,
    FieldListCommand,
    PassthroughSession,
    Relay,
    StatisticsCommand,
)
from vtwist.interfaces import IAuthServer, IQueryHandler, IQueryHandlerFactory
from vtwist.protocols.mysql.auth import RsaKey, generate_rsa_key
from vtwist.protocols.mysql.client import MySQLClient, connect
from vtwist.protocols.mysql.constants import Capability
from vtwist.protocols.mysql.server import MySQLServerFactory
from vtwist.protocols.mysql.server_types import ClientInfo
from vtwist.users import hash_password

__all__ = [
    "VERSION_COMMENT",
    "Backend",
    "FieldListCommand",
    "PassthroughFactory",
    "PassthroughSession",
    "Relay",
    "RunningPassthrough",
    "StatisticsCommand",
    "backend_charset",
    "main",
    "start_passthrough",
    "write_users_file",
]

log = Logger()

_FOUND_ROWS: Final = int(Capability.FOUND_ROWS)
DEFAULT_BACKEND_CONNECT_TIMEOUT: Final = 10.0
MAX_LOGINS_KEPT: Final = 100

# Collation ids (login packet, one byte) by character set; anything else is utf8mb4.
_LATIN1: Final = frozenset({5, 8, 15, 31, 47, 48, 49, 94})
_UTF8MB3: Final = frozenset({33, 76, 83, 223, *range(192, 216)})
_ASCII: Final = frozenset({11, 65})


def backend_charset(collation_id: int) -> str:
    """The backend connection's character set for a client's login collation id."""
    if collation_id == 63:
        return "binary"
    if collation_id in _ASCII:
        return "ascii"
    if collation_id in _LATIN1:
        return "latin1"
    if collation_id in _UTF8MB3:
        return "utf8mb3"
    return "utf8mb4"


@dataclass(frozen=True)
class Backend:
    """Where the passthrough's sessions connect, and as whom."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    connect_timeout: float = DEFAULT_BACKEND_CONNECT_TIMEOUT


@implementer(IQueryHandlerFactory)
class PassthroughFactory:
    """Opens a ``PassthroughSession`` (and its backend connection) per client session.

    ``sessions`` are the live ones; ``wait_idle`` waits until every session is gone and
    every backend connection closed (tests use it to leave a clean reactor). For tests:
    ``logins`` keeps the ``ClientInfo`` of the last ``MAX_LOGINS_KEPT`` sessions (and
    changed users), ``pauses`` counts how often a backend socket was paused.
    """

    def __init__(self, reactor: Any, backend: Backend) -> None:
        self.reactor = reactor
        self.backend = backend
        self.sessions: set[PassthroughSession] = set()
        self.opened = 0
        self.pauses = 0
        self.logins: deque[ClientInfo] = deque(maxlen=MAX_LOGINS_KEPT)
        self._closing: set[MySQLClient] = set()

    def open_session(self, info: ClientInfo) -> Deferred[IQueryHandler]:
        """Connect to the backend for ``info``'s session."""
        return Deferred.fromCoroutine(self._open(info))

    async def _open(self, info: ClientInfo) -> IQueryHandler:
        client = await self.connect_backend(info)
        session = PassthroughSession(self, info, client)
        self.sessions.add(session)
        self.logins.append(info)
        self.opened += 1
        return session

    def connect_backend(self, info: ClientInfo) -> Deferred[MySQLClient]:
        """A backend connection with ``info``'s database, character set and FOUND_ROWS."""
        b = self.backend
        return connect(
            self.reactor,
            (b.host, b.port),
            b.user,
            b.password,
            info.database or None,
            charset=backend_charset(info.charset),
            found_rows=bool(info.capabilities & _FOUND_ROWS),
            connect_timeout=b.connect_timeout,
            read_timeout=None,  # an open cursor may legitimately pause the backend for long
        )

    def retire(self, client: MySQLClient) -> None:
        """Close a backend connection in the background (tracked by ``wait_idle``)."""
        self._closing.add(client)
        client.close().addBoth(lambda _: self._closing.discard(client))

    def session_closed(self, session: PassthroughSession) -> None:
        """``session``'s client left."""
        self.sessions.discard(session)
        session._end_cursor()
        self.retire(session.client)

    def idle(self) -> bool:
        """No session left and every backend connection closed."""
        return not self.sessions and not self._closing

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until ``idle()``; TimeoutError after ``timeout`` seconds."""
        clock = cast(IReactorTime, self.reactor)
        deadline = clock.seconds() + timeout
        while not self.idle():
            if clock.seconds() > deadline:
                raise TimeoutError(
                    f"passthrough still has {len(self.sessions)} sessions and "
                    f"{len(self._closing)} closing backend connections after {timeout}s"
                )
            await deferLater(clock, 0.01, lambda: None)


@dataclass
class RunningPassthrough:
    """A listening passthrough (see ``start_passthrough``)."""

    port: int
    handlers: PassthroughFactory
    server: MySQLServerFactory
    listening: IListeningPort

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, drop the remaining clients, wait until all is closed."""
        stopped = self.listening.stopListening()
        if stopped is not None:
            await stopped
        for proto in list(self.server.connections.values()):
            if proto.transport is not None:
                proto.transport.loseConnection()
        clock = cast(IReactorTime, self.handlers.reactor)
        deadline = clock.seconds() + timeout
        while self.server.connections:
            if clock.seconds() > deadline:
                raise TimeoutError(f"{len(self.server.connections)} clients still connected")
            await deferLater(clock, 0.01, lambda: None)
        await self.handlers.wait_idle(max(0.1, deadline - clock.seconds()))


async def start_passthrough(
    reactor: Any,
    backend: Backend,
    users: IAuthServer,
    *,
    port: int = 0,
    tls: IOpenSSLServerConnectionCreator | None = None,
    rsa_key: RsaKey | None = None,
    **server_options: Any,
) -> RunningPassthrough:
    """Listen on 127.0.0.1:``port`` (0: any free port) in this process.

    ``server_options`` go to ``MySQLServerFactory`` (``require_secure_transport``...).
    """
    handlers = PassthroughFactory(reactor, backend)
    server = MySQLServerFactory(
        handlers,
        users,
        clock=cast(IReactorTime, reactor),
        tls=tls,
        rsa_key=rsa_key,
        **server_options,
    )
    tcp = cast(IReactorTCP, reactor)
    listening = tcp.listenTCP(port, server, interface="127.0.0.1")  # type: ignore[arg-type]
    bound = int(listening.getHost().port)  # type: ignore[attr-defined]
    return RunningPassthrough(bound, handlers, server, listening)


def write_users_file(
    path: Path,
    password: str,
    users: Sequence[tuple[str, str]] = (
        ("app", "mysql_native_password"),
        ("sha2", "caching_sha2_password"),
    ),
    iterations: int = 1000,
) -> Path:
    """A ``StaticUsers`` file giving each ``(user, plugin)`` the same ``password``."""
    lines: list[str] = []
    for user, plugin in users:
        entry = hash_password(password, iterations=iterations, plugin=plugin)
        lines.append(f"[users.{user}]")
        lines += [f'{key} = "{value}"' for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the program -------------------------------------------------------------------------------


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.support.passthrough", description=__doc__)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--backend-host", default="127.0.0.1")
    p.add_argument("--backend-port", type=int, required=True)
    p.add_argument("--backend-user", required=True)
    p.add_argument("--backend-password", required=True)
    p.add_argument("--users", type=Path, required=True, help="StaticUsers TOML file")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--verbose", action="store_true", help="log info messages too")
    p.add_argument(
        "--stock-reactor",
        action="store_true",
        help="run on Twisted's default reactor, not vtwist's (vtwist.reactor)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the passthrough until SIGTERM/SIGINT (see the module docstring)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    if not args.stock_reactor:
        from vtwist.reactor import install

        install()  # what the vtwist roles run on (vtwist up starts them with it)
    from twisted.internet import reactor as global_reactor
    from twisted.internet.ssl import PrivateCertificate
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from vtwist.users import StaticUsers

    level = LogLevel.info if args.verbose else LogLevel.warn
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=level)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    reactor = cast(Any, global_reactor)
    tls = None
    if args.tls_cert is not None or args.tls_key is not None:
        if args.tls_cert is None or args.tls_key is None:
            print("--tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        pem = args.tls_cert.read_bytes() + args.tls_key.read_bytes()
        tls = PrivateCertificate.loadPEM(pem).options()  # type: ignore[no-untyped-call]
    backend = Backend(
        args.backend_host, args.backend_port, args.backend_user, args.backend_password
    )
    users = StaticUsers(args.users)
    failed: list[BaseException] = []

    async def start() -> None:
        running = await start_passthrough(
            reactor, backend, users, port=args.listen, tls=tls, rsa_key=generate_rsa_key()
        )
        log.warn("vtwist passthrough listening on 127.0.0.1:{port}", port=running.port)

    def fail(f: Failure) -> None:
        failed.append(cast(BaseException, f.value))
        log.failure("the passthrough could not start", f)
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(start()).addErrback(fail))
    profile_path = os.environ.get("VTWIST_PASSTHROUGH_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()
    try:
        reactor.run()
    finally:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

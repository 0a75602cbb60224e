"""The MySQL server the fuzz test attacks, in its own process (so its memory can be measured).

``python -m tests.integration.passthrough.fuzz_server --users FILE --port-file PATH``
listens on 127.0.0.1 (a free port, written to PATH once listening) with the in-test echo
handler (``tests.integration.server.handler``: no MariaDB needed; its own parsing errors
become ERR packets instead of logged tracebacks), a 1 MiB maximum packet
size and short handshake/idle timeouts. Warnings and errors are logged to stderr; every
traceback there is a server bug (the fuzz test looks for them). SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path
from typing import Any, cast

MAX_PACKET_SIZE = 1024 * 1024
HANDSHAKE_TIMEOUT = 5.0
IDLE_TIMEOUT = 30.0


def main() -> int:
    """Run the server until SIGTERM."""
    from twisted.internet import reactor as global_reactor
    from twisted.internet.interfaces import IReactorTime
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from tests.integration.server.handler import EchoHandler, EchoHandlerFactory
    from vtwist.protocols.mysql.errors import MySQLError
    from vtwist.protocols.mysql.server_types import ClientInfo

    class StrictEchoHandler(EchoHandler):
        """The echo handler, its own parsing errors (``select big <garbage>``) turned into
        ERR 1105, so that every traceback in the log is the server's."""

        def query(self, sql: bytes, sink: Any) -> Any:
            try:
                return super().query(sql, sink)
            except ValueError as e:
                raise MySQLError(1105, f"echo handler: {e}") from None

    class StrictEchoHandlerFactory(EchoHandlerFactory):
        def open_session(self, info: ClientInfo) -> EchoHandler:
            return StrictEchoHandler(self, info)

    from vtwist.protocols.mysql.server import MySQLServerFactory
    from vtwist.users import StaticUsers

    p = argparse.ArgumentParser()
    p.add_argument("--users", type=Path, required=True)
    p.add_argument("--port-file", type=Path, required=True)
    args = p.parse_args()
    observer = FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    reactor = cast(Any, global_reactor)
    handlers = StrictEchoHandlerFactory(cast(IReactorTime, reactor))
    # The echo handler records what it saw for assertions; keep only the last few here,
    # so that the memory measured is the server's, not the recorder's.
    for name in ("queries", "executes", "streams", "sessions", "changed_users"):
        setattr(handlers, name, deque(maxlen=16))
    factory = MySQLServerFactory(
        handlers,
        StaticUsers(args.users),
        clock=reactor,
        max_packet_size=MAX_PACKET_SIZE,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
    )
    factory.noisy = False
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(port.getHost().port))
    tmp.rename(args.port_file)  # atomically: the test never reads a partial file
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``vtwist.reactor``: the epoll reactor without per-event log context still serves TCP,
reports a handler's exception and drops that connection, and is what twistd can select."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from twisted.application.reactors import getReactorTypes

from vtwist.reactor import REACTOR_NAME

SCRIPT = textwrap.dedent(
    """
    import sys
    from vtwist.reactor import DirectEPollReactor, install
    reactor = install()
    from twisted.internet import reactor as installed
    assert installed is reactor and type(reactor) is DirectEPollReactor
    from twisted.internet.protocol import ClientFactory, Factory, Protocol
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    got = []

    class Echo(Protocol):
        def dataReceived(self, data):
            if data == b"boom":
                raise RuntimeError("handler exploded")
            self.transport.write(data.upper())

    class Client(Protocol):
        def connectionMade(self):
            self.transport.write(b"ping")
        def dataReceived(self, data):
            got.append(data)
            self.transport.write(b"boom")  # the server's handler raises: it drops us
        def connectionLost(self, reason):
            got.append("lost")
            reactor.stop()

    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    factory = ClientFactory.forProtocol(Client)
    reactor.connectTCP("127.0.0.1", port.getHost().port, factory)
    reactor.callLater(10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    print("GOT", got)
    """
)


def test_serves_tcp_and_drops_a_connection_whose_handler_raises() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert "GOT [b'PING', 'lost']" in out.stdout, out.stdout + out.stderr
    assert "handler exploded" in out.stdout  # logged, with its traceback


def test_twistd_can_select_it() -> None:
    names = {r.shortName for r in getReactorTypes()}
    assert REACTOR_NAME in names

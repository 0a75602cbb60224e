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
            if data == b"bye":
                self.transport.write(b"BYE")  # the client closes: a clean connectionLost
                return
            self.transport.write(data.upper())
        def connectionLost(self, reason):
            got.append(("server lost", reason.type.__name__))

    class Leaving(Protocol):
        def connectionMade(self):
            self.transport.write(b"bye")
        def dataReceived(self, data):
            got.append(data)
            self.transport.loseConnection()

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
    def second():
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)

    leaving = ClientFactory.forProtocol(Leaving)
    reactor.connectTCP("127.0.0.1", port.getHost().port, leaving)
    reactor.callLater(0.5, second)
    reactor.callLater(10, reactor.stop)
    reactor.run(installSignalHandlers=False)
    print("GOT", got)
    """
)


def test_serves_tcp_sees_clean_closes_and_drops_a_connection_whose_handler_raises() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    got = out.stdout.split("GOT ", 1)[-1]
    # A client that closes: the server reads the end (EPOLLIN, recv b"") and loses the
    # connection cleanly; a handler that raises: logged, and that connection dropped.
    assert got.startswith(
        "[b'BYE', ('server lost', 'ConnectionDone'), b'PING', ('server lost', "
    ), out.stdout + out.stderr
    assert got.rstrip().endswith("'lost']"), out.stdout + out.stderr
    assert "handler exploded" in out.stdout  # logged, with its traceback


def test_twistd_can_select_it() -> None:
    names = {r.shortName for r in getReactorTypes()}
    assert REACTOR_NAME in names

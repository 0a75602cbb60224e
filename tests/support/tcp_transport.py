"""A StringTransport with the TCP options of ``ITCPTransport`` (recorded, no socket), the
base of the unit tests' fake TLS transports."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport


class TCPStringTransport(StringTransport):
    """``StringTransport`` plus ``ITCPTransport``'s option setters and getters, which only
    record what was set, and a ``loseWriteConnection`` that does nothing (no half-close
    here, as in iosim's FakeTransport)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.nodelay = False
        self.keepalive = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.nodelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled

    def getTcpKeepAlive(self) -> bool:
        return self.keepalive

    def loseWriteConnection(self) -> None:
        pass

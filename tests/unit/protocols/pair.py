"""A client and a server ``Connection`` wired back to back, for protocol tests."""

from __future__ import annotations

from collections.abc import Callable

from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role
from vtwist.protocols.mysql.constants import (
    CLIENT_CAPABILITIES,
    SERVER_CAPABILITIES,
    Capability,
    ServerStatus,
)
from vtwist.protocols.mysql.errors import RemoteProtocolError
from vtwist.protocols.mysql.events import Signal
from vtwist.protocols.mysql.messages import HandshakeResponse41, HandshakeV10, Ok
from vtwist.protocols.mysql.wire import Message

SCRAMBLE = bytes(range(1, 21))
AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)


def drain(conn: Connection) -> list[Message | Signal]:
    """Every event ``conn`` can produce now (stops at NEED_DATA, PAUSED or CLOSED)."""
    out: list[Message | Signal] = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, Signal):
            return out


def events_in_pieces(
    conn: Connection, data: bytes, cuts: list[int], shortcut: Callable[[Connection], list[object]]
) -> list[object]:
    """What ``conn`` makes of ``data`` fed in pieces cut at ``cuts`` (modulo its length):
    before each ``next_event``, the events ``shortcut`` stands for (a batch path under
    test; none: go on with ``next_event``). A RemoteProtocolError ends the list as
    ``("remote error", code)``."""
    out: list[object] = []
    bounds = sorted({c % (len(data) + 1) for c in cuts} - {0} | {len(data)})
    start = 0
    for end in bounds:
        conn.receive_data(data[start:end])  # (never empty: b"" means the peer closed)
        start = end
        while True:
            try:
                taken = shortcut(conn)
                if taken:
                    out += taken
                    continue
                ev = conn.next_event()
            except RemoteProtocolError as e:
                out.append(("remote error", e.error_code))
                return out
            if ev is NEED_DATA:
                break
            out.append(ev)
            if isinstance(ev, Signal):
                return out
    return out


def split_packets(data: bytes) -> list[tuple[int, bytes]]:
    """``(seq, payload)`` of every packet in ``data`` (no reassembly)."""
    out = []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 3], "little")
        out.append((data[pos + 3], data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    assert pos == len(data)
    return out


class ConnectionPair:
    """``client`` and ``server`` Connections; ``*_sends`` carry events across."""

    def __init__(
        self,
        deprecate_eof: bool = True,
        server_caps: int = int(SERVER_CAPABILITIES),
        client_caps: int = int(CLIENT_CAPABILITIES),
        max_packet_size: int = 1 << 24,
    ) -> None:
        if not deprecate_eof:
            client_caps &= ~int(Capability.DEPRECATE_EOF)
        self.server_caps = server_caps
        self.client_caps = client_caps
        self.server = Connection(Role.SERVER, max_packet_size=max_packet_size)
        self.client = Connection(Role.CLIENT, max_packet_size=max_packet_size)
        self.last_bytes = b""

    def server_sends(self, *events: Message) -> list[Message | Signal]:
        """Frame ``events`` on the server, feed them to the client, return its events."""
        self.last_bytes = self.server.send_many(events)
        self.client.receive_data(self.last_bytes)
        return drain(self.client)

    def client_sends(self, *events: Message) -> list[Message | Signal]:
        """Frame ``events`` on the client, feed them to the server, return its events."""
        self.last_bytes = self.client.send_many(events)
        self.server.receive_data(self.last_bytes)
        return drain(self.server)

    def greeting(self) -> HandshakeV10:
        return HandshakeV10("8.0.36-vtwist", 7, SCRAMBLE, self.server_caps)

    def response(self, **kw: object) -> HandshakeResponse41:
        args: dict[str, object] = {
            "capabilities": self.client_caps,
            "max_packet_size": 1 << 24,
            "charset": 45,
            "user": "app",
            "auth_response": b"\x11" * 20,
            "auth_plugin_name": "mysql_native_password",
        }
        args.update(kw)
        return HandshakeResponse41(**args)  # type: ignore[arg-type]

    def login(self) -> None:
        """Greeting, login packet, OK: both ends in the command phase."""
        assert self.server_sends(self.greeting()) == [self.greeting()]
        assert self.client_sends(self.response()) == [self.response()]
        assert self.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]

"""``vtwist.local.procs.free_port``: distinct ports for callers that ask for several before
anything listens on them."""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

import pytest

from vtwist.local import procs


class _Sockets:
    """A ``socket.socket`` stand-in whose kernel hands out the ports of ``ports`` in turn."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def __call__(self, *args: Any) -> _Sockets:
        return self

    def __enter__(self) -> _Sockets:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self.port = self.ports.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_handed_out_lately_is_not_handed_out_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(procs, "_RECENT_PORTS", deque[int](maxlen=256))
    monkeypatch.setattr(socket, "socket", _Sockets([40001, 40001, 40001, 40002]))
    assert procs.free_port() == 40001
    assert procs.free_port() == 40002  # the kernel offered 40001 twice more


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = [procs.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))

"""Topo addresses (``zk:127.0.0.1:2181/vtwist``, ``memory:``) and opening a TopoServer.

Format: ``zk:HOST:PORT[,HOST:PORT...][/ROOT]`` or ``memory:[/ROOT]``; ROOT defaults to
``/vtwist``. Digest credentials never appear in the address: they come from a file
holding ``user:password`` (``--topo-auth-file`` / ``VTWIST_TOPO_AUTH_FILE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from twisted.internet.interfaces import IReactorTime

from vtwist.topo.errors import ValidationError
from vtwist.topo.layout import DEFAULT_ROOT, Layout, validate_root
from vtwist.topo.memory import MemoryTopoBackend, memory_topo
from vtwist.topo.server import TopoServer

ENV_TOPO = "VTWIST_TOPO"
ENV_AUTH_FILE = "VTWIST_TOPO_AUTH_FILE"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class TopoAddress:
    """A parsed topo address."""

    scheme: str  # "zk" or "memory"
    hosts: str  # "h1:p1,h2:p2" for zk; "" for memory
    root: str = DEFAULT_ROOT

    def __str__(self) -> str:
        return f"{self.scheme}:{self.hosts}{self.root}"


def parse_topo_address(text: str) -> TopoAddress:
    """Parse ``zk:HOST:PORT[,HOST:PORT...][/ROOT]`` or ``memory:[/ROOT]``."""
    example = "e.g. 'zk:127.0.0.1:2181/vtwist'"
    scheme, sep, rest = text.strip().partition(":")
    if not sep or scheme not in ("zk", "memory"):
        raise ValidationError(f"topo address {text!r} is invalid: start with 'zk:' ({example})")
    slash = rest.find("/")
    hosts, root = (rest, DEFAULT_ROOT) if slash < 0 else (rest[:slash], rest[slash:])
    root = validate_root(root)
    if scheme == "memory":
        if hosts:
            raise ValidationError(f"topo address {text!r}: 'memory:' takes no hosts")
        return TopoAddress("memory", "", root)
    if not hosts:
        raise ValidationError(f"topo address {text!r} names no ZooKeeper host ({example})")
    for host_port in hosts.split(","):
        m = _HOST_PORT.match(host_port)
        if m is None or not 0 < int(m.group(2)) < 65536:
            raise ValidationError(
                f"topo address {text!r}: {host_port!r} is not HOST:PORT ({example})"
            )
    return TopoAddress("zk", hosts, root)


def read_auth_file(path: str | Path) -> tuple[str, str]:
    """Read digest credentials ``user:password`` (first line) from ``path``."""
    try:
        line = Path(path).read_text().splitlines()[0].strip() if Path(path).stat().st_size else ""
    except OSError as e:
        raise ValidationError(f"cannot read topo credentials file {path}: {e.strerror}") from None
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise ValidationError(f"topo credentials file {path} must hold one line 'user:password'")
    return user, password


def open_topo(
    address: str | TopoAddress,
    reactor: IReactorTime,
    *,
    session_timeout: float = 10.0,
    op_timeout: float = 10.0,
    auth: tuple[str, str] | None = None,
    memory_backend: MemoryTopoBackend | None = None,
) -> TopoServer:
    """A (not yet connected) TopoServer for ``address``; call ``connect(timeout)`` next."""
    addr = parse_topo_address(address) if isinstance(address, str) else address
    layout = Layout(addr.root)
    if addr.scheme == "memory":
        return memory_topo(reactor, memory_backend, layout)
    from vtwist.topo.zk import ZkConfig, ZkConn  # kazoo only when ZooKeeper is used

    config = ZkConfig(
        hosts=addr.hosts, session_timeout=session_timeout, op_timeout=op_timeout, auth=auth
    )
    return TopoServer(ZkConn(reactor, config), reactor, layout)

"""Throw-away ZooKeeper servers from the Debian ``zookeeper`` package, on loopback ports.

``ZooKeeper(base_dir, size=1)`` is a standalone server (``ZooKeeperServerMain``);
``size=3`` is an ensemble (``QuorumPeerMain``) whose nodes can be killed, stopped,
restarted and paused one by one, which the fault tests and ``vtwist up`` rely on. Each
node gets its own generated ``zoo.cfg``, data directory and log file under ``base_dir``;
every port (client, quorum, election) is a free port on 127.0.0.1; the admin HTTP server
is off and only the ``srvr,stat,ruok,mntr`` four-letter words are allowed. Nodes are
stopped by PID, never by name.

Defaults favour fast tests on a small machine: a short ``tickTime`` (so session timeouts
down to two ticks are accepted), a small JVM heap, no fsync.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from vtwist.local.procs import (
    LOOPBACK,
    LaunchError,
    free_port,
    pid_alive,
    read_pidfile,
    stop_pid,
    wait_until,
)

JAVA_DIR = Path("/usr/share/java")
SERVING_MODES = ("leader", "follower", "standalone")


def _java() -> str:
    java = os.environ.get("VTWIST_JAVA") or shutil.which("java") or "/usr/bin/java"
    if not Path(java).is_file():
        raise LaunchError("java not found: install the Debian package zookeeper (it pulls a JRE)")
    return java


def _classpath() -> str:
    jar = JAVA_DIR / "zookeeper.jar"
    if not jar.is_file():
        raise LaunchError(f"{jar} not found: install the Debian package zookeeper")
    # zookeeper.jar's manifest Class-Path names its dependencies; slf4j-simple (if
    # present) gives readable logs instead of the no-op logger.
    parts = [str(jar)]
    simple = JAVA_DIR / "slf4j-simple.jar"
    if simple.is_file():
        parts.append(str(simple))
    return ":".join(parts)


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str | None:
    """Send a four-letter command (``srvr``, ``ruok``...) and return the reply, or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode("ascii"))
            chunks: list[bytes] = []
            while True:
                data = s.recv(4096)
                if not data:
                    break
                chunks.append(data)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


@dataclass
class ZooKeeperNode:
    """One ZooKeeper server process (standalone, or one member of an ensemble)."""

    myid: int
    base_dir: Path
    client_port: int
    peer_port: int
    election_port: int
    command: list[str] = field(default_factory=list, repr=False)
    startup_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the client port."""
        return f"{LOOPBACK}:{self.client_port}"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def cfg_path(self) -> Path:
        return self.base_dir / "zoo.cfg"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "zookeeper.log"

    @property
    def pidfile(self) -> Path:
        return self.base_dir / "zookeeper.pid"

    @property
    def pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return read_pidfile(self.pidfile)

    def running(self) -> bool:
        """True while the JVM process exists (it may be paused or not yet serving)."""
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def mode(self) -> str | None:
        """``leader``, ``follower`` or ``standalone`` when serving; None otherwise."""
        reply = four_letter_word(LOOPBACK, self.client_port, "srvr")
        if not reply:
            return None
        for line in reply.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def serving(self) -> bool:
        """True when the node answers ``srvr`` with a serving mode."""
        return self.mode() in SERVING_MODES

    def start(self, wait: bool = True) -> None:
        """Start the JVM; with ``wait``, return once the node serves clients.

        A lone ensemble member cannot serve without a quorum: start its peers first or
        pass ``wait=False`` and wait on the ensemble.
        """
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child inherits it
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=self.base_dir,
            )
        finally:
            log.close()
        self.pidfile.write_text(f"{self.proc.pid}\n")
        if wait:
            self.wait_serving()

    def wait_serving(self, timeout: float | None = None) -> None:
        """Block until the node serves clients; LaunchError on timeout or exit."""
        wait_until(
            self.serving,
            self.startup_timeout if timeout is None else timeout,
            f"zookeeper node {self.myid} on port {self.client_port}",
            self.proc,
            self.log_path,
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the node by PID (SIGTERM, then SIGKILL after ``timeout``)."""
        self._signal_stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """``kill -9`` the node (a crash: no clean shutdown)."""
        self._signal_stop(signal.SIGKILL, 5.0)

    def pause(self) -> None:
        """SIGSTOP the node: it keeps its sockets but answers nothing."""
        self._send(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused node."""
        self._send(signal.SIGCONT)

    def _send(self, sig: int) -> None:
        pid = self.pid
        if pid is None or not pid_alive(pid):
            raise LaunchError(f"zookeeper node {self.myid} is not running")
        os.kill(pid, sig)

    def _signal_stop(self, sig: int, timeout: float) -> None:
        pid = self.pid
        if pid is not None:
            # A paused JVM cannot handle SIGTERM; wake it first.
            if pid_alive(pid):
                os.kill(pid, signal.SIGCONT)
            stop_pid(pid, timeout, sig)
        if self.proc is not None:
            self.proc.wait(timeout=5)
            self.proc = None
        self.pidfile.unlink(missing_ok=True)


@dataclass
class ZooKeeper:
    """A standalone ZooKeeper (``size=1``) or an ensemble (``size=3``, 5...) on loopback.

    ``start()`` writes the configuration, starts every node and waits until all serve;
    ``stop()`` stops them by PID. ``hosts`` is the kazoo connection string and
    ``address(root)`` the vtwist topo address (``zk:127.0.0.1:p1,.../root``).
    """

    base_dir: Path
    size: int = 1
    tick_ms: int = 200
    min_session_timeout_ms: int = 400
    max_session_timeout_ms: int = 30000
    heap_mb: int = 256
    fsync: bool = False
    log_level: str = "info"
    startup_timeout: float = 60.0
    nodes: list[ZooKeeperNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise ValueError(
                f"size must be 1 (standalone) or an odd ensemble size, not {self.size}"
            )

    @property
    def standalone(self) -> bool:
        return self.size == 1

    @property
    def hosts(self) -> str:
        """The client connection string: ``127.0.0.1:p1,127.0.0.1:p2,...``."""
        return ",".join(n.address for n in self.nodes)

    def address(self, root: str = "/vtwist") -> str:
        """The vtwist topo address of this server, e.g. ``zk:127.0.0.1:2181/vtwist``."""
        return f"zk:{self.hosts}{root}"

    def start(self) -> ZooKeeper:
        """Create the configuration (first time), start all nodes, wait until they serve."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.nodes:
            self.nodes = [self._new_node(i + 1) for i in range(self.size)]
            for node in self.nodes:
                self._write_config(node)
        try:
            for node in self.nodes:
                node.start(wait=False)
            self.wait_serving()
        except BaseException:
            self.stop()
            raise
        return self

    def _new_node(self, myid: int) -> ZooKeeperNode:
        node_dir = self.base_dir / f"zk{myid}"
        node_dir.mkdir(parents=True, exist_ok=True)
        node = ZooKeeperNode(
            myid=myid,
            base_dir=node_dir,
            client_port=free_port(),
            peer_port=0 if self.standalone else free_port(),
            election_port=0 if self.standalone else free_port(),
            startup_timeout=self.startup_timeout,
        )
        main = (
            "org.apache.zookeeper.server.ZooKeeperServerMain"
            if self.standalone
            else "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        )
        node.command = [
            _java(),
            f"-Xmx{self.heap_mb}m",
            "-Xms16m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # faster start, less CPU on a small machine
            "-XX:-UsePerfData",
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.cnxTimeout=1000",  # quorum reconnects within a second
            f"-Dorg.slf4j.simpleLogger.defaultLogLevel={self.log_level}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            _classpath(),
            main,
            str(node.cfg_path),
        ]
        return node

    def _write_config(self, node: ZooKeeperNode) -> None:
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={node.data_dir}",
            f"clientPort={node.client_port}",
            f"clientPortAddress={LOOPBACK}",
            f"minSessionTimeout={self.min_session_timeout_ms}",
            f"maxSessionTimeout={self.max_session_timeout_ms}",
            "maxClientCnxns=200",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,stat,ruok,mntr",
            "preAllocSize=1024",  # KiB: the default 64 MiB log preallocation is wasteful here
            "snapCount=10000",
            f"forceSync={'yes' if self.fsync else 'no'}",
        ]
        if not self.standalone:
            lines.append("standaloneEnabled=false")
            lines.append("quorumListenOnAllIPs=false")
            for peer in self.nodes:
                lines.append(
                    f"server.{peer.myid}={LOOPBACK}:{peer.peer_port}:{peer.election_port}"
                    f";{LOOPBACK}:{peer.client_port}"
                )
        node.data_dir.mkdir(parents=True, exist_ok=True)
        (node.data_dir / "myid").write_text(f"{node.myid}\n")
        node.cfg_path.write_text("\n".join(lines) + "\n")

    def wait_serving(
        self, nodes: Sequence[ZooKeeperNode] | None = None, timeout: float | None = None
    ) -> None:
        """Block until every node in ``nodes`` (default: all running) serves clients."""
        todo = list(nodes) if nodes is not None else [n for n in self.nodes if n.running()]
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        for node in todo:
            node.wait_serving(max(0.1, deadline - time.monotonic()))

    def leader(self) -> ZooKeeperNode:
        """The node whose ``srvr`` says ``leader`` (or the standalone node)."""
        for node in self.nodes:
            if node.mode() in ("leader", "standalone"):
                return node
        raise LaunchError("no zookeeper node reports itself leader (is a quorum up?)")

    def followers(self) -> list[ZooKeeperNode]:
        """The nodes that currently report ``follower``."""
        return [n for n in self.nodes if n.mode() == "follower"]

    def node(self, myid: int) -> ZooKeeperNode:
        """The node with this ``myid`` (1-based)."""
        return self.nodes[myid - 1]

    def running(self) -> bool:
        return any(n.running() for n in self.nodes)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every node by PID."""
        for node in self.nodes:
            node.stop(timeout)

    def destroy(self) -> None:
        """Stop every node and delete the directory."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> ZooKeeper:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

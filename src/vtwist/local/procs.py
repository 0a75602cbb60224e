"""Process helpers shared by the launchers: free loopback ports, waiting, stopping by PID."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


class LaunchError(RuntimeError):
    """A server could not be started or did not become ready; the message says why."""


# Ports ``free_port`` handed out lately in this process, and how many it remembers.
_RECENT_PORTS: deque[int] = deque(maxlen=256)
_PORT_TRIES = 50


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now (the kernel picks it).

    Never one of the last 256 it returned in this process: a caller asking for several
    ports before anything listens on them (a config with a MySQL and an HTTP port) would
    otherwise get the same port twice now and then, as the kernel may pick a port it just
    released again."""
    port = 0
    for _ in range(_PORT_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _RECENT_PORTS:
            break
    _RECENT_PORTS.append(port)
    return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # Field 3 is the state; 'Z' is a zombie that only waits to be reaped.
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is true; raise LaunchError naming ``what`` on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise LaunchError(f"{what} exited with status {proc.returncode}{_log_tail(log)}")
        time.sleep(0.05)
    raise LaunchError(f"{what} not ready after {timeout:.0f}s{_log_tail(log)}")


def _log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "; log tail:\n" + "\n".join(tail)


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid``, wait up to ``timeout`` seconds, then SIGKILL.

    Returns True if the process was running. Reaps it when it is our child.
    """
    if not pid_alive(pid):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pidfile(path: Path) -> int | None:
    """The PID stored in ``path``, or None if the file is missing or not a number."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None

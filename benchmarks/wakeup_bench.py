"""What one process hop costs on this machine: a ping-pong between two processes.

A proxy's cost per query is mostly two things: its own Python, and the system calls that
hand bytes to the next process, which include waking that process up. This script
measures the second alone. Two processes exchange a 100-byte message and a 200-byte
answer over loopback TCP (TCP_NODELAY) and over a unix socket, for ``--count`` round
trips, first free to run on any CPU, then both pinned to CPU 0. It prints round trips per
second and the CPU time (user + system) the measuring side spent per round trip.

When the "any CPU" figures are several times the "same CPU" ones, waking a process on
another CPU is what costs (on a virtual machine an inter-processor interrupt may exit to
the hypervisor): every extra process in a query's path pays it twice, which is why two
chained do-nothing forwarders run at about half the speed of one (``gate_bench``).

    .venv/bin/python -m benchmarks.wakeup_bench [--count 20000]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vtwist.local.procs import LOOPBACK

QUESTION = b"q" * 100
ANSWER = b"a" * 200


def _recv_exactly(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("the peer closed")
        got += len(chunk)


def _listener(kind: str, directory: Path) -> tuple[socket.socket, object]:
    if kind == "tcp":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind((LOOPBACK, 0))
        address: object = ls.getsockname()
    else:
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = str(directory / "pingpong.sock")
        ls.bind(path)
        address = path
    ls.listen(1)
    return ls, address


def _connect(kind: str, address: object) -> socket.socket:
    family = socket.AF_INET if kind == "tcp" else socket.AF_UNIX
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect(address)  # type: ignore[arg-type]
    if kind == "tcp":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ping_pong(kind: str, count: int, cpu: int | None) -> tuple[float, float]:
    """Round trips per second and this side's CPU microseconds per round trip."""
    with tempfile.TemporaryDirectory(prefix="vtwist-wakeup-") as tmp:
        ls, address = _listener(kind, Path(tmp))
        pid = os.fork()
        if pid == 0:  # the answering side
            try:
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                sock = _connect(kind, address)
                for _ in range(count):
                    _recv_exactly(sock, len(QUESTION))
                    sock.sendall(ANSWER)
            finally:
                os._exit(0)
        try:
            before = os.sched_getaffinity(0)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            conn, _ = ls.accept()
            if kind == "tcp":
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for _ in range(count):
                conn.sendall(QUESTION)
                _recv_exactly(conn, len(ANSWER))
            elapsed = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            conn.close()
            os.sched_setaffinity(0, before)
        finally:
            ls.close()
            os.waitpid(pid, 0)
    cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return count / elapsed, cpu_s / count * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the four combinations."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=20000, help="round trips per measurement")
    args = p.parse_args(argv)
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for kind in ("tcp", "unix"):
        for where, cpu in (("any CPU", None), ("same CPU", 0)):
            rate, us = ping_pong(kind, args.count, cpu)
            results[(kind, where)] = (rate, us)
            print(f"{kind:5} {where:9} {rate:9.0f} round trips/s   {us:6.1f} us CPU per round trip")
    for kind in ("tcp", "unix"):
        any_cpu, same = results[(kind, "any CPU")], results[(kind, "same CPU")]
        print(f"{kind:5} CPU per round trip, any CPU / same CPU: {any_cpu[1] / same[1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

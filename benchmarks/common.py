"""Shared pieces of the benchmarks: sysbench runs and Twisted's do-nothing forwarder.

Benchmarks are scripts, not tests: they print figures measured in one run so that ratios
(through vtwist vs direct to MariaDB vs a plain byte forwarder) are comparable on a noisy,
shared machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vtwist.local.procs import LOOPBACK, free_port, port_open, stop_pid, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SysbenchResult:
    """What one sysbench run reports."""

    qps: float
    p95_ms: float
    errors: int


def sysbench(
    test: str,
    port: int,
    user: str,
    password: str,
    db: str,
    threads: int = 16,
    seconds: int = 10,
    table_size: int = 10000,
    extra: tuple[str, ...] = (),
    command: str = "run",
) -> SysbenchResult:
    """Run ``sysbench TEST COMMAND`` against 127.0.0.1:PORT and parse its summary."""
    args = [
        "sysbench",
        "--db-driver=mysql",
        f"--mysql-host={LOOPBACK}",
        f"--mysql-port={port}",
        f"--mysql-user={user}",
        f"--mysql-password={password}",
        f"--mysql-db={db}",
        "--tables=1",
        f"--table-size={table_size}",
        f"--threads={threads}",
        f"--time={seconds}",
        "--percentile=95",
        *extra,
        test,
        command,
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        raise RuntimeError(f"sysbench {test} {command} failed: {out.stdout[-800:]}{out.stderr}")
    if command != "run":
        return SysbenchResult(0.0, 0.0, 0)
    qps = re.search(r"queries:\s+\d+\s+\(([\d.]+) per sec", out.stdout)
    p95 = re.search(r"95th percentile:\s+([\d.]+)", out.stdout)
    errs = re.search(r"ignored errors:\s+(\d+)", out.stdout)
    if not (qps and p95 and errs):
        raise RuntimeError(f"cannot parse sysbench output:\n{out.stdout}")
    return SysbenchResult(float(qps.group(1)), float(p95.group(1)), int(errs.group(1)))


class Forwarder:
    """Twisted's do-nothing byte forwarder (``twisted.protocols.portforward``) in a child."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        code = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from twisted.protocols.portforward import ProxyFactory\n"
            f"reactor.listenTCP({self.port}, ProxyFactory('{LOOPBACK}', {target_port}),"
            f" interface='{LOOPBACK}')\n"
            "reactor.run()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        wait_until(lambda: port_open(LOOPBACK, self.port), 20, "portforward", self.proc)

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        self.proc.wait()


def ratio(a: float, b: float) -> str:
    """``a/b`` formatted for a report line."""
    return f"{a / b:.2f}x" if b else "n/a"

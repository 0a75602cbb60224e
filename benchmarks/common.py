"""Shared pieces of the benchmarks: sysbench runs and Twisted's do-nothing forwarder.

Benchmarks are scripts, not tests: they print figures measured in one run so that ratios
(through vtwist vs direct to MariaDB vs a plain byte forwarder) are comparable on a noisy,
shared machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vtwist.local.procs import LOOPBACK, free_port, port_open, stop_pid, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SysbenchResult:
    """What one sysbench run reports."""

    qps: float
    p95_ms: float
    errors: int
    queries: int = 0
    #: CPU seconds used during the run, by process name (see ``CpuMeter``).
    cpu: Mapping[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def cpu_line(self) -> str:
        """CPU per query of each process, in microseconds, and the total as a share of
        the machine's cores (near 100% means the machine, not one process, is the limit)."""
        if not self.queries or not self.cpu or not self.wall:
            return "CPU per query: not measured"
        per = {name: s / self.queries * 1e6 for name, s in self.cpu.items()}
        total = sum(self.cpu.values())
        parts = ", ".join(f"{name} {us:.0f}" for name, us in per.items())
        share = total / self.wall / (os.cpu_count() or 1) * 100
        return (
            f"CPU us/query: {parts}; total {sum(per.values()):.0f} "
            f"({share:.0f}% of {os.cpu_count()} cores)"
        )


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds that process ``pid`` has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used between ``start`` and ``stop`` by named processes (by PID) and by
    this process's waited-for children (the sysbench run, named ``sysbench``)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._before: dict[str, float] = {}
        self._children = 0.0
        self._t0 = 0.0

    @staticmethod
    def _children_seconds() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def start(self) -> None:
        """Take the first reading."""
        self._before = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._children = self._children_seconds()
        self._t0 = time.monotonic()

    def stop(self) -> tuple[dict[str, float], float]:
        """CPU seconds by name since ``start``, and the wall seconds."""
        wall = time.monotonic() - self._t0
        used = {"sysbench": self._children_seconds() - self._children}
        for name, pid in self.pids.items():
            used[name] = process_cpu_seconds(pid) - self._before[name]
        return used, wall


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
    cpu_of: Mapping[str, int] | None = None,
) -> SysbenchResult:
    """Run ``sysbench TEST COMMAND`` against 127.0.0.1:PORT and parse its summary.

    ``cpu_of`` names processes (by PID) whose CPU use during the run goes into the result,
    with sysbench's own."""
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
    meter = CpuMeter(cpu_of or {})
    meter.start()
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    cpu, wall = meter.stop()
    if out.returncode != 0:
        raise RuntimeError(f"sysbench {test} {command} failed: {out.stdout[-800:]}{out.stderr}")
    if command != "run":
        return SysbenchResult(0.0, 0.0, 0)
    qps = re.search(r"queries:\s+(\d+)\s+\(([\d.]+) per sec", out.stdout)
    p95 = re.search(r"95th percentile:\s+([\d.]+)", out.stdout)
    errs = re.search(r"ignored errors:\s+(\d+)", out.stdout)
    if not (qps and p95 and errs):
        raise RuntimeError(f"cannot parse sysbench output:\n{out.stdout}")
    return SysbenchResult(
        float(qps.group(2)),
        float(p95.group(1)),
        int(errs.group(1)),
        queries=int(qps.group(1)),
        cpu=cpu if cpu_of is not None else {},
        wall=wall,
    )


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

"""Python work per query, counted rather than timed: bytecode instructions and calls.

Timings on the shared 2-core machine move 10-20% from one run to the next; the number of
Python bytecode instructions a process executes per query does not. This script runs
sysbench ``oltp_point_select`` (prepared statements, 4 threads) for ``--queries`` queries
after a warm-up and counts, in the vtwist processes on the path, the instructions and
function calls per query (``benchmarks/optrace/sitecustomize.py``: ``sys.settrace``
between two signals sent to each process by its PID). With ``--workload oltp_read_only``
a "query" is a sysbench transaction of 16 statements (BEGIN, 10 point selects, 4 range
selects of up to 100 rows, COMMIT). Targets:

* ``passthrough``: the test passthrough (``tests.support.passthrough``) in front of a
  throw-away MariaDB, as in ``passthrough_bench``;
* ``gate``: a throw-away local cluster (``vtwist up``, one primary and one replica, as in
  ``gate_bench``): the gate and the primary's tablet.

It prints instructions and calls per query for each process and its ``--top`` functions
(most instructions first). Counting slows the processes down many times: only the counts
mean something, never the time. Fewer instructions per query is less CPU per query, though
not in proportion (system calls and C code are not counted).

    .venv/bin/python -m benchmarks.opcount_bench [--target passthrough|gate]
        [--workload oltp_point_select|oltp_read_only] [--queries 3000] [--top 25]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.passthrough import write_users_file

from benchmarks.common import ROOT, sysbench
from benchmarks.gate_bench import VTWIST, start_cluster
from benchmarks.passthrough_bench import APP_PASSWORD, DB, PassthroughProcess
from vtwist.local.mariadb import MariaDB

ENV_OUT = "VTWIST_OPCOUNT_OUT"
TRACER_DIR = ROOT / "benchmarks" / "optrace"
TABLE_SIZE = 1000
WARMUP = 500


WORKLOADS = ("oltp_point_select", "oltp_read_only")


def _sysbench(
    port: int, user: str, password: str, db: str, events: int, workload: str = WORKLOADS[0]
) -> None:
    args = [
        "sysbench",
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={port}",
        f"--mysql-user={user}",
        f"--mysql-password={password}",
        f"--mysql-db={db}",
        "--mysql-ssl=off",
        "--tables=1",
        f"--table-size={TABLE_SIZE}",
        "--threads=4",
        f"--events={events}",
        "--time=0",
        workload,
        "run",
    ]
    subprocess.run(args, check=True, capture_output=True, timeout=600)


def _counted(
    pids: dict[str, int], out: Path, run: Sequence[str | int], queries: int, workload: str
) -> dict[str, list[tuple[int, int, str]]]:
    """Start counting in ``pids``, run ``queries`` sysbench events, stop; the counts by
    name."""
    port, user, password, db = run
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)
    _sysbench(int(port), str(user), str(password), str(db), queries, workload)
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR2)
    counts: dict[str, list[tuple[int, int, str]]] = {}
    for name, pid in pids.items():
        path = Path(f"{out}.{pid}")
        for _ in range(100):  # written by the signal handler, in the process's own time
            if path.exists() and path.stat().st_size:
                break
            time.sleep(0.1)
        rows = []
        for line in path.read_text().splitlines():
            n, calls, where = line.split("\t", 2)
            rows.append((int(n), int(calls), where))
        counts[name] = rows
    return counts


def _report(counts: dict[str, list[tuple[int, int, str]]], queries: int, top: int) -> None:
    for name, rows in counts.items():
        ops = sum(r[0] for r in rows) / queries
        calls = sum(r[1] for r in rows) / queries
        print(f"== {name}: {ops:,.0f} instructions and {calls:.1f} calls per query")
        for n, c, where in rows[:top]:
            where = where.replace(str(ROOT) + "/", "").replace("site-packages/", "")
            print(f"{n / queries:9.1f} {c / queries:6.2f}  {where}")


def _passthrough(base: Path, queries: int, workload: str) -> dict[str, list[tuple[int, int, str]]]:
    db = MariaDB(base / "mariadb").start()
    try:
        users = write_users_file(base / "users.toml", APP_PASSWORD)
        sysbench(
            "oltp_point_select", db.port, db.user, db.password, DB,
            threads=2, table_size=TABLE_SIZE, command="prepare",
        )  # fmt: skip
        proc = PassthroughProcess(db, users)
        try:
            _sysbench(proc.port, "app", APP_PASSWORD, DB, WARMUP, workload)
            run = (proc.port, "app", APP_PASSWORD, DB)
            return _counted({"passthrough": proc.proc.pid}, base / "ops", run, queries, workload)
        finally:
            proc.stop()
    finally:
        db.destroy()


def _gate(base: Path, queries: int, workload: str) -> dict[str, list[tuple[int, int, str]]]:
    directory = base / "cluster"  # (``start_cluster``'s)
    try:
        directory, status, primary = start_cluster(base)
        sysbench(
            "oltp_point_select", primary.port, primary.user, primary.password, "commerce",
            threads=2, table_size=TABLE_SIZE, command="prepare",
        )  # fmt: skip
        port = int(status["gate"]["mysql"].rsplit(":", 1)[1])
        user, password = status["gate"]["user"], status["gate"]["password"]
        _sysbench(port, user, password, "commerce", WARMUP, workload)
        alias = next(t["alias"] for t in status["tablets"] if t["type"] == "primary")
        pids = {
            "vtgate": int((directory / "gate" / "twistd.pid").read_text()),
            f"vttablet {alias}": int((directory / "tablets" / alias / "twistd.pid").read_text()),
        }
        run = (port, user, password, "commerce")
        return _counted(pids, base / "ops", run, queries, workload)
    finally:
        if (directory / "cluster.json").exists():
            subprocess.run([VTWIST, "down", "--dir", str(directory)], capture_output=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, count once, print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=("passthrough", "gate"), default="passthrough")
    p.add_argument("--workload", choices=WORKLOADS, default=WORKLOADS[0])
    p.add_argument("--queries", type=int, default=3000, help="sysbench events counted")
    p.add_argument("--top", type=int, default=25, help="functions listed per process")
    args = p.parse_args(argv)
    if args.queries < 1:
        p.error("--queries must be at least 1")
    base = Path(tempfile.mkdtemp(prefix="vtwist-opcount-"))
    # Inherited by the processes started below (the passthrough, ``vtwist up``'s daemons).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TRACER_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ[ENV_OUT] = str(base / "ops")
    try:
        run = _passthrough if args.target == "passthrough" else _gate
        _report(run(base, args.queries, args.workload), args.queries, args.top)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

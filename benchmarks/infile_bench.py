"""LOAD DATA LOCAL INFILE of one large file: through the gate against direct to MariaDB.

Starts a throw-away cluster with ``vtwist up`` (as ``benchmarks.gate_bench`` does: one
primary and one replica, their tablets, the gate, on free ports in a temporary directory),
writes one CSV file (``--mb`` megabytes, 10^6 bytes each, of rows ``id,<filler>`` of
``--rows-bytes`` bytes) and loads it with the ``mariadb`` CLI (``--local-infile=1``) into
``CREATE TABLE infile_bench (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB``:

* direct: to the primary's MariaDB over TCP, as ``vt_app`` (the tablets' MySQL user);
* gate: through the gate (``commerce`` target: the primary), after
  ``SET query_timeout = 600000`` so that the gate's statement deadline (30 s by default)
  does not cut the load. The gate reads the client's file and streams it to the primary's
  tablet in pieces of at most 1 MiB, which streams them to mysqld.

The two alternate, ``--rounds`` times each (direct then gate in odd rounds, gate then
direct in even ones, so that neither always goes first); after each run the table is
counted (untimed), truncated, and the replica is waited for, so that its replaying the
load does not take CPU from the next run.

Prints for each run the seconds (the whole ``mariadb`` command: connect, load, quit), the
MB/s, and the CPU seconds that mysqld, vtgate and the primary's vttablet used; for the
gate runs also the resident memory (VmRSS, sampled every 0.2 s in a thread) of vtgate and
vttablet before the run and its peak during it. Then the ratio gate/direct of the mean
throughput (below 1: the gate is slower) and of each round. The peaks show whether the
gate and tablet hold the file: they stream it, so their memory should grow by a few MiB at
most, not by the file's size. Stops the cluster by PID (``vtwist down``) and removes the
file and the cluster directory at the end. Not a test: figures only mean something as
ratios measured in the same run.

    .venv/bin/python -m benchmarks.infile_bench [--mb 200] [--rows-bytes 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import process_cpu_seconds, ratio
from benchmarks.gate_bench import VTWIST, start_cluster
from vtwist.local.cluster import mariadb_for
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import LOOPBACK, read_pidfile
from vtwist.local.state import load_state

MB = 1_000_000
MIB = 1024 * 1024
TABLE = "infile_bench"
DB = "commerce"
QUERY_TIMEOUT_MS = 600_000


def write_csv(path: Path, mb: int, row_bytes: int) -> int:
    """Write ``mb`` MB of rows ``id,<filler>\\n`` of ``row_bytes`` bytes (ids of up to
    seven digits; the filler pads each row); return the number of rows."""
    rows = max(1, mb * MB // row_bytes)
    filler = ("abcdefghijklmnopqrstuvwxyz0123456789" * (row_bytes // 36 + 1))[: row_bytes - 9]
    batch = 10_000
    with path.open("w") as f:
        for start in range(1, rows + 1, batch):
            end = min(start + batch, rows + 1)
            f.write("".join(f"{i:07d},{filler}\n" for i in range(start, end)))
    return rows


def vmrss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS of /proc/PID/status), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for PID {pid}")


class RssSampler:
    """VmRSS of named processes before ``start`` and its peak until ``stop``, sampled every
    ``interval`` seconds in a thread."""

    def __init__(self, pids: Mapping[str, int], interval: float = 0.2) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.before: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak.get(name, 0), vmrss_bytes(pid))

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def start(self) -> None:
        """Take the readings before and start sampling."""
        self.before = {name: vmrss_bytes(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.before)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling, after a last sample."""
        self._done.set()
        self._thread.join()
        self._sample()

    def line(self) -> str:
        """``name RSS before -> peak MiB`` of each process."""
        return ", ".join(
            f"{name} {self.before[name] / MIB:.1f} -> {self.peak[name] / MIB:.1f}"
            for name in self.pids
        )


@dataclass
class Run:
    """One load: which path, how long, the CPU seconds of the cluster's processes and, for
    the gate, the memory of vtgate and vttablet."""

    path: str
    round: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    rss: RssSampler | None = None


@dataclass(frozen=True)
class Target:
    """Where a ``mariadb`` client connects, and what it sends before the load."""

    port: int
    user: str
    password: str
    prefix: str = ""

    def mariadb(self, statement: str, *flags: str, timeout: float = 1800) -> str:
        """Run ``statement`` with the ``mariadb`` CLI; its output (raises on an error)."""
        args = ["mariadb", "--protocol=tcp", f"-h{LOOPBACK}", f"-P{self.port}"]
        args += [f"-u{self.user}", *flags, "-N", DB, "-e", self.prefix + statement]
        env = {**os.environ, "MYSQL_PWD": self.password}
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"mariadb on port {self.port} failed: {out.stderr.strip()}")
        return out.stdout


def _primary(directory: Path, status: dict[str, Any]) -> tuple[str, MariaDB, list[MariaDB]]:
    """The primary's alias and the MariaDB launcher objects of the primary and replicas."""
    alias = next(t["alias"] for t in status["tablets"] if t["type"] == "primary")
    state = load_state(directory)
    assert state is not None
    dbs = {t.alias: mariadb_for(directory, state, t) for t in state.tablets}
    return alias, dbs.pop(alias), list(dbs.values())


def _wait_replicas(primary: MariaDB, replicas: Sequence[MariaDB], timeout: int = 600) -> None:
    """Wait until every replica has applied what the primary has written so far."""
    conn = primary.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos")
            row = cur.fetchone()
            assert row is not None
            pos = str(row[0])
    finally:
        conn.close()
    for replica in replicas:
        conn = replica.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, timeout))
                row = cur.fetchone()
                if row is None or row[0] != 0:
                    raise RuntimeError(f"replica {replica.port} did not reach {pos}")
        finally:
            conn.close()


def _pid(path: Path) -> int:
    pid = read_pidfile(path)
    if pid is None:
        raise RuntimeError(f"no PID in {path}")
    return pid


def _report(run: Run, size: int) -> str:
    cpu = ", ".join(f"{name} {s:.1f}" for name, s in run.cpu.items())
    text = (
        f"round {run.round}  {run.path:6} {run.seconds:7.2f} s  {size / MB / run.seconds:6.1f} MB/s"
        f"   CPU s: {cpu}"
    )
    if run.rss is not None:
        text += f"\n{'':17}RSS MiB before -> peak: {run.rss.line()}"
    return text


def run(mb: int, row_bytes: int, rounds: int) -> list[Run]:
    """Start the cluster, measure, stop it; print and return the runs."""
    base = Path(tempfile.mkdtemp(prefix="vtwist-infile-bench-"))
    directory = base / "cluster"
    runs: list[Run] = []
    try:
        csv = base / "rows.csv"
        rows = write_csv(csv, mb, row_bytes)
        size = csv.stat().st_size
        print(f"file: {rows} rows, {size / MB:.1f} MB; starting the cluster", flush=True)
        directory, status, _ = start_cluster(base)
        alias, primary, replicas = _primary(directory, status)
        app_password = (directory / "tablets" / alias / "app.password").read_text().strip()
        direct = Target(primary.port, "vt_app", app_password)
        gate_port = int(status["gate"]["mysql"].rsplit(":", 1)[1])
        gate = Target(
            gate_port,
            status["gate"]["user"],
            status["gate"]["password"],
            prefix=f"SET query_timeout = {QUERY_TIMEOUT_MS}; ",
        )
        pids = {
            "mysqld": _pid(primary.pidfile),
            "vtgate": _pid(directory / "gate" / "twistd.pid"),
            "vttablet": _pid(directory / "tablets" / alias / "twistd.pid"),
        }
        gate.mariadb(
            f"DROP TABLE IF EXISTS {TABLE}; "
            f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB"
        )
        load = f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE {TABLE} FIELDS TERMINATED BY ','"
        for r in range(1, rounds + 1):
            order = ("direct", "gate") if r % 2 else ("gate", "direct")
            for name in order:
                target = direct if name == "direct" else gate
                rss = RssSampler({k: pids[k] for k in ("vtgate", "vttablet")})
                cpu0 = {k: process_cpu_seconds(pid) for k, pid in pids.items()}
                if name == "gate":
                    rss.start()
                t0 = time.monotonic()
                try:
                    target.mariadb(load, "--local-infile=1")
                finally:
                    seconds = time.monotonic() - t0
                    if name == "gate":
                        rss.stop()
                cpu = {k: process_cpu_seconds(pid) - cpu0[k] for k, pid in pids.items()}
                got = int(direct.mariadb(f"SELECT COUNT(*) FROM {TABLE}").strip())
                if got != rows:
                    raise RuntimeError(f"{name}: {got} rows loaded, {rows} expected")
                one = Run(name, r, seconds, cpu, rss if name == "gate" else None)
                runs.append(one)
                print(_report(one, size), flush=True)
                direct.mariadb(f"TRUNCATE TABLE {TABLE}")
                _wait_replicas(primary, replicas)
        gate.mariadb(f"DROP TABLE IF EXISTS {TABLE}")
        _summary(runs, size)
    finally:
        if (directory / "cluster.json").exists():
            subprocess.run([VTWIST, "down", "--dir", str(directory)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    return runs


def _summary(runs: Sequence[Run], size: int) -> None:
    by: dict[str, list[Run]] = {"direct": [], "gate": []}
    for one in runs:
        by[one.path].append(one)
    mean = {k: sum(size / MB / x.seconds for x in v) / len(v) for k, v in by.items() if v}
    if len(mean) < 2:
        return
    pairs = zip(by["direct"], by["gate"], strict=True)
    per_round = "  ".join(ratio(d.seconds, g.seconds) for d, g in pairs)
    print(
        f"mean MB/s: direct {mean['direct']:.1f}, gate {mean['gate']:.1f}; "
        f"gate/direct {ratio(mean['gate'], mean['direct'])} (by round: {per_round})"
    )
    growth = {
        name: max(g.rss.peak[name] - g.rss.before[name] for g in by["gate"] if g.rss)
        for name in ("vtgate", "vttablet")
    }
    print(
        "largest RSS growth during a gate run: "
        + ", ".join(f"{name} {b / MIB:.1f} MiB" for name, b in growth.items())
        + f" (file {size / MIB:.0f} MiB)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run once."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mb", type=int, default=200, help="size of the file, in 10^6 bytes")
    p.add_argument("--rows-bytes", type=int, default=1000, help="bytes per row (at least 10)")
    p.add_argument("--rounds", type=int, default=2, help="loads of each path")
    args = p.parse_args(argv)
    if args.rows_bytes < 10 or args.mb * MB // args.rows_bytes >= 10**7:
        p.error("--rows-bytes must be at least 10 and the file under 10^7 rows")
    run(args.mb, args.rows_bytes, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

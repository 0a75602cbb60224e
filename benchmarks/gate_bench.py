"""The gate against direct MariaDB and a do-nothing forwarder, on a real local cluster.

Starts a throw-away cluster with ``vtwist up`` (ZooKeeper, one MariaDB primary and one
replica, their tablets, the gate) in a temporary directory on free ports, then runs, in
one run and one after the other, sysbench ``oltp_point_select`` and ``oltp_read_only``:

* direct to the primary's MariaDB;
* through the gate (``commerce`` target: the primary);
* through Twisted's do-nothing byte forwarder (``twisted.protocols.portforward``) in front
  of the primary's MariaDB;
* through two such forwarders in a chain: a reference, not an aim. The gate path has two
  processes between the client and mysqld (vtgate, then vttablet), so two forwarders that
  do nothing at all show what two Python hops cost on this machine before any work.

Prints QPS and p95 latency of each and the ratios gate/forwarder, gate/direct and
gate/two-forwarders, and under each run the CPU that each process on its path used per
query (microseconds; read from /proc by PID, sysbench from this script's waited-for
children; setup and teardown included) and their total as a share of the machine's cores.
That share near 100% means the path is limited by the machine's CPU, so the path whose
processes use less CPU per query in all is the faster one. Stops the cluster by PID
(``vtwist down``) at the end. Not a test: figures only mean something as ratios measured
in the same run.

    .venv/bin/python -m benchmarks.gate_bench [--seconds 15] [--threads 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Forwarder, SysbenchResult, ratio, sysbench
from vtwist.local.cluster import mariadb_for
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import free_port
from vtwist.local.state import load_state

VTWIST = str(Path(sys.executable).with_name("vtwist"))
TESTS = ("oltp_point_select", "oltp_read_only")


def _config(path: Path) -> Path:
    path.write_text(
        f"""
[[keyspaces]]
name = "commerce"
shards = ["0"]
replicas = 1
durability = "none"

[gate]
mysql_port = {free_port()}
http_port = {free_port()}

[[gate.users]]
name = "app"

[vtorc]
instances = 0
"""
    )
    return path


def _vtwist(*args: str) -> str:
    out = subprocess.run([VTWIST, *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"vtwist {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def start_cluster(base: Path) -> tuple[Path, dict[str, Any], MariaDB]:
    """``vtwist up`` of a throw-away cluster under ``base`` (``_config``): its directory,
    ``vtwist status --json`` and the primary's MariaDB. ``vtwist down --dir`` stops it."""
    directory = base / "cluster"
    _vtwist("up", "--dir", str(directory), "--config", str(_config(base / "local.toml")))
    status = json.loads(_vtwist("status", "--dir", str(directory), "--json"))
    state = load_state(directory)
    assert state is not None
    return directory, status, mariadb_for(directory, state, state.tablets[0])


def _line(test: str, name: str, r: SysbenchResult) -> str:
    return (
        f"{test:18} {name:10} {r.qps:10.0f} qps   p95 {r.p95_ms:7.2f} ms   errors {r.errors}\n"
        f"{'':29} {r.cpu_line()}"
    )


def _hop_cpu(r: SysbenchResult) -> float:
    """CPU microseconds per query of the processes between the client and mysqld."""
    hops = sum(v for k, v in r.cpu.items() if k not in ("sysbench", "mysqld"))
    return hops / r.queries * 1e6 if r.queries else 0.0


def _pids(status: dict[str, Any]) -> dict[str, int]:
    """PIDs of the primary's mysqld and tablet and of the gate, by the names printed."""
    primary = next(t for t in status["tablets"] if t["type"] == "primary")
    uid = primary["alias"].rsplit("-", 1)[1].lstrip("0") or "0"
    wanted = {
        "vtgate": "vtgate",
        f"vttablet {primary['alias']}": "vttablet",
        f"mariadb {uid}": "mysqld",
    }
    return {wanted[p["name"]]: int(p["pid"]) for p in status["processes"] if p["name"] in wanted}


def run(seconds: int, threads: int, table_size: int) -> dict[str, dict[str, SysbenchResult]]:
    """Start the cluster, measure, stop it; print and return the results by test and path."""
    base = Path(tempfile.mkdtemp(prefix="vtwist-gate-bench-"))
    directory = base / "cluster"
    results: dict[str, dict[str, SysbenchResult]] = {t: {} for t in TESTS}
    try:
        directory, status, primary = start_cluster(base)
        gate_port = int(status["gate"]["mysql"].rsplit(":", 1)[1])
        user, password = status["gate"]["user"], status["gate"]["password"]
        db = "commerce"
        sysbench(
            "oltp_point_select",
            primary.port,
            primary.user,
            primary.password,
            db,
            threads=4,
            table_size=table_size,
            command="prepare",
        )
        forwarder = Forwarder(primary.port)
        chained = Forwarder(forwarder.port)
        try:
            pids = _pids(status)
            mysqld = {"mysqld": pids["mysqld"]}
            fwd = {"forwarder": forwarder.proc.pid}
            paths = (
                ("direct", primary.port, primary.user, primary.password, mysqld),
                ("gate", gate_port, user, password, pids),
                ("forwarder", forwarder.port, primary.user, primary.password, {**mysqld, **fwd}),
                (
                    "2 fwd",
                    chained.port,
                    primary.user,
                    primary.password,
                    {**mysqld, **fwd, "forwarder 2": chained.proc.pid},
                ),
            )
            for test in TESTS:
                for name, port, u, pw, cpu_of in paths:
                    r = sysbench(
                        test,
                        port,
                        u,
                        pw,
                        db,
                        threads=threads,
                        seconds=seconds,
                        table_size=table_size,
                        extra=("--mysql-ssl=off",),
                        cpu_of=cpu_of,
                    )
                    results[test][name] = r
                    print(_line(test, name, r), flush=True)
        finally:
            chained.stop()
            forwarder.stop()
    finally:
        if (directory / "cluster.json").exists():
            subprocess.run([VTWIST, "down", "--dir", str(directory)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    for test, by in results.items():
        if len(by) == 4:
            g, f, d, f2 = by["gate"].qps, by["forwarder"].qps, by["direct"].qps, by["2 fwd"].qps
            print(
                f"{test:18} gate/forwarder {ratio(g, f)}   gate/direct {ratio(g, d)}   "
                f"gate/two-forwarders {ratio(g, f2)}   two-forwarders/forwarder {ratio(f2, f)}"
            )
            hops = {name: _hop_cpu(by[name]) for name in ("gate", "forwarder", "2 fwd")}
            if all(hops.values()):
                print(
                    f"{test:18} CPU us/query of the processes between client and mysqld: "
                    f"gate path {hops['gate']:.0f}, forwarder {hops['forwarder']:.0f}, "
                    f"two forwarders {hops['2 fwd']:.0f}"
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run once."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=15, help="per measurement")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--table-size", type=int, default=10000)
    args = p.parse_args(argv)
    run(args.seconds, args.threads, args.table_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())

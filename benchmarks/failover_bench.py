"""Failover figures on a real local cluster: kill -9 of the primary's mysqld under writes.

Starts a throw-away cluster with ``vtwist up`` (ZooKeeper, three MariaDB with semi-sync
GTID replication, their tablets, the gate, one vtorc with a short ``orc.recovery_block``)
on free ports, then ``--runs`` times: a writer does autocommit INSERTs through the gate on
one connection; the current primary's mysqld is killed with SIGKILL; the run ends once the
writer has an acknowledgement after the kill (or after ``--limit`` seconds). The dead
mysqld is restarted with ``vtwist up`` (vtorc repoints it) before the next run.

Prints, per run and as the median: seconds from the kill to the first write acknowledged
by the new primary, client errors seen, acknowledged writes missing on the new primary
(must be 0), and whether the writer's connection stayed the same. Not a test.

    .venv/bin/python -m benchmarks.failover_bench [--runs 5] [--limit 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

from vtwist.local.procs import free_port, read_pidfile

VTWIST = str(Path(sys.executable).with_name("vtwist"))


def vtwist(*args: str) -> dict[str, Any] | None:
    out = subprocess.run([VTWIST, *args], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"vtwist {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout) if "--json" in args else None


class Writer(threading.Thread):
    def __init__(self, connect: Any, table: str) -> None:
        super().__init__(daemon=True)
        self.conn = connect()
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY)")
        self.table = table
        self.thread_id = self.conn.thread_id()
        self.acked: list[tuple[int, float, float]] = []  # (id, sent, acknowledged)
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            i += 1
            sent = time.time()
            try:
                with self.conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} VALUES (%s)", (i,))
                self.acked.append((i, sent, time.time()))
            except pymysql.MySQLError as e:
                self.errors.append(str(e))
            time.sleep(0.002)


def one_run(directory: Path, status: dict[str, Any], n: int, limit: float) -> dict[str, Any]:
    host, port = status["gate"]["mysql"].rsplit(":", 1)

    def connect(db: str = "commerce") -> Any:
        return pymysql.connect(
            host=host,
            port=int(port),
            user=status["gate"]["user"],
            password=status["gate"]["password"],
            database=db,
            autocommit=True,
            read_timeout=30,
        )

    topo = status["topo_address"]
    shard = vtwist("shard", "get", "commerce/0", "--topo", topo, "--json")
    assert shard is not None
    old = str(shard["primary_alias"])
    uid = int(old.rsplit("-", 1)[1])
    pid = read_pidfile(directory / "mysql" / str(uid) / "mysqld.pid")
    assert pid is not None
    writer = Writer(connect, f"run{n}")
    writer.start()
    time.sleep(1.0)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    first: float | None = None
    while time.time() - killed < limit:
        # Sent after the kill: only the new primary can have acknowledged it.
        first = next((t - killed for _, s, t in writer.acked if s > killed), None)
        if first is not None:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    writer.halt.set()
    writer.join(60)
    with writer.conn.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        same = cur.fetchone()[0] == writer.thread_id
        cur.execute(f"SELECT id FROM {writer.table}")
        have = {r[0] for r in cur.fetchall()}
    writer.conn.close()
    lost = [i for i, _, _ in writer.acked if i not in have]
    new = vtwist("shard", "get", "commerce/0", "--topo", topo, "--json")
    assert new is not None
    vtwist("up", "--dir", str(directory))  # restart the dead mysqld; vtorc repoints it
    time.sleep(3)
    return {
        "run": n,
        "old": old,
        "new": new["primary_alias"],
        "first_ack_s": first,
        "errors": len(writer.errors),
        "acked": len(writer.acked),
        "lost": len(lost),
        "same_connection": same,
        "sample_error": writer.errors[0][:140] if writer.errors else "",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=float, default=30.0)
    parser.add_argument(
        "--keep", action="store_true", help="leave the cluster running when a run fails"
    )
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="vtwist-failover-bench-"))
    directory = base / "cluster"
    config = base / "local.toml"
    config.write_text(
        f"""
[gate]
mysql_port = {free_port()}
http_port = {free_port()}
[[gate.users]]
name = "app"
[gate.options]
"session.query_timeout" = "10s"
[vtorc]
http_port = {free_port()}
[vtorc.options]
"orc.recovery_block" = "1s"
[zookeeper]
session_timeout = 4
"""
    )
    failed = False
    try:
        vtwist("up", "--dir", str(directory), "--config", str(config))
        status = vtwist("status", "--dir", str(directory), "--json")
        assert status is not None
        results = []
        for n in range(1, args.runs + 1):
            r = one_run(directory, status, n, args.limit)
            results.append(r)
            print(json.dumps(r), flush=True)
        times = [r["first_ack_s"] for r in results if r["first_ack_s"] is not None]
        print(
            f"kill -9 -> first acknowledged write on the new primary: median "
            f"{statistics.median(times):.2f}s over {len(times)}/{len(results)} runs "
            f"(min {min(times):.2f}, max {max(times):.2f}); client errors "
            f"{[r['errors'] for r in results]}; acknowledged writes lost "
            f"{sum(r['lost'] for r in results)}; same connection in every run: "
            f"{all(r['same_connection'] for r in results)}"
            if times
            else "no run saw a write acknowledged after the kill"
        )
    except BaseException:
        failed = True
        raise
    finally:
        if failed and args.keep:
            print(f"the cluster is left running in {directory}", file=sys.stderr)
        else:
            subprocess.run([VTWIST, "down", "--dir", str(directory)], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

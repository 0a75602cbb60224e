"""Point selects through a real vttablet vs straight to MariaDB, in one run.

Starts a private MariaDB and ZooKeeper (the project's launchers), loads a 10,000-row
sysbench-style table, runs ``twistd -n vttablet`` as a child process, then drives, from this
process, ``--concurrency`` point selects in flight (default 16):

- direct: 16 vtwist MySQL client connections to MariaDB, one select in flight on each;
- tablet: the same selects through the tablet RPC (one connection, 16 requests in flight,
  as a gate would send them), the tablet running them on its query pool.

Reports queries/s of each, their ratio, and the tablet's CPU per query (utime+stime of the
twistd process from /proc/<pid>/stat over the measured window), plus the CPU per query of
this driver and of mysqld. Not a test.

    .venv/bin/python benchmarks/tablet_bench.py [--seconds 10] [--concurrency 16]

With ``VTWIST_TABLET_PROFILE=/tmp/tablet.pstats`` the tablet runs under a CPU-time cProfile
and saves its stats there on exit (its CPU figures then include the profiler's overhead).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint

from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import stop_pid
from vtwist.local.zookeeper import ZooKeeper
from vtwist.protocols.mysql.client import MySQLClient, connect
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.tablet.config import ENV_APP_PASSWORD, ENV_DBA_PASSWORD
from vtwist.topo import Keyspace, open_topo
from vtwist.topo.errors import NoNodeError

TABLE_ROWS = 10_000
APP, DBA, PASSWORD, DB = "bench_app", "bench_dba", "bench-pw", "bench"
TICK = os.sysconf("SC_CLK_TCK")
# Set to a file path to run the tablet under cProfile (pstats file; adds profiler overhead).
ENV_PROFILE = "VTWIST_TABLET_PROFILE"
PROFILED_TWISTD = """
import cProfile, sys, time
from twisted.internet import reactor
from twisted.scripts.twistd import run
profiler = cProfile.Profile(time.process_time)
reactor.addSystemEventTrigger("before", "shutdown", profiler.dump_stats, sys.argv[1])
sys.argv[:2] = ["twistd"]
profiler.enable()
run()
"""


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of process ``pid``, in seconds (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def prepare(db: MariaDB) -> None:
    """The bench database, users and a sysbench-like table of TABLE_ROWS rows."""
    conn = db.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
            for user, grant in ((APP, f"ALL ON {DB}.*"), (DBA, "ALL ON *.*")):
                cur.execute(
                    f"CREATE USER IF NOT EXISTS {user}@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,)
                )
                cur.execute(f"GRANT {grant} TO {user}@'127.0.0.1'")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {DB}.sbtest1 (id INT PRIMARY KEY, "
                "k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY (k))"
            )
            rng = random.Random(1)
            rows = [
                (i, rng.randrange(TABLE_ROWS), f"{rng.getrandbits(200):060x}" * 2, "p" * 60)
                for i in range(1, TABLE_ROWS + 1)
            ]
            cur.executemany(f"REPLACE INTO {DB}.sbtest1 VALUES (%s, %s, %s, %s)", rows)
    finally:
        conn.close()


class Driver:
    """Keeps ``concurrency`` loops of ``call()`` running; measures a window after a warmup."""

    def __init__(self, reactor: Any, calls: list[Callable[[], defer.Deferred[Any]]]) -> None:
        self.reactor = reactor
        self.calls = calls
        self.done = 0
        self.errors = 0
        self.measuring = False
        self.stopping = False

    async def run(self, warmup: float, seconds: float, pids: dict[str, int]) -> dict[str, float]:
        loops = [defer.Deferred.fromCoroutine(self._loop(call)) for call in self.calls]
        await task.deferLater(self.reactor, warmup, lambda: None)
        cpu0 = {name: cpu_split(pid) for name, pid in pids.items()}
        mine0, wall0 = time.process_time(), time.perf_counter()
        self.done, self.measuring = 0, True
        await task.deferLater(self.reactor, seconds, lambda: None)
        self.measuring = False
        wall = time.perf_counter() - wall0
        out = {"qps": self.done / wall, "queries": float(self.done), "wall": wall}
        out["driver_us"] = (time.process_time() - mine0) / self.done * 1e6
        for name, pid in pids.items():
            (user0, sys0), (user1, sys1) = cpu0[name], cpu_split(pid)
            out[f"{name}_user_us"] = (user1 - user0) / self.done * 1e6
            out[f"{name}_sys_us"] = (sys1 - sys0) / self.done * 1e6
            out[f"{name}_us"] = out[f"{name}_user_us"] + out[f"{name}_sys_us"]
        self.stopping = True
        await defer.gatherResults(loops)
        return out

    async def _loop(self, call: Callable[[], defer.Deferred[Any]]) -> None:
        while not self.stopping:
            try:
                await call()
            except Exception as e:
                self.errors += 1
                if self.errors < 5:
                    print(f"error: {e}", file=sys.stderr)
                continue
            if self.measuring:
                self.done += 1


def point_select(rng: random.Random) -> str:
    return f"SELECT c FROM sbtest1 WHERE id = {rng.randrange(1, TABLE_ROWS + 1)}"


async def wait_tablet(
    reactor: Any, topo: Any, alias: str, proc: subprocess.Popen[bytes], log: Path
) -> Any:
    """The tablet's topo record once it serves (exit if the tablet dies or never serves)."""
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"vttablet exited:\n{log.read_text()[-3000:]}")
        try:
            t = await topo.get_tablet(alias)
            if t.serving and t.rpc_port:
                return t
        except NoNodeError:
            pass
        await task.deferLater(reactor, 0.1, lambda: None)
    raise SystemExit(f"vttablet never served:\n{log.read_text()[-3000:]}")


async def bench(reactor: Any, opts: argparse.Namespace) -> None:
    """Set up, measure direct then through the tablet, print, tear down (by PID)."""
    base = Path(tempfile.mkdtemp(prefix="vtwist-tablet-bench-"))
    db = zk = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        db = MariaDB(base / "mariadb").start()
        zk = ZooKeeper(base / "zookeeper").start()
        prepare(db)
        address = zk.address("/bench")
        topo = open_topo(address, reactor, session_timeout=5.0)
        await topo.connect(10.0)
        await topo.create_keyspace(Keyspace("commerce"))
        alias = "zone1-0000000100"
        log = base / "vttablet.log"
        twistd = str(Path(sys.executable).with_name("twistd"))
        args = [
            twistd, "-n", "--pidfile=", f"--logfile={log}", "vttablet",
            "--alias", alias, "--keyspace", "commerce", "--tablet-type", "primary",
            "--topo-address", address, "--mysql-port", str(db.port), "--mysql-database", DB,
            "--mysql-app-user", APP, "--mysql-dba-user", DBA,
            "--rpc-listen", "tcp:0:interface=127.0.0.1",
            "--http-listen", "tcp:0:interface=127.0.0.1",
            "--pool-query-size", str(opts.concurrency),
        ]  # fmt: skip
        profile = os.environ.get(ENV_PROFILE)
        if profile:
            # cProfile on CPU time (not wall time: this box also runs mysqld and the driver),
            # the stats written when the tablet exits.
            args[:1] = [sys.executable, "-c", PROFILED_TWISTD, str(Path(profile).resolve())]
        env = {**os.environ, ENV_APP_PASSWORD: PASSWORD, ENV_DBA_PASSWORD: PASSWORD}
        proc = subprocess.Popen(args, cwd=base, env=env, stdin=subprocess.DEVNULL)
        tablet = await wait_tablet(reactor, topo, alias, proc, log)
        mysqld_pid = db.pid
        assert mysqld_pid is not None
        rng = random.Random(7)

        # Direct: one vtwist client connection per concurrent loop.
        conns: list[MySQLClient] = [
            await connect(reactor, ("127.0.0.1", db.port), APP, PASSWORD, DB)
            for _ in range(opts.concurrency)
        ]
        direct = Driver(
            reactor,
            [(lambda c=c: c.query(point_select(rng))) for c in conns],  # type: ignore[misc]
        )
        d = await direct.run(opts.warmup, opts.seconds, {"mysqld": mysqld_pid})
        for c in conns:
            await c.close()

        # Through the tablet: one RPC connection, `concurrency` requests in flight.
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", tablet.rpc_port)
        client = await endpoint.connect(TabletRPCClientFactory(reactor))
        assert isinstance(client, TabletRPCClient)
        await client.when_ready()
        through = Driver(
            reactor, [lambda: client.execute(point_select(rng)) for _ in range(opts.concurrency)]
        )
        t = await through.run(opts.warmup, opts.seconds, {"mysqld": mysqld_pid, "tablet": proc.pid})
        await client.close()
        await topo.close()

        n = opts.concurrency
        print(f"point selects, {n} in flight, {TABLE_ROWS} rows, {opts.seconds:g} s each, loopback")
        print(
            f"  direct to MariaDB ({n} vtwist client connections): {d['qps']:,.0f} qps; "
            f"driver CPU {d['driver_us']:.0f} us/q, mysqld CPU {d['mysqld_us']:.0f} us/q; "
            f"{direct.errors} errors"
        )
        print(
            f"  through vttablet (1 RPC connection, query pool {n}): {t['qps']:,.0f} qps; "
            f"tablet CPU {t['tablet_us']:.0f} us/q (user {t['tablet_user_us']:.0f}, "
            f"sys {t['tablet_sys_us']:.0f}), driver CPU {t['driver_us']:.0f} us/q, "
            f"mysqld CPU {t['mysqld_us']:.0f} us/q; {through.errors} errors"
        )
        print(f"  ratio tablet/direct: {t['qps'] / d['qps']:.2f}  (cores: {os.cpu_count()})")
    finally:
        if proc is not None and proc.poll() is None:
            stop_pid(proc.pid)
            proc.wait()
        if zk is not None:
            zk.stop()
        if db is not None:
            db.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    opts = parser.parse_args()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(bench(reactor, opts)))


if __name__ == "__main__":
    main()

"""Issue 2's benchmark: sysbench oltp_point_select through vtwist's passthrough.

One run, one throw-away MariaDB (the project's launcher), one sysbench table of
``--table-size`` rows, then ``oltp_point_select`` at ``--threads`` threads for
``--seconds`` each: direct to MariaDB once, then ``--rounds`` pairs (alternating which goes
first, so that a slow or fast spell of the shared machine falls on both) of

* the test passthrough (``tests.support.passthrough``: vtwist's MySQL server in
  front, one vtwist client connection per session behind it) in its own process, on
  vtwist's reactor (``vtwist.reactor``, what ``vtwist up`` runs the roles on),
* Twisted's do-nothing byte forwarder (``twisted.protocols.portforward``) in its
  own process, on Twisted's default reactor.

It prints each QPS and 95th-percentile latency, each round's passthrough/forwarder ratio,
and their median with passthrough/direct (the issue's aim: the passthrough at or above 0.8x
the forwarder; single measurements vary 10-20% from one to the next here). For
the two proxies it also prints the CPU time their process used per query (user + system,
from ``/proc``): on a shared machine that cost is steadier than the QPS. ``--rate N``
caps sysbench at N queries per second for all three: the proxies then handle the same
load, so their CPU per query compares their work rather than how much each batches when
saturated (the QPS ratios are then ~1 and say nothing).
``--profile FILE`` runs the passthrough under cProfile and prints its hottest functions.

    .venv/bin/python -m benchmarks.passthrough_bench [--seconds 15] [--threads 16] [--rounds 3]
        [--rate N]
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.passthrough import write_users_file

from benchmarks.common import ROOT, Forwarder, SysbenchResult, ratio, sysbench
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import LOOPBACK, free_port, port_open, stop_pid, wait_until

DB = "vtwist_test"
APP_PASSWORD = "bench-Pa55"


class PassthroughProcess:
    """``python -m tests.support.passthrough`` in a child process."""

    def __init__(self, db: MariaDB, users: Path, profile: Path | None = None) -> None:
        self.port = free_port()
        env = dict(os.environ)
        # An inherited PYTHONPATH comes first: it can point the child at another tree.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH", ""), str(ROOT), str(ROOT / "src")) if p
        )
        if profile is not None:
            env["VTWIST_PASSTHROUGH_PROFILE"] = str(profile)
        args = [
            sys.executable,
            "-m",
            "tests.support.passthrough",
            f"--listen={self.port}",
            f"--backend-port={db.port}",
            f"--backend-user={db.user}",
            f"--backend-password={db.password}",
            f"--users={users}",
        ]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env)
        wait_until(lambda: port_open(LOOPBACK, self.port), 30, "passthrough", self.proc)

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        self.proc.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (None where /proc cannot tell)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _line(name: str, r: SysbenchResult, cpu_us: float | None = None) -> str:
    cpu = f"   cpu {cpu_us:>6.1f} us/query" if cpu_us is not None else ""
    return f"{name:<12} {r.qps:>10.0f} qps   p95 {r.p95_ms:>7.2f} ms   errors {r.errors}{cpu}"


def run(
    seconds: int,
    threads: int,
    table_size: int,
    profile: Path | None,
    rate: int = 0,
    rounds: int = 3,
) -> dict[str, float]:
    """Run the measurements; print them and return the median QPS by name."""
    base = Path(tempfile.mkdtemp(prefix="vtwist-bench-"))
    db = MariaDB(base / "mariadb").start()
    results: dict[str, list[SysbenchResult]] = {"direct": [], "passthrough": [], "forwarder": []}
    try:
        users = write_users_file(base / "users.toml", APP_PASSWORD)
        sysbench(
            "oltp_point_select",
            db.port,
            db.user,
            db.password,
            DB,
            threads=4,
            table_size=table_size,
            command="prepare",
        )

        def bench(name: str, port: int, user: str, password: str, pid: int = 0) -> None:
            before = cpu_seconds(pid) if pid else None
            r = sysbench(
                "oltp_point_select",
                port,
                user,
                password,
                DB,
                threads=threads,
                seconds=seconds,
                table_size=table_size,
                extra=(f"--rate={rate}",) if rate else (),
            )
            results[name].append(r)
            after = cpu_seconds(pid) if pid else None
            cpu_us = None
            if before is not None and after is not None and r.qps:
                cpu_us = (after - before) * 1e6 / (r.qps * seconds)
            print(_line(name, r, cpu_us), flush=True)

        bench("direct", db.port, db.user, db.password)
        passthrough = PassthroughProcess(db, users, profile)
        forwarder = Forwarder(db.port)
        try:
            for i in range(rounds):
                # Alternate which goes first: a drift of the machine then hits both.
                proxies = [
                    ("passthrough", passthrough.port, "app", APP_PASSWORD, passthrough.proc.pid),
                    ("forwarder", forwarder.port, db.user, db.password, forwarder.proc.pid),
                ]
                for args in proxies if i % 2 == 0 else proxies[::-1]:
                    bench(*args)
                pt, fw = results["passthrough"][-1].qps, results["forwarder"][-1].qps
                print(f"round {i + 1}: passthrough/forwarder {ratio(pt, fw)}", flush=True)
        finally:
            passthrough.stop()
            forwarder.stop()
    finally:
        db.destroy()
        shutil.rmtree(base, ignore_errors=True)
    ratios = [
        p.qps / f.qps
        for p, f in zip(results["passthrough"], results["forwarder"], strict=True)
        if f.qps
    ]
    qps = {name: statistics.median(r.qps for r in runs) for name, runs in results.items()}
    print(
        f"median of {rounds} round(s): passthrough/forwarder "
        f"{statistics.median(ratios):.2f}x (rounds {', '.join(f'{x:.2f}' for x in ratios)})   "
        f"passthrough/direct {ratio(qps['passthrough'], qps['direct'])}"
    )
    if profile is not None and profile.exists():
        print(f"\nhottest functions of the passthrough (cProfile, {profile}):")
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(30)
    return qps


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options and run once."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=15, help="per measurement")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--profile", type=Path, help="cProfile the passthrough into this file")
    p.add_argument(
        "--rate",
        type=int,
        default=0,
        help="cap sysbench at this many events/s (one query each here; 0: none)",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="passthrough/forwarder pairs, alternating order"
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    run(args.seconds, args.threads, args.table_size, args.profile, args.rate, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

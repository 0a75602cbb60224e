"""sysbench oltp_read_write through the passthrough: server-side prepared statements
(``--db-ps-mode=auto``: libmariadb binds parameter types once, later executes reuse them)
and plain text queries (``--db-ps-mode=disable``). Prepare, run and cleanup all go through
the passthrough; the run must commit transactions and exit cleanly.

Errors: sysbench stops at the first error that is not in ``--mysql-ignore-errors``; that
list is narrowed to the lock conflicts (1213 deadlock, 1205 lock wait timeout, 1020 record
changed) that four threads updating 1000 rows provoke on MariaDB itself (measured directly
against MariaDB: a few dozen deadlocks per 5 s run), so any other error, from MariaDB or
from vtwist, fails the test."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.integration.passthrough.harness import DB, PASSWORD, PassthroughCase

pytestmark = [pytest.mark.integration]

SECONDS = 5


class SysbenchTests(PassthroughCase):
    timeout = 180

    def _sysbench(self, ps_mode: str, command: str) -> str:
        args = [
            "sysbench",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            f"--mysql-port={self.port}",
            "--mysql-user=app",
            f"--mysql-password={PASSWORD}",
            f"--mysql-db={DB}",
            "--mysql-ssl=off",
            "--tables=1",
            "--table-size=1000",
            "--threads=4",
            f"--time={SECONDS}",
            f"--db-ps-mode={ps_mode}",
            "--mysql-ignore-errors=1213,1205,1020",
            "oltp_read_write",
            command,
        ]
        r = subprocess.run(args, capture_output=True, text=True, timeout=SECONDS + 90)
        if r.returncode != 0:
            raise AssertionError(
                f"sysbench {command} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
            )
        return r.stdout

    def _sysbench_test(self, ps_mode: str) -> Deferred[None]:
        if shutil.which("sysbench") is None:
            raise unittest.SkipTest("sysbench is not installed")
        return Deferred.fromCoroutine(self._oltp(ps_mode))

    async def _oltp(self, ps_mode: str) -> None:
        def run() -> str:
            # A table left by an interrupted earlier run would make `prepare` fail.
            self._sysbench(ps_mode, "cleanup")
            self._sysbench(ps_mode, "prepare")
            try:
                return self._sysbench(ps_mode, "run")
            finally:
                self._sysbench(ps_mode, "cleanup")

        out = await self.in_thread(run)
        transactions = re.search(r"transactions:\s+(\d+)", out)
        errors = re.search(r"ignored errors:\s+(\d+)", out)
        assert transactions is not None and errors is not None, out
        assert int(transactions.group(1)) > 0, out
        assert "FATAL" not in out, out
        # Lock conflicts only (see the module docstring): far fewer than transactions.
        assert int(errors.group(1)) < int(transactions.group(1)) // 10 + 1, out
        assert re.search(r"reconnects:\s+0\b", out), out
        # Every sysbench thread (and prepare/cleanup) went through its own session.
        assert self.pt.handlers.opened >= 4
        executes = self.metrics.commands["ComStmtExecute"]
        if ps_mode == "auto":  # server-side prepared statements, not client-side emulation
            assert executes > int(transactions.group(1)), self.metrics.commands
        else:
            assert executes == 0, self.metrics.commands

    def test_oltp_read_write_prepared_statements(self) -> Deferred[None]:
        return self._sysbench_test("auto")

    def test_oltp_read_write_text_protocol(self) -> Deferred[None]:
        return self._sysbench_test("disable")

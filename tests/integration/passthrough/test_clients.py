"""mysqlclient, mysql-connector-python and the ``mariadb`` CLI through the passthrough.

mysql-connector-python (pure Python) drives server-side prepared statements: every column
type as parameters (including NULL) and back as binary rows, re-executions, compared with
the same statements run directly against MariaDB; plus COM_STATISTICS, COM_RESET_CONNECTION
and COM_CHANGE_USER. The C extension runs the same test when it can be loaded.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.integration.client.alltypes import CREATE, NAMES, ROWS, SESSION, insert_sql
from tests.integration.passthrough.harness import DB, PASSWORD, PassthroughCase
from tests.support import fresh_python
from tests.support.passthrough import VERSION_COMMENT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]

MARIADB_CLI = "/usr/bin/mariadb"
SELECT_ONE = f"SELECT id, {', '.join(NAMES)} FROM all_types WHERE id = ?"


def _connector(port: int, use_pure: bool, **kw: Any) -> Any:
    import mysql.connector

    kw.setdefault("user", "app")
    kw.setdefault("password", PASSWORD)
    return mysql.connector.connect(
        host="127.0.0.1",
        port=port,
        database=DB,
        use_pure=use_pure,
        ssl_disabled=True,
        charset="utf8mb4",
        collation="utf8mb4_general_ci",
        autocommit=True,
        **kw,
    )


def _cext_sendable(value: Any) -> Any:
    """``value`` in a form the C extension sends correctly as a parameter.

    It reads a SET column as a Python set but cannot send one (a comma-separated string is
    the same value); and it writes garbage into a TIME parameter's hours, minutes and
    seconds (seen with 26.10: 12:34:56.000001 went out as 00:00:00 and 0xf0b000
    microseconds; MariaDB stores 00:00:00, the passthrough answers ERR 1210), so a TIME
    goes as its text."""
    if isinstance(value, set):
        return ",".join(sorted(value))
    if isinstance(value, timedelta):
        sign, value = ("-", -value) if value < timedelta(0) else ("", value)
        seconds = value.days * 86400 + value.seconds
        return (
            f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            f".{value.microseconds:06d}"
        )
    return value


def _connector_session(
    port: int, db_port: int, db_user: str, db_password: str, use_pure: bool
) -> dict[str, Any]:
    """mysql-connector-python through the passthrough on ``port`` and directly to MariaDB
    on ``db_port``: prepared statements of every type both ways; what each read."""
    out: dict[str, Any] = {}
    ref = _connector(db_port, use_pure, user=db_user, password=db_password)
    cnx = _connector(port, use_pure)
    try:
        for c in (ref, cnx):
            cur = c.cursor()
            for sql in SESSION:
                cur.execute(sql)
            cur.close()
        cur = ref.cursor()
        cur.execute("DROP TABLE IF EXISTS all_types")
        cur.execute(CREATE)
        for row_id in ROWS:
            cur.execute(insert_sql(row_id))
        cur.close()
        # Reference: the rows as binary-protocol values, read directly.
        rp = ref.cursor(prepared=True)
        expected = {}
        for row_id in ROWS:
            rp.execute(SELECT_ONE, (row_id,))
            expected[row_id] = rp.fetchall()
        rp.close()
        # Through the passthrough: the same reads (one statement, re-executed)...
        pp = cnx.cursor(prepared=True)
        got = {}
        for row_id in ROWS:
            pp.execute(SELECT_ONE, (row_id,))
            got[row_id] = pp.fetchall()
        out["reads"] = (expected, got)
        # ... and every value (NULLs included) sent back as parameters, through the
        # passthrough (ids + 10) and directly (ids + 20); MariaDB must store the same.
        marks = ", ".join(["?"] * (len(NAMES) + 1))
        for c, offset in ((cnx, 10), (ref, 20)):
            ins = c.cursor(prepared=True)
            for row_id in (1, 2, 4):
                (row,) = expected[row_id]
                values = row[1:] if use_pure else [_cext_sendable(v) for v in row[1:]]
                ins.execute(f"INSERT INTO all_types VALUES ({marks})", (row_id + offset, *values))
            ins.close()
        rp = ref.cursor(prepared=True)
        copies: dict[int, list[Any]] = {10: [], 20: []}
        for offset, rows in copies.items():
            for row_id in (1, 2, 4):
                rp.execute(SELECT_ONE, (row_id + offset,))
                rows += [r[1:] for r in rp.fetchall()]
        rp.close()
        out["copies"] = copies
        try:
            pp.execute("SELECT * FROM nosuch WHERE id = ?", (1,))
        except Exception as e:
            out["error"] = (e.errno, e.sqlstate)  # type: ignore[attr-defined]
        pp.close()
        cnx.ping()  # COM_PING (the C extension has no cmd_ping)
        out["stat"] = cnx.cmd_statistics()
        cur = cnx.cursor()
        cur.execute("set @kept = 1")
        cnx.cmd_reset_connection()
        cur.execute("select @kept, database()")
        out["after_reset"] = cur.fetchall()
        cur.execute("set @kept = 2")
        cur.close()
        cnx.cmd_change_user(username="app2", password=PASSWORD, database="vtwist_test")
        cur = cnx.cursor()
        cur.execute("select @kept, database()")
        out["after_change_user"] = cur.fetchall()
        cur.close()
    finally:
        cnx.close()
        ref.close()
    return out


class ClientTests(PassthroughCase):
    # -- mysqlclient (libmariadb) -----------------------------------------------------------

    def test_mysqlclient(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._mysqlclient())

    async def _mysqlclient(self) -> None:
        import MySQLdb

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = MySQLdb.connect(
                host="127.0.0.1", port=self.port, user="app", password=PASSWORD, database=DB
            )
            try:
                cur = conn.cursor()
                cur.execute("select 1, 'a'")
                out["one"] = cur.fetchall()
                cur.execute("select 'a'; select 'b', 2")  # multi-statements: on by default
                first = cur.fetchall()
                cur.nextset()
                out["multi"] = (first, cur.fetchall())
                try:
                    cur.execute("select * from nosuch")
                except MySQLdb.ProgrammingError as e:
                    out["error"] = e.args
                cur.close()
                conn.autocommit(True)
                out["autocommit"] = conn.get_autocommit()
                conn.ping()
                conn.select_db("vtwist_test")
                cur = conn.cursor()
                cur.execute("select database(), @@version_comment")
                out["db"] = cur.fetchall()
                cur.close()
                out["stat"] = conn.stat()
                out["thread_id"] = conn.thread_id()
            finally:
                conn.close()
            tls = MySQLdb.connect(
                host="127.0.0.1", port=self.port, user="app", password=PASSWORD, ssl={"ca": self.ca}
            )
            try:
                cur = tls.cursor()
                cur.execute("select @@version_comment limit 1")
                out["tls"] = cur.fetchall()
            finally:
                tls.close()
            return out

        out = await self.in_thread(client)
        assert out["one"] == ((1, "a"),)
        assert out["multi"] == ((("a",),), (("b", 2),))
        assert out["error"] == (1146, "Table 'vtwist_pt.nosuch' doesn't exist")
        assert out["autocommit"] is True
        # Only the exact `select @@version_comment limit 1` is the passthrough's own.
        assert out["db"][0][0] == "vtwist_test"
        assert out["db"][0][1] != VERSION_COMMENT.decode()
        assert out["stat"].startswith("Uptime:")
        assert out["tls"] == ((VERSION_COMMENT.decode(),),)
        logins = list(self.pt.handlers.logins)
        assert [i.secure for i in logins] == [False, True]
        assert logins[0].connection_id == out["thread_id"]

    # -- mysql-connector-python --------------------------------------------------------------

    def test_connector_pure(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._connector(use_pure=True))

    def test_connector_c_extension(self) -> Deferred[None]:
        error = fresh_python.c_extension_error()
        if error is not None:
            raise unittest.SkipTest(f"mysql-connector C extension unavailable: {error}")
        return Deferred.fromCoroutine(self._connector(use_pure=False))

    async def _connector(self, use_pure: bool) -> None:
        db = self.db
        args = (self.port, db.port, db.user, db.password, use_pure)
        if use_pure:
            out = await self.in_thread(lambda: _connector_session(*args))
        else:  # in a new process: see tests.support.fresh_python
            out = await self.in_thread(lambda: fresh_python.call(_connector_session, *args))
        expected, got = out["reads"]
        assert got == expected
        assert all(len(v) == 1 for v in got.values())
        through, direct = out["copies"][10], out["copies"][20]
        assert len(through) == len(direct) == 3
        for copy, original in zip(through, direct, strict=True):
            for name, a, b in zip(NAMES, copy, original, strict=True):
                assert a == b, (name, a, b)
        assert out["error"] == (1146, "42S02")
        assert "Uptime" in str(out["stat"])
        assert out["after_reset"] == [(None, DB)]
        assert out["after_change_user"] == [(None, "vtwist_test")]
        assert [i.user for i in self.pt.handlers.logins] == ["app", "app2"]

    # -- the mariadb CLI ---------------------------------------------------------------------

    def _cli(self, *args: str, stdin: str | None = None) -> tuple[str, str, int]:
        base = [
            MARIADB_CLI,
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{self.port}",
            "--protocol=TCP",
            "-uapp",
            f"-p{PASSWORD}",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=10",
        ]
        r = subprocess.run(
            [*base, *args], input=stdin, capture_output=True, text=True, timeout=60, env={}
        )
        return r.stdout, r.stderr, r.returncode

    def test_mariadb_cli(self) -> Deferred[None]:
        if not Path(MARIADB_CLI).exists():
            raise unittest.SkipTest("the mariadb client is not installed")
        return Deferred.fromCoroutine(self._mariadb_cli())

    async def _mariadb_cli(self) -> None:
        def run() -> list[tuple[str, str, int]]:
            script = (
                "select @@version_comment limit 1;\n"
                f"USE {DB}\n"
                "select database();\n"
                "select count(*) from seq_1_to_1000;\n"
                "select * from nosuch;\n"
            )
            return [
                self._cli(
                    "--skip-ssl",
                    "-e",
                    "select @@version_comment limit 1; USE vtwist_test; "
                    "select database(); select 1",
                ),
                self._cli("--skip-ssl", stdin=script),
                self._cli("--ssl", f"--ssl-ca={self.ca}", "-e", "select @@version_comment limit 1"),
            ]

        (out1, err1, code1), (out2, err2, code2), (out3, err3, code3) = await self.in_thread(run)
        comment = VERSION_COMMENT.decode()
        assert (out1, code1) == (f"{comment}\nvtwist_test\n1\n", 0), err1
        assert out2 == f"{comment}\n{DB}\n1000\n", err2
        assert code2 == 1 and "ERROR 1146 (42S02)" in err2
        assert (out3, code3) == (f"{comment}\n", 0), err3
        assert [i.secure for i in self.pt.handlers.logins] == [False, False, True]

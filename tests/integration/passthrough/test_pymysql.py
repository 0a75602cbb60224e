"""PyMySQL through the passthrough (vtwist server -> vtwist client -> MariaDB), plain and TLS.

Results are compared with the same statements run by PyMySQL directly against MariaDB:
every column type (text protocol, PyMySQL's conversions), client-side interpolated
parameters, multi-statements, a result over 16 MiB, errors, the autocommit and
in-transaction flags, and caching_sha2_password by RSA and over TLS.
"""

from __future__ import annotations

import time
from typing import Any

import pymysql
import pymysql.cursors
import pytest
from pymysql.constants import CLIENT, SERVER_STATUS
from twisted.internet.defer import Deferred

from tests.integration.client.alltypes import CREATE, NAMES, ROWS, SESSION, insert_sql
from tests.integration.passthrough.harness import PassthroughCase, direct
from tests.support.passthrough import VERSION_COMMENT

pytestmark = [
    pytest.mark.integration,
    # Twisted's TLS options still hand pyOpenSSL objects to pyOpenSSL: not ours to fix.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]

SELECT_ALL = f"SELECT id, {', '.join(NAMES)} FROM all_types ORDER BY id"


def _session(conn: pymysql.connections.Connection[Any]) -> None:
    with conn.cursor() as cur:
        for sql in SESSION:
            cur.execute(sql)


def _in_trans(conn: pymysql.connections.Connection[Any]) -> bool:
    """The IN_TRANS flag of the last OK (PyMySQL's stubs lack ``server_status``)."""
    status: int = getattr(conn, "server_status")  # noqa: B009
    return bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)


class PyMySQLTests(PassthroughCase):
    def test_queries_errors_and_session_flags(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._queries())

    async def _queries(self) -> None:
        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = self.pymysql(database="vtwist_pt", autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("select 1, 'h\u00e9llo', NULL, 2.5")
                    out["one"] = cur.fetchall()
                    cur.execute("select @@version_comment limit 1")
                    out["comment"] = cur.fetchall()
                    cur.execute("select database()")
                    out["db"] = cur.fetchall()
                    for sql, key in (("selec 1", "syntax"), ("select * from nosuch", "table")):
                        try:
                            cur.execute(sql)
                        except pymysql.err.ProgrammingError as e:
                            out[key] = (*e.args, e.sqlstate)
                    cur.execute("select 'still usable'")
                    out["after"] = cur.fetchall()
                    out["autocommit"] = conn.get_autocommit()
                    conn.autocommit(False)
                    out["autocommit_off"] = conn.get_autocommit()
                    conn.begin()
                    out["in_trans"] = _in_trans(conn)
                    conn.rollback()
                    out["after_rollback"] = _in_trans(conn)
                conn.ping(reconnect=False)
                conn.select_db("vtwist_test")
                with conn.cursor() as cur:
                    cur.execute("select database()")
                    out["db2"] = cur.fetchall()
                out["version"] = conn.get_server_info()  # type: ignore[no-untyped-call]
            finally:
                conn.close()
            return out

        out = await self.in_thread(client)
        assert out["one"] == ((1, "h\u00e9llo", None, pymysql_decimal("2.5")),)
        assert out["comment"] == ((VERSION_COMMENT.decode(),),)
        assert out["db"] == (("vtwist_pt",),)
        assert out["syntax"][0] == 1064 and "near 'selec 1'" in out["syntax"][1]
        assert out["syntax"][2] == "42000"
        assert out["table"] == (1146, "Table 'vtwist_pt.nosuch' doesn't exist", "42S02")
        assert out["after"] == (("still usable",),)
        assert out["autocommit"] is True and out["autocommit_off"] is False
        assert out["in_trans"] is True and out["after_rollback"] is False
        assert out["db2"] == (("vtwist_test",),)
        assert out["version"] == self.pt.server.server_version

    def test_every_type_matches_direct(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._types())

    async def _types(self) -> None:
        def client() -> tuple[Any, Any, Any, Any]:
            conn = self.pymysql(database="vtwist_pt", autocommit=True)
            ref = direct(self.db, autocommit=True)
            try:
                _session(conn)
                _session(ref)
                with conn.cursor() as cur:
                    cur.execute("DROP TABLE IF EXISTS all_types")
                    cur.execute(CREATE)
                    for row_id in ROWS:
                        cur.execute(insert_sql(row_id))
                with ref.cursor() as rcur:
                    rcur.execute(SELECT_ALL)
                    expected = rcur.fetchall()
                with conn.cursor() as cur:
                    cur.execute(SELECT_ALL)
                    got = cur.fetchall()
                    # Client-side interpolated parameters, values read back from MariaDB.
                    for row in expected:
                        if row[0] in (1, 2, 4):
                            marks = ", ".join(["%s"] * len(row))
                            cur.execute(
                                f"INSERT INTO all_types VALUES ({marks})", (row[0] + 10, *row[1:])
                            )
                with ref.cursor() as rcur:
                    rcur.execute(f"{SELECT_ALL.replace('ORDER BY', 'WHERE id > 10 ORDER BY')}")
                    copies = rcur.fetchall()
                return expected, got, copies, [r for r in expected if r[0] in (1, 2, 4)]
            finally:
                conn.close()
                ref.close()

        expected, got, copies, originals = await self.in_thread(client)
        assert len(expected) == len(ROWS)
        assert got == expected
        assert [c[1:] for c in copies] == [o[1:] for o in originals]

    def test_multi_statements(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._multi())

    async def _multi(self) -> None:
        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = self.pymysql(client_flag=CLIENT.MULTI_STATEMENTS)
            try:
                with conn.cursor() as cur:
                    cur.execute("select 1; set @a = 5; select @a, 'x'")
                    out["sets"] = [cur.fetchall()]
                    while cur.nextset():
                        out["sets"].append(cur.fetchall())
                    cur.execute("select 1; selec 2")
                    out["first"] = cur.fetchall()
                    try:
                        cur.nextset()
                    except pymysql.err.ProgrammingError as e:
                        out["second_fails"] = (e.args[0], e.sqlstate)
                    cur.execute("select 'ok'")
                    out["after"] = cur.fetchall()
            finally:
                conn.close()
            single = self.pymysql()
            try:
                with single.cursor() as cur:
                    try:
                        cur.execute("select 1; select 2")
                    except pymysql.err.ProgrammingError as e:
                        out["refused"] = e.args
            finally:
                single.close()
            return out

        out = await self.in_thread(client)
        assert [tuple(s) for s in out["sets"]] == [((1,),), (), ((5, "x"),)]
        assert out["first"] == ((1,),)
        assert out["second_fails"] == (1064, "42000")
        assert out["after"] == (("ok",),)
        assert out["refused"][0] == 1064
        assert "CLIENT_MULTI_STATEMENTS" in out["refused"][1]

    def test_results_over_16_mib_with_back_pressure(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._big())

    async def _big(self) -> None:
        big = 17 * 1024 * 1024 + 3  # one value (one row) longer than a packet can be

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = self.pymysql(database="vtwist_pt", cursorclass=pymysql.cursors.SSCursor)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"select repeat('v', {big}) as v, 'tail'")
                    ((value, tail),) = cur.fetchall()
                    out["single"] = (len(value), value[:1], tail)
                    # ~20 MB in many rows; a slow reader must make the backend pause.
                    cur.execute("select seq, repeat('r', 1000) from seq_1_to_20000")
                    time.sleep(0.5)
                    count, ordered = 0, True
                    for n, pad in cur:
                        count += 1
                        ordered = ordered and n == count and len(pad) == 1000
                    out["many"] = (count, ordered)
                    cur.execute("select 'after'")
                    out["after"] = cur.fetchall()
            finally:
                conn.close()
            return out

        out = await self.in_thread(client)
        assert out["single"] == (big, "v", "tail")
        assert out["many"] == (20000, True)
        assert out["after"] == [("after",)]
        assert self.pt.handlers.pauses > 0

    def test_caching_sha2_by_rsa_then_fast_path(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._sha2_rsa())

    async def _sha2_rsa(self) -> None:
        def client() -> list[Any]:
            results: list[Any] = []
            for _ in range(2):  # full authentication with the RSA key, then the fast path
                conn = self.pymysql(user="sha2")
                with conn.cursor() as cur:
                    cur.execute("select 'sha2 ok'")
                    results.append(cur.fetchall())
                conn.close()
            try:
                self.pymysql(user="sha2", password="wrong")
            except pymysql.err.OperationalError as e:
                results.append(e.args[0])
            return results

        assert await self.in_thread(client) == [(("sha2 ok",),), (("sha2 ok",),), 1045]
        assert [i.auth_plugin for i in self.pt.handlers.logins] == ["caching_sha2_password"] * 2
        assert not any(i.secure for i in self.pt.handlers.logins)

    def test_tls(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._tls())

    async def _tls(self) -> None:
        def client() -> list[Any]:
            results: list[Any] = []
            for user in ("app", "sha2"):
                conn = self.pymysql(user=user, ssl={"ca": self.ca})
                with conn.cursor() as cur:
                    cur.execute("select @@version_comment limit 1")
                    results.append(cur.fetchall())
                    cur.execute("select repeat('t', 100000)")
                    results.append(len(cur.fetchall()[0][0]))
                conn.close()
            return results

        comment = ((VERSION_COMMENT.decode(),),)
        assert await self.in_thread(client) == [comment, 100000, comment, 100000]
        logins = list(self.pt.handlers.logins)
        assert [(i.user, i.secure) for i in logins] == [("app", True), ("sha2", True)]


def pymysql_decimal(text: str) -> Any:
    """What PyMySQL makes of a DECIMAL literal's column."""
    from decimal import Decimal

    return Decimal(text)

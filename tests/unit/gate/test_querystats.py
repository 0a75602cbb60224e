"""Query digests, the bounded statistics by digest, recent errors, and /debug/queryz."""

from __future__ import annotations

import json

import pytest
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from tests.unit.gate.fakes import Cluster, RecordingSink, finished, tablet
from vtwist.gate.gate import GateSettings, StatsSettings
from vtwist.gate.querystats import DIGEST_PREFIX, QueryStats, query_digest
from vtwist.gate.querystats_page import QueryzResource, digest_id
from vtwist.httpstatus import status_resource
from vtwist.protocols.mysql.server_types import Statement


@pytest.mark.parametrize(
    ("sql", "digest"),
    [
        (b"SELECT c FROM sbtest1 WHERE id=5031", b"SELECT c FROM sbtest1 WHERE id=?"),
        (
            b"select  a\n from t where b = 'x''y' and c = \"z\";",
            b"select a from t where b = ? and c = ?",
        ),
        (
            b"SELECT 1.5, -2, 3e10, .5, 0x1F, X'0a', b'01' FROM t2",
            b"SELECT ?, -?, ?, ?, ?, ?, ? FROM t2",
        ),
        (
            b"select * from t where id in (1, 2,3) and k IN ('a')",
            b"select * from t where id in (...) and k IN (...)",
        ),
        (
            b"INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b'),(3,'c')",
            b"INSERT INTO t (a, b) VALUES (?, ?), ...",
        ),
        (
            b"/* app:42 */ SELECT `t 1`.x1 FROM `t 1` WHERE y = 3 -- end",
            b"SELECT `t 1`.x1 FROM `t 1` WHERE y = ?",
        ),
        (b"select 'a -- b', '# c', 'd /* e */' # f", b"select ?, ?, ?"),
        (b'select `it\'s 1`, "x`" from t', b"select `it's 1`, ? from t"),
        (b"SELECT _binary X'00ff', 'a\\'b'", b"SELECT _binary ?, ?"),
        (b"SELECT c FROM sbtest1 WHERE id=?", b"SELECT c FROM sbtest1 WHERE id=?"),
        (b"commit", b"commit"),
        (
            b"INSERT INTO t VALUES (1,NULL,-2),(3,DEFAULT,true)",
            b"INSERT INTO t VALUES (?,NULL,-?), ...",
        ),
        (b"select a from t where b in (1, NULL)", b"select a from t where b in (...)"),
    ],
)
def test_query_digest(sql: bytes, digest: bytes) -> None:
    assert query_digest(sql) == digest


def test_long_statements_are_digested_from_a_prefix_without_their_values() -> None:
    def rows(n: int) -> bytes:
        return b"INSERT INTO t VALUES " + b",".join(
            b"(%d,'name %d',NULL)" % (i, i) for i in range(n)
        )

    # Cut anywhere in its rows, a long multi-row INSERT has one digest.
    digests = {query_digest(rows(n)) for n in (5000, 5001, 7777, 12345)}
    assert digests == {b"INSERT INTO t VALUES (?,?,NULL), ...,(...) ..."}
    assert len(rows(5000)) > DIGEST_PREFIX
    # A string cut short is a value too, and a list left open is folded.
    secret = b"SELECT 'x" + b"s" * DIGEST_PREFIX + b"' FROM t"
    assert query_digest(secret) == b"SELECT ? ..."
    long_in = b"SELECT a FROM t WHERE id IN (" + b",".join(b"%d" % i for i in range(20000))
    assert query_digest(long_in + b")") == b"SELECT a FROM t WHERE id IN (...) ..."


def test_a_prepared_statement_and_its_text_share_a_digest() -> None:
    assert query_digest(b"select a from t where id = ?") == query_digest(
        b"select a from t where id = 42"
    )


def stats(**kw: int) -> QueryStats:
    return QueryStats(
        max_digests=kw.get("max_digests", 10),
        max_digest_length=kw.get("max_digest_length", 1024),
        recent_errors=kw.get("recent_errors", 5),
    )


def test_record_counts_times_rows_and_failures() -> None:
    q = stats()
    d = q.digest(b"select a from t where id = 1")
    q.record("app", "commerce", d, 0.002, 100.0, rows_sent=1)
    q.record(
        "app", "commerce", q.digest(b"select a from t where id = 2"), 0.004, 101.0, rows_sent=3
    )
    q.record("app", "commerce", d, 0.009, 102.0, failed=True)
    q.record("other", "commerce", d, 0.001, 103.0)
    assert len(q) == 2 and q.since == 100.0
    [e, o] = q.top("count")
    assert (e.user, e.database, e.digest) == ("app", "commerce", b"select a from t where id = ?")
    assert (e.count, e.errors, e.rows_sent, e.rows_affected) == (3, 1, 4, 0)
    assert (e.min, e.max, e.first_seen, e.last_seen) == (0.002, 0.009, 100.0, 102.0)
    assert e.total == pytest.approx(0.015) and e.mean == pytest.approx(0.005)
    assert o.user == "other" and o.count == 1
    assert [x.user for x in q.top("last_seen")] == ["other", "app"]
    assert len(q.top("total", limit=1)) == 1
    with pytest.raises(ValueError, match="unknown order"):
        q.top("digest")


def test_the_least_recently_seen_digest_makes_room() -> None:
    q = stats(max_digests=2)
    for n, sql in enumerate([b"select 1 from a", b"select 1 from b", b"select 1 from a"]):
        q.record("u", "", q.digest(sql), 0.001, float(n))
    q.record("u", "", q.digest(b"select 1 from c"), 0.001, 9.0)  # drops b, seen before a
    assert sorted(e.digest for e in q.top()) == [b"select ? from a", b"select ? from c"]
    assert q.evicted == 1


def test_long_digests_are_cut_and_errors_keep_the_latest() -> None:
    q = stats(max_digest_length=20, recent_errors=2)
    long = b"select " + b", ".join(b"c%d" % i for i in range(50)) + b" from t"
    assert q.digest(long) == long[:17] + b"..."
    for code in (1064, 1146, 1290):
        q.error(
            float(code), "app", "commerce", code, f"error {code}", b"select x from t where id = 5"
        )
    assert [(e.code, e.message) for e in q.recent_errors()] == [
        (1290, "error 1290"),
        (1146, "error 1146"),
    ]
    assert q.recent_errors()[0].digest == b"select x from t w..."  # a digest, cut
    q.reset()
    assert len(q) == 0 and q.recent_errors() == [] and q.since is None
    off = stats(recent_errors=0)
    off.error(1.0, "app", "", 1064, "x", b"x")
    assert off.recent_errors() == []


def cluster(**stats_kw: object) -> Cluster:
    settings = GateSettings(stats=StatsSettings(**stats_kw))  # type: ignore[arg-type]
    c = Cluster(settings=settings)
    c.add(tablet("zone1-100", ttype="primary"), tablet("zone1-101", ttype="replica"))
    return c


def test_sessions_record_each_statement_by_digest() -> None:
    c = cluster()
    s = c.session(database="commerce")
    for n in range(3):
        c.run(s, f"select v from t where id = {n}")
    c.run(s, "insert into t values (1)")
    assert c.run(s, "error 1146").error_code == 1146
    c.run(s, "use commerce@replica")
    c.run(s, "select v from t where id = 9")
    assert c.run(s, "insert into t values (2)").error_code == 1290  # refused by the gate
    by_digest = {(e.database, e.digest): e for e in c.gate.query_stats.top()}
    read = by_digest[("commerce", b"select v from t where id = ?")]
    assert (read.count, read.rows_sent, read.errors) == (3, 3, 0)
    write = by_digest[("commerce", b"insert into t values (?)")]
    assert (write.count, write.rows_affected) == (1, 1)
    assert by_digest[("commerce", b"error ?")].errors == 1
    assert by_digest[("commerce@replica", b"select v from t where id = ?")].count == 1
    assert by_digest[("commerce@replica", b"insert into t values (?)")].errors == 1
    errors = c.gate.query_stats.recent_errors()
    assert [(e.code, e.database, e.digest) for e in errors] == [
        (1290, "commerce@replica", b"insert into t values (?)"),
        (1146, "commerce", b"error ?"),
    ]


def test_executes_count_under_their_prepared_texts_digest() -> None:
    c = cluster()
    s = c.session(database="commerce")
    sql = b"select a from t where id = ?"
    info = c.wait(s.prepare(sql))
    for value in (1, "x'y", None):
        sink = RecordingSink()
        c.wait(finished(s.execute(Statement(1, sql, info), [value], sink, False), sink))
    c.run(s, "select a from t where id = 5")
    [entry] = [e for e in c.gate.query_stats.top() if e.digest == sql]
    assert entry.count == 4


def test_with_query_digests_off_only_errors_are_kept() -> None:
    c = cluster(query_digests=False)
    s = c.session(database="commerce")
    c.run(s, "select 1")
    c.run(s, "error 1146")
    assert len(c.gate.query_stats) == 0
    assert [e.code for e in c.gate.query_stats.recent_errors()] == [1146]


def request(root: object, path: str, method: bytes = b"GET", **args: str) -> tuple[int, bytes]:
    req = DummyRequest(path.lstrip("/").encode().split(b"/"))
    req.method = method
    req.args = {k.encode(): [v.encode()] for k, v in args.items()}
    resource = getChildForRequest(root, req)  # type: ignore[no-untyped-call]
    body = resource.render(req)
    assert isinstance(body, bytes)
    return (req.responseCode or 200), body


def page_root(q: QueryStats) -> object:
    from prometheus_client import CollectorRegistry

    from vtwist.httpstatus import Health

    return status_resource(
        title="vtgate",
        registry=CollectorRegistry(),
        health=lambda: Health(True),
        extra={"queryz": QueryzResource(q, True)},
    )


def test_queryz_page_json_and_reset() -> None:
    q = stats()
    evil = b"select '<script>' from `<b>x</b>` where id = 1"
    q.record("app", "commerce", q.digest(evil), 0.25, 1_800_000_000.0, rows_sent=2)
    q.record("app", "commerce", q.digest(b"select 2"), 0.5, 1_800_000_001.0)
    q.error(1_800_000_002.0, "app", "commerce", 1064, "near '<i>'", b"bad <sql>")
    root = page_root(q)
    code, body = request(root, "/debug/queryz")
    assert code == 200
    html = body.decode()
    assert "<script>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "&lt;i&gt;" in html
    assert html.index("select ?</td>") < html.index("`&lt;b&gt;x&lt;/b&gt;`")  # total time order
    assert digest_id(b"select ?") in html and "2027-01-15 08:00:01Z" in html
    code, body = request(root, "/debug/queryz", format="json", order="count", limit="1")
    data = json.loads(body)
    assert data["digests_kept"] == 2 and len(data["digests"]) == 1
    assert data["digests"][0]["digest"] == "select ? from `<b>x</b>` where id = ?"
    assert data["digests"][0]["rows_sent"] == 2
    assert data["recent_errors"][0]["code"] == 1064
    assert request(root, "/debug/queryz", order="nope")[0] == 400
    assert request(root, "/debug/queryz", limit="0")[0] == 400
    assert request(root, "/debug/queryz/reset")[0] == 404  # GET: nothing happens
    assert len(q) == 2
    assert request(root, "/debug/queryz/reset", method=b"POST")[0] == 204
    assert len(q) == 0 and q.recent_errors() == []

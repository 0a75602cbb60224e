"""The HTTP status resources, driven with Twisted's DummyRequest (no sockets)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, Counter
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import CDATA, XMLString, tags
from twisted.web.test.requesthelper import DummyRequest

from vtwist.httpstatus import (
    Health,
    KeyValues,
    Section,
    Table,
    render_status_page,
    status_resource,
    text,
)

EVIL = "<script>alert('x')</script>"


class Role:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter("queries", "Queries.", ["kind"], registry=self.registry)
        self.health = Health(True)

    def sections(self) -> Iterable[Section]:
        return [
            KeyValues("Pool", [("size", 4), ("note", EVIL)]),
            Table("Recent queries", ["id", "sql"], [[1, f"select '{EVIL}'"], [2, b"<b>bytes</b>"]]),
        ]

    def root(self, *extra_sections: object) -> Resource:
        return status_resource(
            title="vttablet zone1-1",
            registry=self.registry,
            health=lambda: self.health,
            sections=[self.sections, *extra_sections],  # type: ignore[list-item]
        )


def get(root: Resource, path: str, accept: str | None = None) -> tuple[int, DummyRequest, bytes]:
    request = DummyRequest(path.lstrip("/").encode().split(b"/"))
    if accept:
        request.requestHeaders.setRawHeaders(b"accept", [accept.encode()])
    resource = getChildForRequest(root, request)  # type: ignore[no-untyped-call]  # Twisted: unannotated
    body = resource.render(request)
    if body == NOT_DONE_YET:
        body = b"".join(request.written)
    assert isinstance(body, bytes)
    return (request.responseCode or 200), request, body


def header(request: DummyRequest, name: str) -> str:
    values = request.responseHeaders.getRawHeaders(name)
    assert values, name
    return values[0].decode() if isinstance(values[0], bytes) else values[0]


def test_metrics_from_the_given_registry_only() -> None:
    a, b = Role(), Role()
    a.queries.labels(kind="select").inc(5)
    code, req, body = get(a.root(), "/metrics")
    assert code == 200
    assert b'queries_total{kind="select"} 5.0' in body
    assert header(req, "content-type").startswith("text/plain")
    # Isolated registries: b saw nothing of a, and the global registry is not served.
    _, _, body_b = get(b.root(), "/metrics")
    assert b'kind="select"' not in body_b
    assert b"python_gc_objects_collected_total" not in body


def test_metrics_openmetrics_negotiation() -> None:
    role = Role()
    role.queries.labels(kind="x").inc()
    _, req, body = get(
        role.root(), "/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert header(req, "content-type").startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_health_ok() -> None:
    code, req, body = get(Role().root(), "/debug/health")
    assert (code, body) == (200, b"ok\n")
    assert header(req, "content-type") == "text/plain; charset=utf-8"


def test_health_not_serving_is_503_with_reason() -> None:
    role = Role()
    role.health = Health(False, "mysqld unreachable: <connection refused>")
    code, req, body = get(role.root(), "/debug/health")
    assert code == 503
    assert body == b"not serving: mysqld unreachable: <connection refused>\n"
    assert header(req, "x-content-type-options") == "nosniff"


def test_health_callable_failure_is_503() -> None:
    def broken() -> Health:
        raise RuntimeError("probe crashed")

    root = status_resource(title="t", registry=CollectorRegistry(), health=broken)
    code, _, body = get(root, "/debug/health")
    assert code == 503 and b"probe crashed" in body


def test_status_page_escapes_every_value() -> None:
    role = Role()
    role.health = Health(False, EVIL)
    code, req, body = get(role.root(), "/debug/status")
    page = body.decode()
    assert code == 200
    assert "<script>" not in page
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in page
    assert "&lt;b&gt;bytes&lt;/b&gt;" in page
    assert "<h2>Recent queries</h2>" in page and "<h1>vttablet zone1-1</h1>" in page
    assert "not serving" in page
    csp = header(req, "content-security-policy")
    assert "default-src 'none'" in csp and "script" not in csp
    assert header(req, "content-type") == "text/html; charset=utf-8"


def test_markup_objects_are_not_rendered_as_markup() -> None:
    """A Tag, CDATA or loaded XML smuggled in as a value is shown as text, never as HTML."""
    img = XMLString('<img src="x" onerror="alert(1)"/>').load()[0]
    sections: list[Section] = [
        KeyValues(EVIL, [(tags.script("alert(1)"), img)]),
        Table("t", [CDATA("<i>col</i>")], [[tags.b("cell")]]),
    ]

    class Sneaky(str):
        def __str__(self) -> str:
            return "<script>bad()</script>"

    sections.append(KeyValues("s", [("k", Sneaky("<u>x</u>"))]))
    page = render_status_page(EVIL, Health(True), sections).decode()
    assert "<script" not in page and "<img" not in page and "<i>" not in page
    assert "<u>" not in page and "<b>cell" not in page and "CDATA[" not in page
    assert "&lt;i&gt;col&lt;/i&gt;" in page
    assert "&lt;u&gt;x&lt;/u&gt;" in page
    assert page.startswith("<!DOCTYPE html>\n<html>")


def test_text_conversions() -> None:
    assert text(None) == "" and text(True) == "true" and text(1.23456789) == "1.23457"
    assert text(b"\xff<") == "\\xff<" and text(3) == "3"
    assert type(text(tags.b("x"))) is str


def test_broken_section_source_does_not_hide_the_page() -> None:
    def broken() -> Iterable[Section]:
        raise ValueError(EVIL)

    def wrong_type() -> Iterable[Section]:
        return ["not a section"]  # type: ignore[list-item]

    code, _, body = get(Role().root(broken, wrong_type), "/debug/status")
    page = body.decode()
    assert code == 200
    assert "<h2>Pool</h2>" in page and "<h2>Error</h2>" in page
    assert "ValueError(\"&lt;script&gt;alert('x')&lt;/script&gt;\")" in page
    assert "<script>" not in page
    assert "not a section" in page


def test_empty_table_shows_none() -> None:
    page = render_status_page("t", Health(True), [Table("Tablets", ["alias"], [])]).decode()
    assert "(none)" in page


@pytest.mark.parametrize("path", ["/", "/debug", "/debug/"])
def test_index_pages_link_everything(path: str) -> None:
    code, _, body = get(Role().root(), path)
    assert code == 200
    assert b'href="/debug/health"' in body and b'href="/debug/status"' in body


@pytest.mark.parametrize("path", ["/nope", f"/debug/{EVIL}"])
def test_unknown_path_is_404(path: str) -> None:
    code, _, body = get(Role().root(), path)
    assert code == 404 and b"<script>" not in body


def test_extra_debug_pages() -> None:
    class Vars(Resource):
        isLeaf = True

        def render_GET(self, request: object) -> bytes:
            return b"{}"

    root = status_resource(
        title="t",
        registry=CollectorRegistry(),
        health=lambda: Health(True),
        extra={"vars": Vars()},  # type: ignore[no-untyped-call]  # Twisted: Resource.__init__ unannotated
    )
    assert get(root, "/debug/vars")[2] == b"{}"
    assert b'href="/debug/vars"' in get(root, "/")[2]

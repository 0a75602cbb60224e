# twisted.application.service and twisted.web (Resource, Request, Site) are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The HTTP status service every role runs: ``/metrics``, ``/debug/health``, ``/debug/status``.

- ``/metrics``: the role's own ``prometheus_client.CollectorRegistry`` (never the global
  one, so tests get isolated registries), text or OpenMetrics by the ``Accept`` header.
- ``/debug/health``: ``200 ok`` when the role's health callable says serving, else ``503``
  with the reason, as text/plain.
- ``/debug/status``: an HTML page a person can read, built from ``KeyValues`` and ``Table``
  sections the role's callables return on each request.

Escaping (CVE-2024-53257, where Vitess rendered query text as HTML): the page is built with
``twisted.web.template`` tags, and every value a role supplies is first turned into a plain
``str`` by ``text()`` and only then handed to a tag, so the flattener escapes it. There is
no way to pass markup in: a ``Tag``, ``raw`` or any other object becomes its ``str()``,
escaped. The Content-Security-Policy forbids scripts as a second line of defence.

Access logging is off: probes and scrapes every few seconds would drown the role's log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import pages, server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.template import Tag, flattenString, tags

from vtwist.service import ListenerService

log = Logger()

#: The default HTTP listener of a role when its config says nothing else: loopback only.
DEFAULT_LOOPBACK_INTERFACE: Final = "127.0.0.1"

_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_STYLE: Final = (
    "body{font-family:sans-serif;margin:1.5em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #bbb;padding:2px 8px;text-align:left;vertical-align:top}"
    "th{background:#eee}td{font-family:monospace;white-space:pre-wrap}"
    ".serving{color:#060}.notserving{color:#a00}"
)


@dataclass(frozen=True)
class Health:
    """What a role's health callable returns: serving or not, and why not."""

    serving: bool
    reason: str = ""


@dataclass(frozen=True)
class KeyValues:
    """A status section of ``name: value`` rows under a title."""

    title: str
    rows: Sequence[tuple[object, object]]


@dataclass(frozen=True)
class Table:
    """A status section as a table: column headings and rows of cells."""

    title: str
    columns: Sequence[object]
    rows: Sequence[Sequence[object]]


Section = KeyValues | Table
#: Returns the role's health; called on each /debug/health and /debug/status request.
HealthCheck = Callable[[], Health]
#: Returns some sections of the status page; called on each /debug/status request.
SectionSource = Callable[[], Iterable[Section]]


def text(value: object) -> str:
    """The text shown for a value. Always a plain ``str``, so the page escapes it.

    None is empty, booleans are ``true``/``false``, bytes are decoded (bad bytes shown as
    escapes), floats keep at most 6 significant digits, anything else is its ``str()``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    # A str subclass (some "safe markup" type) is reduced to a plain str: nothing skips escaping.
    return str.__str__(value) if isinstance(value, str) else str(value)


def _section_tag(section: Section) -> Tag:
    if isinstance(section, KeyValues):
        body = [tags.tr(tags.th(text(k)), tags.td(text(v))) for k, v in section.rows]
        return tags.section(tags.h2(text(section.title)), tags.table(*body))
    head = tags.tr(*[tags.th(text(c)) for c in section.columns])
    rows = [tags.tr(*[tags.td(text(cell)) for cell in row]) for row in section.rows]
    if not section.rows:
        rows = [tags.tr(tags.td("(none)", colspan=str(max(1, len(section.columns)))))]
    return tags.section(tags.h2(text(section.title)), tags.table(head, *rows))


def _flatten_now(root: Tag) -> bytes:
    """Flatten a tree of tags and strings; all of it is synchronous, so the result is ready."""
    out: list[bytes] = []
    failed: list[Failure] = []
    flattenString(None, root).addCallbacks(out.append, failed.append)
    if failed:
        failed[0].raiseException()
    return b"<!DOCTYPE html>\n" + out[0]


def render_status_page(title: str, health: Health, sections: Iterable[Section]) -> bytes:
    """The /debug/status HTML: title, health line, then each section. Every value escaped."""
    state = (
        tags.p("Health: ", tags.strong("serving", class_="serving"))
        if health.serving
        else tags.p(
            "Health: ",
            tags.strong("not serving", class_="notserving"),
            ": " + text(health.reason),
        )
    )
    return _page(title, [state], sections)


def render_sections_page(title: str, sections: Iterable[Section]) -> bytes:
    """An HTML page of a title and sections (as /debug/status, without the health line)."""
    return _page(title, [], sections)


def _page(title: str, lead: list[Tag], sections: Iterable[Section]) -> bytes:
    body = [tags.h1(text(title)), *lead, *[_section_tag(s) for s in sections]]
    page = tags.html(
        tags.head(tags.meta(charset="utf-8"), tags.title(text(title)), tags.style(_STYLE)),
        tags.body(*body),
    )
    return _flatten_now(page)


def send_html(request: IRequest, page: bytes) -> bytes:
    """``page`` as the answer to ``request``, with the headers that forbid scripts."""
    _common_headers(request, "text/html; charset=utf-8")
    request.setHeader(b"content-security-policy", _CSP.encode("ascii"))
    request.setHeader(b"referrer-policy", b"no-referrer")
    return page


def send_json(request: IRequest, body: object) -> bytes:
    """``body`` as JSON (non-ASCII escaped) in answer to ``request``."""
    _common_headers(request, "application/json")
    return json.dumps(body, indent=1).encode("ascii")


def _common_headers(request: IRequest, content_type: str) -> None:
    request.setHeader(b"content-type", content_type.encode("ascii"))
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"cache-control", b"no-store")


def _safe_health(health: HealthCheck) -> Health:
    try:
        result = health()
    except Exception as e:
        log.failure("health check raised")
        return Health(False, f"health check failed: {e!r}")
    if not isinstance(result, Health):
        return Health(False, f"health check returned {type(result).__name__}, not Health")
    return result


class MetricsResource(Resource):
    """``/metrics``: the exposition of one registry."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        """Encode the registry in the format the scraper asked for."""
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        body: bytes = encoder(self._registry)
        _common_headers(request, content_type)
        return body


class HealthResource(Resource):
    """``/debug/health``: 200 ``ok`` when serving, else 503 and the reason."""

    isLeaf = True

    def __init__(self, health: HealthCheck) -> None:
        super().__init__()
        self._health = health

    def render_GET(self, request: IRequest) -> bytes:
        """Ask the role's health callable; a failing callable counts as not serving."""
        state = _safe_health(self._health)
        _common_headers(request, "text/plain; charset=utf-8")
        if state.serving:
            return b"ok\n"
        request.setResponseCode(503)
        return f"not serving: {state.reason}\n".encode("utf-8", "backslashreplace")


class StatusResource(Resource):
    """``/debug/status``: the HTML page built from the role's sections."""

    isLeaf = True

    def __init__(self, title: str, health: HealthCheck, sources: Sequence[SectionSource]):
        super().__init__()
        self._title = title
        self._health = health
        self._sources = tuple(sources)

    def _sections(self) -> list[Section]:
        sections: list[Section] = []
        for source in self._sources:
            try:
                got = list(source())
            except Exception as e:
                # One broken section must not hide the rest of the page.
                log.failure("status section {source!r} raised", source=source)
                got = [KeyValues("Error", [(getattr(source, "__name__", "section"), repr(e))])]
            for s in got:
                if isinstance(s, KeyValues | Table):
                    sections.append(s)
                else:
                    sections.append(KeyValues("Error", [("not a section", type(s).__name__)]))
        return sections

    def render_GET(self, request: IRequest) -> bytes:
        """Render the page; the headers forbid scripts and sniffing."""
        page = render_status_page(self._title, _safe_health(self._health), self._sections())
        return send_html(request, page)


class _Index(Resource):
    """A directory page linking to its children (``/`` and ``/debug/``)."""

    def __init__(self, title: str, links: Sequence[str]) -> None:
        super().__init__()
        self._title = title
        self._links = tuple(links)

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``/`` and ``/debug/`` (an empty last segment) are this page; the rest is 404."""
        if path == b"":
            return self
        # Not Resource.getChild: its 404 page is the deprecated, unescaped one.
        return pages.notFound()

    def render_GET(self, request: IRequest) -> bytes:
        items = [tags.li(tags.a(link, href=link)) for link in self._links]
        page = tags.html(
            tags.head(tags.meta(charset="utf-8"), tags.title(text(self._title))),
            tags.body(tags.h1(text(self._title)), tags.ul(*items)),
        )
        _common_headers(request, "text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", _CSP.encode("ascii"))
        return _flatten_now(page)


def status_resource(
    *,
    title: str,
    registry: CollectorRegistry,
    health: HealthCheck,
    sections: Sequence[SectionSource] = (),
    extra: Mapping[str, Resource] | None = None,
) -> Resource:
    """The resource tree: ``/``, ``/metrics``, ``/debug/health``, ``/debug/status``.

    ``extra`` adds more pages under ``/debug/`` by name (``{"vars": MyResource()}``).
    """
    debug_names = ["health", "status", *sorted(extra or {})]
    root = _Index(title, ["/metrics", *[f"/debug/{n}" for n in debug_names]])
    debug = _Index(title, [f"/debug/{n}" for n in debug_names])
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"debug", debug)
    debug.putChild(b"health", HealthResource(health))
    debug.putChild(b"status", StatusResource(title, health, sections))
    for name, resource in (extra or {}).items():
        debug.putChild(name.encode("ascii"), resource)
    return root


class QuietSite(server.Site):
    """A ``Site`` that writes no access log and never shows tracebacks to the client."""

    displayTracebacks = False
    noisy = False

    def log(self, request: Any) -> None:
        """Drop the access log line (health probes and scrapes would flood the log)."""


def status_site(root: Resource, *, reactor: IReactorCore | None = None) -> server.Site:
    """A quiet ``Site`` serving ``root``."""
    if reactor is None:
        return QuietSite(root)
    return QuietSite(root, reactor=reactor)


def status_service(
    endpoint: str,
    *,
    title: str,
    registry: CollectorRegistry,
    health: HealthCheck,
    sections: Sequence[SectionSource] = (),
    extra: Mapping[str, Resource] | None = None,
    reactor: IReactorCore | None = None,
) -> ListenerService:
    """The whole HTTP status service on ``endpoint`` (e.g. ``tcp:15001:interface=127.0.0.1``).

    Add it to the role's ``MultiService``; ``whenListening()`` gives the bound port.
    """
    root = status_resource(
        title=title, registry=registry, health=health, sections=sections, extra=extra
    )
    return ListenerService(
        endpoint, status_site(root, reactor=reactor), reactor=reactor, name="http-status"
    )

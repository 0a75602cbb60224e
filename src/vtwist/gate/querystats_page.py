# twisted.web's Resource is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The gate's ``/debug/queryz``: its query statistics by digest and recent errors.

- ``GET /debug/queryz``: an HTML page (values escaped by ``httpstatus``): the digests,
  largest first by ``?order=`` (total, count, mean, max, errors, rows_sent, last_seen;
  default total), at most ``?limit=`` of them (default 100), then the recent errors;
- ``GET /debug/queryz?format=json``: the same as JSON (every digest unless ``limit``);
- ``POST /debug/queryz/reset``: forget them all and start again (answers 204).

``digest_id`` is a short hash of a digest's text, the same for every user and database.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from vtwist.gate.querystats import ORDERS, DigestStats, QueryStats, RecentError
from vtwist.httpstatus import KeyValues, Section, Table, render_sections_page, send_html, send_json

DEFAULT_LIMIT = 100


def digest_id(digest: bytes) -> str:
    """A short stable name for a digest's text (16 hex digits)."""
    return hashlib.blake2b(digest, digest_size=8).hexdigest()


def _when(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _text(digest: bytes) -> str:
    return digest.decode("utf-8", "backslashreplace")


def error_rows(errors: Iterable[RecentError]) -> list[list[object]]:
    """Table rows for recent errors (time, user, database, code, message, statement)."""
    return [[_when(e.when), e.user, e.database, e.code, e.message, _text(e.digest)] for e in errors]


ERROR_COLUMNS = ["time (UTC)", "user", "database", "code", "message", "statement (digest)"]


def _entry_json(e: DigestStats) -> dict[str, Any]:
    return {
        "digest_id": digest_id(e.digest),
        "digest": _text(e.digest),
        "user": e.user,
        "database": e.database,
        "count": e.count,
        "errors": e.errors,
        "total_seconds": e.total,
        "mean_seconds": e.mean,
        "min_seconds": e.min,
        "max_seconds": e.max,
        "rows_sent": e.rows_sent,
        "rows_affected": e.rows_affected,
        "first_seen": e.first_seen,
        "last_seen": e.last_seen,
    }


class QueryzResource(Resource):
    """``/debug/queryz`` (module docstring)."""

    isLeaf = True

    def __init__(self, stats: QueryStats, enabled: bool) -> None:
        super().__init__()
        self._stats = stats
        self._enabled = enabled

    def render_GET(self, request: IRequest) -> bytes:
        """The statistics, as HTML or JSON; a bad parameter is a 400 naming it."""
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            return b""
        args = request.args or {}
        order = _arg(args, b"order") or "total"
        limit_text = _arg(args, b"limit")
        if order not in ORDERS:
            return _bad(request, f"order must be one of {', '.join(ORDERS)}")
        limit: int | None = None
        if limit_text:
            if not limit_text.isdigit() or int(limit_text) < 1:
                return _bad(request, "limit must be a whole number >= 1")
            limit = int(limit_text)
        stats = self._stats
        if _arg(args, b"format") == "json":
            return send_json(
                request,
                {
                    "enabled": self._enabled,
                    "since": stats.since,
                    "digests_kept": len(stats),
                    "max_digests": stats.max_digests,
                    "evicted": stats.evicted,
                    "digests": [_entry_json(e) for e in stats.top(order, limit)],
                    "recent_errors": [
                        {
                            "time": e.when,
                            "user": e.user,
                            "database": e.database,
                            "code": e.code,
                            "message": e.message,
                            "digest": _text(e.digest),
                        }
                        for e in stats.recent_errors()
                    ],
                },
            )
        shown = stats.top(order, limit or DEFAULT_LIMIT)
        return send_html(
            request, render_sections_page("vtgate queryz", self._sections(order, shown))
        )

    def render_POST(self, request: IRequest) -> bytes:
        """Only ``/debug/queryz/reset``."""
        if request.postpath not in ([b"reset"], [b"reset", b""]):
            request.setResponseCode(404)
            return b""
        self._stats.reset()
        request.setResponseCode(204)
        return b""

    def _sections(self, order: str, shown: list[DigestStats]) -> list[Section]:
        stats = self._stats
        summary = KeyValues(
            "Query statistics",
            [
                (
                    "recording",
                    "yes" if self._enabled else "no (stats.query_digests = false)",
                ),
                ("since (UTC)", _when(stats.since)),
                ("digests kept", f"{len(stats)} of at most {stats.max_digests}"),
                ("dropped for newer ones", stats.evicted),
                ("order", f"{order} (?order= {', '.join(ORDERS)}; ?limit=; ?format=json)"),
                ("reset", "POST /debug/queryz/reset"),
            ],
        )
        rows = [
            [
                digest_id(e.digest),
                e.user,
                e.database,
                e.count,
                e.errors,
                f"{e.total:.3f}",
                _ms(e.mean),
                _ms(e.min),
                _ms(e.max),
                e.rows_sent,
                e.rows_affected,
                _when(e.first_seen),
                _when(e.last_seen),
                _text(e.digest),
            ]
            for e in shown
        ]
        digests = Table(
            f"Digests, by {order} (first {len(shown)})",
            [
                "digest id",
                "user",
                "database",
                "count",
                "errors",
                "total (s)",
                "mean (ms)",
                "min (ms)",
                "max (ms)",
                "rows sent",
                "rows affected",
                "first seen (UTC)",
                "last seen (UTC)",
                "statement (digest)",
            ],
            rows,
        )
        errors = Table("Recent errors", ERROR_COLUMNS, error_rows(stats.recent_errors()))
        return [summary, digests, errors]


def _arg(args: dict[bytes, list[bytes]], name: bytes) -> str:
    values = args.get(name)
    return values[0].decode("utf-8", "replace") if values else ""


def _bad(request: IRequest, why: str) -> bytes:
    request.setResponseCode(400)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (why + "\n").encode()

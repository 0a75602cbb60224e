"""Every server test fails if the protocol logged one of its own errors ("MySQL server: ..."
failures are caught bugs: nothing may escape into the reactor, but nothing may hide either)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.logger import ILogObserver, globalLogPublisher


@pytest.fixture(autouse=True)
def no_internal_errors() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            events.append(event)

    observer = cast(ILogObserver, observe)  # any callable taking the event dict will do
    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)
    internal = [e for e in events if str(e.get("log_format", "")).startswith("MySQL server:")]
    assert not internal, [e["log_failure"].getTraceback() for e in internal]

"""``tests.support.fresh_python.call``: the result comes back pickled; a child killed by a
signal runs once more with a warning; a second crash or an exception fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import fresh_python


def crash_once(marker: str) -> str:
    """Abort the first time (no marker yet), answer the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("crashed")
        os.abort()
    return "second run"


def always_crash() -> None:
    os.abort()


def fail() -> None:
    raise ValueError("in the child")


def test_result_and_one_retry_after_a_crash(tmp_path: Path) -> None:
    if fresh_python.c_extension_error() is not None:
        pytest.skip("the mysql-connector C extension does not load here")
    with pytest.warns(UserWarning, match="died of signal 6"):
        assert fresh_python.call(crash_once, str(tmp_path / "marker")) == "second run"
    with pytest.warns(UserWarning), pytest.raises(AssertionError, match="always_crash"):
        fresh_python.call(always_crash)
    with pytest.raises(AssertionError, match="ValueError: in the child"):
        fresh_python.call(fail)

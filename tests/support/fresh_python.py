"""Run a test's client function in a new Python process that loads the mysql-connector
C extension before anything else.

The C extension of mysql-connector-python ships its own OpenSSL (newer than Debian 12's).
Both are ``libssl.so.3``, so in a process that has already imported ``ssl`` (the test
runner has, through PyMySQL) the extension finds the system library and fails to load
(``version `OPENSSL_3.2.0' not found``). An application that imports the connector
first is fine, and so is the new process here: it imports ``_mysql_connector`` first, then
the function's module, calls the function and sends back its pickled result.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_RUN = """\
import _mysql_connector  # first: its OpenSSL must be the one loaded
import importlib, pickle, sys
module, name, args = pickle.load(sys.stdin.buffer)
out = getattr(importlib.import_module(module), name)(*args)
sys.stdout.buffer.write(pickle.dumps(out))
"""


def c_extension_error() -> str | None:
    """Why the C extension cannot be loaded even first in a new process, or None."""
    r = subprocess.run(
        [sys.executable, "-c", "import _mysql_connector"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


def call(func: Callable[..., Any], *args: Any, timeout: float = 120) -> Any:
    """``func(*args)`` in a new process (see the module docstring); ``func`` must be a
    module-level function and ``args`` and its result picklable. A failure in the child
    raises ``AssertionError`` with its stderr."""
    r = subprocess.run(
        [sys.executable, "-c", _RUN],
        input=pickle.dumps((func.__module__, func.__qualname__, args)),
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if r.returncode != 0:
        raise AssertionError(
            f"{func.__qualname__} failed in a new process:\n{r.stderr.decode(errors='replace')}"
        )
    return pickle.loads(r.stdout)

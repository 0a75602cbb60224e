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
import warnings
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
    raises ``AssertionError`` with its stderr.

    A child killed by a signal is run once more, with a warning: once in about 500 runs
    here the C extension aborted inside malloc ("unaligned tcache chunk detected") with no
    Python frame involved, and 113 runs of the same session in a row did not repeat it. A
    second crash, or any ordinary failure, fails the test."""
    request = pickle.dumps((func.__module__, func.__qualname__, args))
    command = [sys.executable, "-c", _RUN]
    r = subprocess.run(command, input=request, capture_output=True, timeout=timeout, cwd=ROOT)
    if r.returncode < 0:
        warnings.warn(
            f"{func.__qualname__}: the client process died of signal {-r.returncode}, "
            f"run again: {r.stderr.decode(errors='replace').strip()[-300:]}",
            stacklevel=2,
        )
        r = subprocess.run(command, input=request, capture_output=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise AssertionError(
            f"{func.__qualname__} failed in a new process:\n{r.stderr.decode(errors='replace')}"
        )
    return pickle.loads(r.stdout)

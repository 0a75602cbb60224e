"""What every ``vtwist`` command shares: the context (topo, output) and the error type.

A command module registers subcommands with ``register(subparsers, common)`` and sets
``handler=async def (ctx: CliContext) -> int | None`` on each. It reports results with
``ctx.emit(data, text)``: ``data`` is printed as JSON with ``--json``, ``text`` otherwise.
Failures raise ``CliError`` (or a ``TopoError``); ``main`` turns them into a message on
stderr and an exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from vtwist.interfaces import ITopoServer
from vtwist.topo.address import ENV_AUTH_FILE, ENV_TOPO, read_auth_file
from vtwist.topo.errors import TopoUnavailableError

EXIT_OK = 0
EXIT_FAILED = 1  # the command failed: not found, exists, invalid input, stale write...
EXIT_USAGE = 2  # bad command line (argparse uses 2 as well)
EXIT_UNAVAILABLE = 3  # the topo-server cannot be reached

DEFAULT_TOPO_TIMEOUT = 5.0
#: Where ``vtwist up`` keeps the local cluster by default (its ``--dir``).
LOCAL_DIR = ".vtwist"

TopoFactory = Callable[[str, tuple[str, str] | None, float], ITopoServer]


class CliError(Exception):
    """A command failure to report as ``vtwist: error: <message>`` with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED, kind: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options accepted before or after the subcommand (defaults applied by ``option``)."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON output"
    )
    group.add_argument(
        "--topo",
        metavar="ADDRESS",
        default=argparse.SUPPRESS,
        help="topo address, e.g. zk:127.0.0.1:2181/vtwist (default: "
        f"${ENV_TOPO}, else the local cluster `vtwist up` made in ./{LOCAL_DIR})",
    )
    group.add_argument(
        "--topo-auth-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="file holding ZooKeeper digest credentials 'user:password'"
        f" (default: ${ENV_AUTH_FILE})",
    )
    group.add_argument(
        "--topo-timeout",
        metavar="SECONDS",
        type=float,
        default=argparse.SUPPRESS,
        help=f"how long to try to reach the topo (default: {DEFAULT_TOPO_TIMEOUT:g})",
    )


class CliContext:
    """One command run: parsed arguments, output streams, and the topo (opened lazily)."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: TextIO,
        err: TextIO,
        topo_factory: TopoFactory,
        environ: dict[str, str] | None = None,
        local_dir: Path | None = None,
    ) -> None:
        self.args = args
        self.local_dir = local_dir
        self.out = out
        self.err = err
        self._topo_factory = topo_factory
        self._environ = dict(os.environ) if environ is None else environ
        self._topo: ITopoServer | None = None

    def option(self, name: str, default: Any = None) -> Any:
        return getattr(self.args, name, default)

    @property
    def json(self) -> bool:
        return bool(self.option("json", False))

    async def topo(self) -> ITopoServer:
        """The connected topo-server; CliError (exit 3) if it cannot be reached."""
        if self._topo is not None:
            return self._topo
        address = self.option("topo") or self._environ.get(ENV_TOPO) or self._local_topo()
        if not address:
            raise CliError(
                f"no topo address: pass --topo zk:HOST:PORT/ROOT or set {ENV_TOPO} (or run "
                f"it where `vtwist up` made ./{LOCAL_DIR})",
                EXIT_USAGE,
                "usage",
            )
        auth_file = self.option("topo_auth_file") or self._environ.get(ENV_AUTH_FILE)
        auth = read_auth_file(auth_file) if auth_file else None
        timeout = float(self.option("topo_timeout", DEFAULT_TOPO_TIMEOUT))
        topo = self._topo_factory(address, auth, timeout)
        try:
            await topo.connect(timeout)
        except TopoUnavailableError as e:
            await topo.close()
            raise CliError(
                f"topo unreachable at {address}: {e}", EXIT_UNAVAILABLE, "unavailable"
            ) from None
        self._topo = topo
        return topo

    def _local_topo(self) -> str:
        """The topo of the local cluster in ``local_dir`` ("" when there is none)."""
        if self.local_dir is None:
            return ""
        from vtwist.local.state import load_state

        try:
            state = load_state(self.local_dir)
        except ValueError:
            return ""
        return state.topo_address if state is not None else ""

    async def close(self) -> None:
        if self._topo is not None:
            topo, self._topo = self._topo, None
            await topo.close()

    def emit(self, data: Any, text: str) -> None:
        """Print the command's result: ``data`` as JSON with --json, else ``text``."""
        if self.json:
            self.out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        elif text:
            self.out.write(text.rstrip("\n") + "\n")

    def report_error(self, message: str, kind: str) -> None:
        if self.json:
            self.err.write(json.dumps({"error": {"kind": kind, "message": message}}) + "\n")
        else:
            self.err.write(f"vtwist: error: {message}\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells
    )

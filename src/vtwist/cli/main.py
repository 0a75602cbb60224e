"""The ``vtwist`` admin command: argument parsing, dispatch, errors and exit status.

Subcommands come from the modules in ``COMMAND_MODULES``; each has
``register(subparsers, add_common_options)``. Later features (``up``, ``down``,
``status``, ``reparent``, ``users``) add their module there.

Exit status: 0 success, 1 the command failed, 2 bad usage, 3 topo unreachable. Errors are
one line on stderr (a JSON object with ``--json``), never a traceback unless
``VTWIST_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react

from vtwist.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    LOCAL_DIR,
    CliContext,
    CliError,
    TopoFactory,
    add_common_options,
)
from vtwist.interfaces import ITopoServer
from vtwist.topo.errors import TopoError, TopoUnavailableError

COMMAND_MODULES: list[str] = [
    "vtwist.cli.topo_cmds",
    "vtwist.cli.local_cmds",
    "vtwist.cli.reparent_cmds",
]
ENV_DEBUG = "VTWIST_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    """The full ``vtwist`` parser (every registered command)."""
    parser = argparse.ArgumentParser(
        prog="vtwist",
        description="Administer a vtwist cluster: keyspaces, shards, VSchema, tablets.",
    )
    add_common_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, add_common_options)
    return parser


def _default_factory(reactor: IReactorTime) -> TopoFactory:
    def factory(address: str, auth: tuple[str, str] | None, timeout: float) -> ITopoServer:
        from vtwist.topo.address import open_topo

        return open_topo(address, reactor, auth=auth, op_timeout=max(timeout, 1.0))

    return factory


async def run(
    reactor: IReactorTime,
    argv: Sequence[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    topo_factory: TopoFactory | None = None,
    environ: dict[str, str] | None = None,
    local_dir: Path | None = Path(LOCAL_DIR),
) -> int:
    """Run one command line on a running reactor; return the exit status. Without a topo
    address (``--topo``, ``VTWIST_TOPO``) commands use the local cluster in ``local_dir``.

    Usage errors (argparse) raise SystemExit(2) after printing the usage, as usual.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(list(argv))
    factory = topo_factory or _default_factory(reactor)
    ctx = CliContext(args, out, err, factory, environ, local_dir)
    try:
        code = await args.handler(ctx)
        return EXIT_OK if code is None else int(code)
    except CliError as e:
        ctx.report_error(e.message, e.kind)
        return e.code
    except TopoUnavailableError as e:
        ctx.report_error(f"topo unavailable: {e}", e.kind)
        return EXIT_UNAVAILABLE
    except TopoError as e:
        ctx.report_error(str(e), e.kind)
        return EXIT_FAILED
    except Exception as e:
        if os.environ.get(ENV_DEBUG):
            traceback.print_exc(file=err)
        ctx.report_error(f"internal error: {e!r} (set {ENV_DEBUG}=1 for a traceback)", "internal")
        return EXIT_FAILED
    finally:
        try:
            await ctx.close()
        except Exception as e:
            err.write(f"vtwist: warning: closing the topo connection failed: {e!r}\n")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console entry point (``vtwist``)."""
    # kazoo logs every refused connection attempt; the command reports the outcome itself.
    logging.getLogger("kazoo").setLevel(
        logging.DEBUG if os.environ.get(ENV_DEBUG) else logging.CRITICAL
    )
    arguments = list(sys.argv[1:] if argv is None else argv)
    build_parser().parse_args(arguments)  # usage errors exit 2 before the reactor starts

    async def _main(reactor: Any) -> None:
        code = await run(reactor, arguments)
        if code:
            raise SystemExit(code)

    react(lambda reactor: Deferred.fromCoroutine(_main(reactor)))

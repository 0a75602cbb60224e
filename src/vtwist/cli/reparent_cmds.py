"""``vtwist reparent planned|emergency KS/SHARD [--new-primary ALIAS]``.

Both need only the topo (``--topo``/``VTWIST_TOPO``): tablets are reached on the RPC ports
their topo records publish, and do the MySQL work themselves (``vtwist.orc.reparent``).
On success the command prints the steps taken and the new primary and term; on failure the
step that failed and what state the shard was left in (exit status 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from vtwist.cli.common import CliContext, CliError
from vtwist.orc.reparent import Reparenter, ReparentError, ReparentSettings
from vtwist.orc.tablets import TabletClients
from vtwist.topo.errors import ValidationError
from vtwist.topo.names import split_keyspace_shard, validate_tablet_alias

AddCommon = Callable[[argparse.ArgumentParser], None]


def register(subparsers: Any, add_common: AddCommon) -> None:
    """Add ``reparent planned`` and ``reparent emergency`` to the ``vtwist`` parser."""
    rp = subparsers.add_parser("reparent", help="move a shard's primary to another tablet")
    rp_sub = rp.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (
        ("planned", "planned reparent: demote the live primary, promote a caught-up replica"),
        ("emergency", "emergency reparent: the primary is dead; promote the most advanced replica"),
    ):
        p: argparse.ArgumentParser = rp_sub.add_parser(name, help=help_text, description=help_text)
        add_common(p)
        p.add_argument("shard", metavar="KS/SHARD")
        p.add_argument("--new-primary", metavar="ALIAS", help="the tablet to promote")
        p.add_argument(
            "--wait-timeout",
            metavar="SECONDS",
            type=float,
            default=15.0,
            help="longest wait for a replica to catch up (default 15)",
        )
        p.add_argument(
            "--lock-timeout",
            metavar="SECONDS",
            type=float,
            default=10.0,
            help="longest wait for the shard lock (default 10)",
        )
        p.set_defaults(handler=reparent, kind=name)


async def reparent(ctx: CliContext) -> None:
    """Run the reparent and print its report."""
    from twisted.internet import reactor

    try:
        keyspace, shard = split_keyspace_shard(ctx.args.shard)
        if ctx.args.new_primary:
            validate_tablet_alias(ctx.args.new_primary)
    except ValidationError as e:
        raise CliError(str(e)) from None
    topo = await ctx.topo()
    clients = TabletClients(reactor)
    settings = ReparentSettings(
        lock_timeout=ctx.args.lock_timeout, wait_timeout=ctx.args.wait_timeout
    )
    reparenter = Reparenter(topo, clients, settings)
    run = reparenter.planned if ctx.args.kind == "planned" else reparenter.emergency
    try:
        report = await run(keyspace, shard, ctx.args.new_primary)
    except ReparentError as e:
        raise CliError(
            f"{ctx.args.kind} reparent of {keyspace}/{shard} failed at step {e.step}: {e.message}"
        ) from None
    finally:
        clients.close()
    lines = [f"{ctx.args.kind} reparent of {keyspace}/{shard}:"]
    lines += [f"  {step}" for step in report.steps]
    lines += [f"  warning: {w}" for w in report.warnings]
    lines.append(
        f"new primary {report.new_primary} (term {report.term}, was {report.old_primary}), "
        f"{report.seconds:.2f}s"
    )
    ctx.emit(report.to_dict(), "\n".join(lines))

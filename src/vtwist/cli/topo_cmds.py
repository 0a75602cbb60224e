"""Topo admin commands: ``keyspace``, ``shard``, ``vschema`` and ``tablets``.

```
vtwist keyspace create NAME [--sharded] [--durability none|semi_sync]
vtwist keyspace list | keyspace get NAME
vtwist shard create KS/SHARD | shard get KS/SHARD | shard list KS
vtwist vschema apply KS --file F [--dry-run] | vschema get KS
vtwist tablets [--cell C]
```
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vtwist.cli.common import CliContext, CliError, table
from vtwist.topo.errors import NoNodeError, ValidationError
from vtwist.topo.names import (
    DURABILITY_POLICIES,
    split_keyspace_shard,
    validate_cell_name,
    validate_keyspace_name,
)
from vtwist.topo.records import Keyspace, Shard, Tablet
from vtwist.topo.vschema import VSchema

MAX_VSCHEMA_FILE_BYTES = 4 * 1024 * 1024

AddCommon = Callable[[argparse.ArgumentParser], None]


def register(subparsers: Any, add_common: AddCommon) -> None:
    """Add the topo commands to the ``vtwist`` parser."""

    def command(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text
        )
        add_common(parser)
        return parser

    ks = subparsers.add_parser("keyspace", help="create and inspect keyspaces")
    ks_sub = ks.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(ks_sub, "create", "create a keyspace")
    p.add_argument("name")
    p.add_argument("--sharded", action="store_true", help="the keyspace is sharded")
    p.add_argument("--durability", choices=DURABILITY_POLICIES, default="none")
    p.set_defaults(handler=keyspace_create)
    command(ks_sub, "list", "list the keyspaces").set_defaults(handler=keyspace_list)
    p = command(ks_sub, "get", "show one keyspace")
    p.add_argument("name")
    p.set_defaults(handler=keyspace_get)

    sh = subparsers.add_parser("shard", help="create and inspect shards")
    sh_sub = sh.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(sh_sub, "create", "create a shard (its key range comes from its name)")
    p.add_argument("target", metavar="KS/SHARD", help="e.g. commerce/0 or customer/-80")
    p.set_defaults(handler=shard_create)
    p = command(sh_sub, "get", "show one shard")
    p.add_argument("target", metavar="KS/SHARD")
    p.set_defaults(handler=shard_get)
    p = command(sh_sub, "list", "list the shards of a keyspace")
    p.add_argument("keyspace", metavar="KS")
    p.set_defaults(handler=shard_list)

    vs = subparsers.add_parser("vschema", help="apply and show VSchemas")
    vs_sub = vs.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = command(vs_sub, "apply", "validate a VSchema JSON file and store it")
    p.add_argument("keyspace", metavar="KS")
    p.add_argument("--file", required=True, metavar="F", help="the VSchema JSON file")
    p.add_argument("--dry-run", action="store_true", help="validate only; store nothing")
    p.set_defaults(handler=vschema_apply)
    p = command(vs_sub, "get", "print a keyspace's VSchema")
    p.add_argument("keyspace", metavar="KS")
    p.set_defaults(handler=vschema_get)

    p = command(subparsers, "tablets", "list the registered tablets")
    p.add_argument("--cell", help="only this cell (default: every cell)")
    p.set_defaults(handler=tablets_list)


# --- JSON shapes -------------------------------------------------------------------------


def keyspace_json(ks: Keyspace) -> dict[str, Any]:
    return {"name": ks.name, "sharded": ks.sharded, "durability": ks.durability}


def shard_json(shard: Shard) -> dict[str, Any]:
    return {
        "keyspace": shard.keyspace,
        "name": shard.name,
        "key_range": {"start": shard.key_range.start, "end": shard.key_range.end},
        "primary_alias": shard.primary_alias,
        "primary_term": shard.primary_term,
        "node_version": shard.node_version,
    }


def tablet_json(tablet: Tablet) -> dict[str, Any]:
    data = tablet.to_dict()
    data.pop("version", None)
    data["cell"] = tablet.cell
    return data


# --- handlers ----------------------------------------------------------------------------


async def keyspace_create(ctx: CliContext) -> None:
    record = Keyspace(
        validate_keyspace_name(ctx.args.name),
        sharded=ctx.args.sharded,
        durability=ctx.args.durability,
    )
    topo = await ctx.topo()
    created = await topo.create_keyspace(record)
    kind = "sharded" if created.sharded else "unsharded"
    ctx.emit(
        keyspace_json(created),
        f"created keyspace {created.name} ({kind}, durability {created.durability})",
    )


async def keyspace_list(ctx: CliContext) -> None:
    topo = await ctx.topo()
    records = []
    for name in await topo.list_keyspaces():
        try:
            records.append(await topo.get_keyspace(name))
        except NoNodeError:
            continue  # deleted meanwhile
    text = (
        table(
            ["KEYSPACE", "SHARDED", "DURABILITY"],
            [[k.name, "yes" if k.sharded else "no", k.durability] for k in records],
        )
        if records
        else "no keyspaces"
    )
    ctx.emit([keyspace_json(k) for k in records], text)


async def keyspace_get(ctx: CliContext) -> None:
    topo = await ctx.topo()
    ks = await topo.get_keyspace(validate_keyspace_name(ctx.args.name))
    ctx.emit(
        keyspace_json(ks),
        f"keyspace {ks.name}: {'sharded' if ks.sharded else 'unsharded'},"
        f" durability {ks.durability}",
    )


def _shard_text(shard: Shard) -> str:
    primary = (
        f"primary {shard.primary_alias} (term {shard.primary_term})"
        if shard.primary_alias
        else "no primary"
    )
    return f"shard {shard.keyspace}/{shard.name}: key range {shard.key_range}, {primary}"


async def shard_create(ctx: CliContext) -> None:
    keyspace, name = split_keyspace_shard(ctx.args.target)
    topo = await ctx.topo()
    created = await topo.create_shard(Shard.new(keyspace, name))
    ctx.emit(shard_json(created), f"created {_shard_text(created)}")


async def shard_get(ctx: CliContext) -> None:
    keyspace, name = split_keyspace_shard(ctx.args.target)
    topo = await ctx.topo()
    shard = await topo.get_shard(keyspace, name)
    ctx.emit(shard_json(shard), _shard_text(shard))


async def shard_list(ctx: CliContext) -> None:
    keyspace = validate_keyspace_name(ctx.args.keyspace)
    topo = await ctx.topo()
    shards = [await topo.get_shard(keyspace, s) for s in await topo.list_shards(keyspace)]
    text = (
        table(
            ["SHARD", "KEY RANGE", "PRIMARY", "TERM"],
            [[s.name, str(s.key_range), s.primary_alias, s.primary_term] for s in shards],
        )
        if shards
        else f"keyspace {keyspace} has no shards"
    )
    ctx.emit([shard_json(s) for s in shards], text)


def _read_vschema_file(path: str) -> VSchema:
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_VSCHEMA_FILE_BYTES:
            raise CliError(f"{path}: {size} bytes is too large for a VSchema")
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8 text") from None
    try:
        return VSchema.parse(text, what="vschema")
    except ValidationError as e:
        raise CliError(f"{path} refused: {e}", kind="invalid") from None


async def vschema_apply(ctx: CliContext) -> None:
    keyspace = validate_keyspace_name(ctx.args.keyspace)
    vschema = _read_vschema_file(ctx.args.file)
    topo = await ctx.topo()
    record = await topo.get_keyspace(keyspace)
    try:
        vschema.check_keyspace(keyspace, record.sharded)
    except ValidationError as e:
        raise CliError(f"{ctx.args.file} refused: {e}", kind="invalid") from None
    summary = {
        "keyspace": keyspace,
        "applied": not ctx.args.dry_run,
        "tables": len(vschema.tables),
        "vindexes": len(vschema.vindexes),
    }
    if not ctx.args.dry_run:
        await topo.save_vschema(keyspace, vschema)
    verb = "would apply" if ctx.args.dry_run else "applied"
    ctx.emit(
        summary,
        f"{verb} vschema to {keyspace}: {len(vschema.tables)} tables,"
        f" {len(vschema.vindexes)} vindexes",
    )


async def vschema_get(ctx: CliContext) -> None:
    keyspace = validate_keyspace_name(ctx.args.keyspace)
    topo = await ctx.topo()
    vschema = await topo.get_vschema(keyspace)
    ctx.emit(vschema.to_dict(), json.dumps(vschema.to_dict(), indent=2, sort_keys=True))


async def tablets_list(ctx: CliContext) -> None:
    topo = await ctx.topo()
    cells = [validate_cell_name(ctx.args.cell)] if ctx.args.cell else await topo.list_cells()
    tablets: list[Tablet] = []
    for cell in cells:
        tablets.extend(await topo.list_tablets(cell))
    rows = [
        [
            t.cell,
            t.alias,
            t.keyspace,
            t.shard,
            t.tablet_type,
            "yes" if t.serving else "no",
            f"{t.host}:{t.mysql_port}",
            t.primary_term,
            t.health.lag_s,
            t.health.error,
        ]
        for t in tablets
    ]
    headers = ["CELL", "ALIAS", "KEYSPACE", "SHARD", "TYPE", "SERVING", "MYSQL", "TERM", "LAG_S"]
    text = table([*headers, "ERROR"], rows) if tablets else "no tablets"
    ctx.emit([tablet_json(t) for t in tablets], text)

"""`zoll gc`: collect unreferenced content once, now (the service also does it periodically)."""

from __future__ import annotations

import argparse
import asyncio

from rich.table import Table

from registry.cli.args import add_config_args, add_database_args
from registry.cli.database import NoDatabase, cli_config
from registry.cli.output import add_json_flag, console, emit_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gc", help="garbage-collect unreferenced manifests and blobs")
    add_config_args(p)
    add_database_args(p)
    p.add_argument(
        "--grace", type=float, help="seconds of protection for recent content (config default)"
    )
    p.add_argument(
        "--deep",
        action="store_true",
        default=None,
        help="also list the whole store for objects nothing records (gc.deep_sweep_interval "
        "otherwise decides)",
    )
    add_json_flag(p)
    p.set_defaults(handler=_gc)


def _gc(args: argparse.Namespace) -> int:
    try:
        config = cli_config(args)
    except NoDatabase as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    from registry.gc import collect
    from registry.service import close_registry, open_registry

    async def once() -> dict[str, object]:
        registry = await open_registry(config)
        try:
            return (await collect(registry, grace=args.grace, deep=args.deep)).to_json()
        finally:
            await close_registry(registry)

    report = asyncio.run(once())
    if args.json:
        emit_json(report)
        return 0
    table = Table("removed", "count", title="garbage collection")
    for key in ("manifests", "links", "blobs", "orphaned_objects", "expired_uploads"):
        table.add_row(key.replace("_", " "), str(report[key]))
    table.add_row("bytes freed", str(report["bytes_freed"]))
    console.print(table)
    if report["deep"]:
        console.print("the whole store was listed (deep pass)")
    if report["skipped"]:
        console.print("[yellow]another collection was running; nothing done[/]")
    return 0

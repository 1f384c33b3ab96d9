"""`zoll vulndb`: load OSV exports and VEX documents into PostgreSQL, show the data state."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

from policy.vuln import (
    ImportProgress,
    ImportSummary,
    VexImportSummary,
    VulnDataError,
    VulnStore,
    import_osv,
    import_vex,
)
from registry.cli.args import add_database_args
from registry.cli.database import NoDatabase, resolve_dsn
from registry.cli.output import add_json_flag, console, emit_json, rich_console
from registry.db.migrate import migrate


class _RateColumn(ProgressColumn):
    """Records per second (rich's own speed columns speak bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} records/s" if speed else "– records/s", style="cyan")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("vulndb", help="vulnerability data (OSV, VEX)")
    sub = parser.add_subparsers(dest="vulndb_command", metavar="COMMAND", required=True)

    imp = sub.add_parser("import", help="import an OSV export (directory or zip) and VEX files")
    imp.add_argument("path", type=Path, help="OSV export: directory tree, all.zip or one .json")
    imp.add_argument("--vex", type=Path, nargs="*", default=[], metavar="FILE", help="CSAF/OpenVEX")
    add_database_args(imp)
    add_json_flag(imp)
    imp.set_defaults(handler=_import_handler)

    status = sub.add_parser("status", help="data fingerprint, record counts, recent imports")
    add_database_args(status)
    add_json_flag(status)
    status.set_defaults(handler=_status_handler)


async def _pool(dsn: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool


async def _run_import(args: argparse.Namespace) -> tuple[ImportSummary, list[VexImportSummary]]:
    pool = await _pool(resolve_dsn(args))
    try:
        with Progress(
            TextColumn("[bold]importing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TextColumn("{task.fields[detail]}"),
            console=rich_console(),
            disable=args.json,
        ) as bar:
            task = bar.add_task(args.path.name, total=None, detail="")

            def progress(counts: ImportProgress) -> None:
                detail = (
                    f"new {counts.inserted} · updated {counts.updated} · "
                    f"withdrawn {counts.withdrawn} · rejected {counts.rejected}"
                )
                bar.update(task, completed=counts.seen, total=counts.total, detail=detail)

            summary = await import_osv(pool, args.path, progress)
        vex = [await import_vex(pool, path) for path in args.vex]
        return summary, vex
    finally:
        await pool.close()


def _vex_dict(s: VexImportSummary) -> dict[str, Any]:
    return {
        "document": s.document,
        "format": s.format,
        "statements": s.statements,
        "changed": s.changed,
        "fingerprint": s.fingerprint.digest,
    }


def _import_handler(args: argparse.Namespace) -> int:
    try:
        summary, vex = asyncio.run(_run_import(args))
    except NoDatabase as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    except VulnDataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        console.print(f"[red]database error:[/red] {exc}")
        return 2
    final = vex[-1].fingerprint if vex else summary.fingerprint
    if args.json:
        emit_json(
            {
                "osv": summary.as_dict(),
                "vex": [_vex_dict(v) for v in vex],
                "fingerprint": str(final),
            }
        )
    else:
        table = Table(title=f"OSV import #{summary.import_id}: {summary.source}")
        for column in ("seen", "new", "updated", "unchanged", "older", "withdrawn", "rejected"):
            table.add_column(column, justify="right")
        table.add_row(
            *map(
                str,
                (
                    summary.seen,
                    summary.inserted,
                    summary.updated,
                    summary.unchanged,
                    summary.stale,
                    summary.withdrawn,
                    summary.rejected,
                ),
            )
        )
        console.print(table)
        for rejected in summary.rejected_examples[:20]:
            console.print(f"  [yellow]rejected[/yellow] {rejected.source}: {rejected.reason}")
        for v in vex:
            state = "imported" if v.changed else "unchanged"
            console.print(f"VEX {v.format} {v.document}: {v.statements} statements, {state}")
        console.print(f"data fingerprint: [bold]{final}[/bold] ({summary.seconds:.1f} s)")
    return 1 if summary.rejected else 0


async def _run_status(dsn: str) -> dict[str, Any]:
    pool = await _pool(dsn)
    try:
        store = VulnStore(pool)
        current = await store.fingerprint()
        return {
            "fingerprint": current.digest,
            "changed_at": current.changed_at,
            "counts": await store.counts(),
            "imports": await store.recent_imports(),
        }
    finally:
        await pool.close()


def _status_handler(args: argparse.Namespace) -> int:
    try:
        status = asyncio.run(_run_status(resolve_dsn(args)))
    except NoDatabase as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        console.print(f"[red]database error:[/red] {exc}")
        return 2
    if args.json:
        emit_json(status)
        return 0
    counts = status["counts"]
    console.print(f"data fingerprint: [bold]{status['fingerprint']}[/bold]")
    console.print(f"last changed: {status['changed_at'] or 'never'}")
    console.print(
        f"records: {counts['live']} live, {counts['withdrawn']} withdrawn; "
        f"VEX statements: {counts['vex_statements']}"
    )
    table = Table(title="recent imports")
    for column in ("id", "kind", "source", "finished", "seen", "new", "updated", "rejected"):
        table.add_column(column)
    for run in status["imports"]:
        table.add_row(
            str(run["id"]),
            run["kind"],
            run["source"],
            str(run["finished_at"] or "unfinished"),
            str(run["seen"]),
            str(run["inserted"]),
            str(run["updated"]),
            str(run["rejected"]),
        )
    console.print(table)
    return 0

"""`zoll audit …`: verify the hash chain, show its head, list events."""

from __future__ import annotations

import argparse

import asyncpg
from rich.table import Table

from registry import audit
from registry.cli.args import add_config_args
from registry.cli.commands.users import handle, run_db
from registry.cli.output import add_json_flag, console, emit_json
from registry.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="the tamper-evident audit log (docs/auth.md)")
    cmds = p.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    q = cmds.add_parser(
        "verify",
        help="check every event is present, unedited and chained (exit 1 if not); after a "
        "first run only the events since the last verified head are read",
    )
    add_config_args(q)
    q.add_argument(
        "--full",
        action="store_true",
        help="walk the whole chain, not only what follows the last verified head",
    )
    q.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="a head recorded earlier (zoll audit head); checks the log still contains it",
    )
    add_json_flag(q)
    q.set_defaults(handler=handle(_verify))

    q = cmds.add_parser("head", help="print SEQ:HASH of the newest event, to anchor elsewhere")
    add_config_args(q)
    add_json_flag(q)
    q.set_defaults(handler=handle(_head))

    q = cmds.add_parser("list", help="recent events, newest first")
    add_config_args(q)
    q.add_argument("--actor", help="only events of this principal (e.g. admin, cli:root)")
    q.add_argument("--action", help="exact, or a prefix ending in '.' (manifest.)")
    q.add_argument("--repository", help="repository or namespace")
    q.add_argument("--limit", type=int, default=50, help="at most this many events (50)")
    add_json_flag(q)
    q.set_defaults(handler=handle(_list))


def _verify(args: argparse.Namespace) -> int:
    try:
        anchor = audit.Head.parse(args.anchor) if args.anchor else None
    except ValueError as exc:
        console.print(f"[red]--anchor: {exc}[/]")
        return 2

    async def work(pool: asyncpg.Pool, _config: Config) -> audit.ChainReport:
        async with pool.acquire() as conn:
            since = None if args.full else await audit.verified_head(conn)
            report = await audit.verify_chain(conn, anchor=anchor, since=since)
            if report.ok:
                await audit.remember_verified(conn, report.head)
            return report

    report = run_db(args, work)
    if args.json:
        emit_json(report.to_json())
    elif report.ok:
        checked = f"{report.events} events" + (
            f" after the verified seq {report.since}" if report.since else ""
        )
        console.print(f"[green]audit log intact[/]: {checked}, head {report.head.text()}")
    else:
        table = Table("seq", "problem", "detail", title="audit log problems")
        for problem in report.problems:
            table.add_row(str(problem.seq), problem.kind, problem.message)
        console.print(table)
        if report.truncated:
            console.print("[red](more problems were found than listed)[/]")
    return 0 if report.ok else 1


def _head(args: argparse.Namespace) -> int:
    current = run_db(args, lambda pool, _c: audit.head(pool))
    if args.json:
        emit_json({"seq": current.seq, "hash": current.hash.hex()})
    else:
        print(current.text())
    return 0


def _list(args: argparse.Namespace) -> int:
    where = audit.EventFilter(actor=args.actor, action=args.action, repository=args.repository)
    found = run_db(args, lambda pool, _c: audit.events(pool, where, None, max(1, args.limit)))
    if args.json:
        emit_json(
            [
                {
                    "seq": e.seq,
                    "at": e.at.isoformat(),
                    "actor": e.actor,
                    "action": e.action,
                    "repository": e.repository,
                    "target": e.target,
                    "source": e.source,
                    "request_id": e.request_id,
                    "detail": e.detail_json(),
                }
                for e in found
            ]
        )
        return 0
    table = Table("seq", "at", "actor", "action", "repository", "target", "source")
    for e in found:
        table.add_row(
            str(e.seq),
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.action,
            e.repository or "",
            e.target or "",
            e.source or "",
        )
    console.print(table)
    return 0

"""`zoll robots …`: accounts for build systems. The secret is printed once (stdout, so it
can go straight into a CI secret store) and kept only as a slow hash."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import asyncpg

from registry.auth import accounts
from registry.auth.accounts import Principal
from registry.cli.args import add_config_args
from registry.cli.commands.users import (
    add_grant_commands,
    grant_pairs,
    handle,
    hasher_of,
    principal_json,
    print_principals,
    run_db,
    show_secret,
)
from registry.cli.output import add_json_flag, console, emit_json
from registry.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("robots", help="robot accounts for build systems (docs/auth.md)")
    robots = p.add_subparsers(dest="robots_command", metavar="COMMAND", required=True)

    q = robots.add_parser("list", help="robot accounts and their grants")
    add_config_args(q)
    add_json_flag(q)
    q.set_defaults(handler=handle(_list))

    q = robots.add_parser(
        "add", aliases=["create"], help="add robot+NAME and print its secret once"
    )
    add_config_args(q)
    q.add_argument("name", help="e.g. ci-nextcloud (becomes robot+ci-nextcloud)")
    q.add_argument(
        "--grant", action="append", metavar="ROLE:NAMESPACE", help="e.g. pusher:opendesk"
    )
    q.add_argument("--expires-days", type=int, help="the robot stops working after this")
    q.add_argument("--description", default="", help="which build system it is for")
    add_json_flag(q)
    q.set_defaults(handler=handle(_create))

    q = robots.add_parser("reset", help="issue a new secret (the old one stops working)")
    add_config_args(q)
    q.add_argument("name", help="the robot (ci or robot+ci)")
    add_json_flag(q)
    q.set_defaults(handler=handle(_reset))

    add_grant_commands(robots, robots=True)


def _list(args: argparse.Namespace) -> int:
    found = run_db(args, lambda pool, _c: accounts.load_all(pool, "robot"))
    if args.json:
        emit_json([principal_json(p) for p in found])
    else:
        print_principals(found, "robots")
    return 0


def _create(args: argparse.Namespace) -> int:
    grants = grant_pairs(args.grant)
    expires = datetime.now(UTC) + timedelta(days=args.expires_days) if args.expires_days else None

    async def work(pool: asyncpg.Pool, config: Config) -> tuple[Principal, str]:
        return await accounts.create_robot(
            pool,
            hasher_of(config),
            args.name,
            grants=grants,
            description=args.description,
            expires_at=expires,
        )

    principal, secret = run_db(args, work)
    if not args.json:
        console.print(f"created [bold]{principal.name}[/] (use it as the user name)")
    show_secret(principal.name, secret, args.json, principal_json(principal))
    return 0


def _reset(args: argparse.Namespace) -> int:
    name = accounts.robot_name(args.name)

    async def work(pool: asyncpg.Pool, config: Config) -> str | None:
        return await accounts.reset_secret(pool, hasher_of(config), name)

    secret = run_db(args, work)
    show_secret(name, secret, args.json, {"name": name})
    return 0

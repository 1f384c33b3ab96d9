"""`zoll users …`: people's accounts and the grants of any principal.

Works on the database directly (the configured DSN or the embedded one in the data
folder), so it also rescues a registry whose admin password is lost. Every change is
audited as `cli:<os user>`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from rich.table import Table

from registry.audit import acting_as
from registry.auth import accounts
from registry.auth.accounts import AccountError, Principal
from registry.auth.passwords import Hasher
from registry.auth.roles import ROLES, GrantError
from registry.cli.args import add_config_args
from registry.cli.commands.serve import config_from_args
from registry.cli.database import cli_actor, open_database
from registry.cli.output import add_json_flag, console, emit_json
from registry.config import Config, ConfigError

T = TypeVar("T")
NAME_HELP = "principal (user, robot+name, or anonymous)"
GRANT_HELP = "a role on a namespace, e.g. pusher:opendesk (repeatable)"


def run_db(args: argparse.Namespace, work: Callable[[asyncpg.Pool, Config], Awaitable[T]]) -> T:
    """Load the config, open the database, run `work` as the CLI actor."""
    config = config_from_args(args)
    quiet_logs(config)

    async def main() -> T:
        async with open_database(config) as pool:
            with acting_as(cli_actor()):
                return await work(pool, config)

    return asyncio.run(main())


def quiet_logs(config: Config) -> None:
    """Logs to stderr, warnings and worse: stdout carries only secrets and --json."""
    from registry.logs import configure_logging

    level = config.log.level if config.log.level in ("warning", "error") else "warning"
    configure_logging(config.log.model_copy(update={"level": level}))


def handle(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected failures into a message and exit code 1 (2 for configuration)."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ConfigError as exc:
            console.print(f"[red]{exc}[/]")
            return 2
        except (AccountError, GrantError) as exc:
            console.print(f"[red]{exc}[/]")
            return 1

    return wrapped


def hasher_of(config: Config) -> Hasher:
    return Hasher(config.auth.scrypt_log2_n, config.auth.kdf_concurrency)


def grant_pairs(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`ROLE:NAMESPACE` arguments."""
    out = []
    for raw in values or []:
        role, sep, namespace = raw.partition(":")
        if not sep or not role or not namespace:
            raise GrantError(f"--grant {raw!r}: use ROLE:NAMESPACE, e.g. pusher:opendesk")
        out.append((namespace, role))
    return tuple(out)


def principal_json(p: Principal) -> dict[str, Any]:
    return {
        "name": p.name,
        "kind": p.kind,
        "disabled": p.disabled,
        "expires_at": p.expires_at.isoformat() if p.expires_at else None,
        "description": p.description,
        "created_by": p.created_by,
        "grants": [{"namespace": g.namespace, "role": g.role} for g in p.grants.grants],
    }


def print_principals(found: list[Principal], title: str) -> None:
    table = Table("name", "kind", "grants", "state", title=title)
    for p in found:
        grants = ", ".join(f"{g.role} on {g.namespace}" for g in p.grants.grants) or "—"
        state = "disabled" if p.disabled else "active"
        if p.expires_at is not None:
            state += f", expires {p.expires_at:%Y-%m-%d}"
        table.add_row(p.name, p.kind, grants, state)
    console.print(table)


def read_password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    return None


def show_secret(name: str, secret: str | None, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        emit_json({**extra, "secret": secret})
        return
    if secret is not None:
        console.print(f"[bold]{name}[/]: the secret below is shown only now; store it safely.")
        sys.stdout.write(secret + "\n")


def target(args: argparse.Namespace) -> str:
    """The principal an action is about (`zoll robots … ci` means `robot+ci`)."""
    name: str = args.name
    return accounts.robot_name(name) if getattr(args, "robots", False) else name


def add_grant_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], *, robots: bool = False
) -> None:
    for verb, helptext in (("grant", "give a role on a namespace"), ("revoke", "take it back")):
        p = sub.add_parser(verb, help=helptext)
        add_config_args(p)
        p.add_argument("name", help="principal (user, robot+name, or anonymous)")
        p.add_argument("role", choices=ROLES, help="what the principal may do there")
        p.add_argument("namespace", help="'*' or a repository path prefix, e.g. opendesk")
        p.set_defaults(handler=handle(_grant if verb == "grant" else _revoke), robots=robots)
    for verb, helptext in (("disable", "stop logins and tokens"), ("enable", "allow again")):
        p = sub.add_parser(verb, help=helptext)
        add_config_args(p)
        p.add_argument("name", help=NAME_HELP)
        p.set_defaults(handler=handle(_disable if verb == "disable" else _enable), robots=robots)
    p = sub.add_parser("remove", help="delete the account and its grants")
    add_config_args(p)
    p.add_argument("name", help=NAME_HELP)
    p.set_defaults(handler=handle(_remove), robots=robots)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("users", help="people's accounts and grants (docs/auth.md)")
    users = p.add_subparsers(dest="users_command", metavar="COMMAND", required=True)

    q = users.add_parser("list", help="users, robots and anonymous with their grants")
    add_config_args(q)
    add_json_flag(q)
    q.set_defaults(handler=handle(_list))

    q = users.add_parser(
        "add",
        aliases=["create"],
        help="add a user (a password is generated unless given)",
    )
    add_config_args(q)
    q.add_argument("name", help="the user's name")
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    q.add_argument("--grant", action="append", metavar="ROLE:NAMESPACE", help=GRANT_HELP)
    q.add_argument("--description", default="", help="who or what the account is for")
    add_json_flag(q)
    q.set_defaults(handler=handle(_add))

    q = users.add_parser("passwd", help="set a new password (generated unless given)")
    add_config_args(q)
    q.add_argument("name", help="the user's name")
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_json_flag(q)
    q.set_defaults(handler=handle(_passwd))

    add_grant_commands(users)


def _list(args: argparse.Namespace) -> int:
    found = run_db(args, lambda pool, _c: accounts.load_all(pool))
    if args.json:
        emit_json([principal_json(p) for p in found])
    else:
        print_principals(found, "principals")
    return 0


def _add(args: argparse.Namespace) -> int:
    password = read_password(args)
    grants = grant_pairs(args.grant)

    async def work(pool: asyncpg.Pool, config: Config) -> tuple[Principal, str | None]:
        return await accounts.create_user(
            pool,
            hasher_of(config),
            args.name,
            password,
            grants=grants,
            description=args.description,
        )

    principal, secret = run_db(args, work)
    if not args.json:
        console.print(f"created user [bold]{principal.name}[/]")
    show_secret(principal.name, secret, args.json, principal_json(principal))
    return 0


def _passwd(args: argparse.Namespace) -> int:
    password = read_password(args)

    async def work(pool: asyncpg.Pool, config: Config) -> str | None:
        return await accounts.reset_secret(pool, hasher_of(config), args.name, password)

    secret = run_db(args, work)
    if not args.json:
        console.print(f"new secret set for [bold]{args.name}[/]")
    show_secret(args.name, secret, args.json, {"name": args.name})
    return 0


def _grant(args: argparse.Namespace) -> int:
    name = target(args)
    added = run_db(args, lambda pool, _c: accounts.add_grant(pool, name, args.namespace, args.role))
    state = "granted" if added else "(already granted)"
    console.print(f"{name}: {args.role} on {args.namespace} {state}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    name = target(args)
    removed = run_db(
        args, lambda pool, _c: accounts.remove_grant(pool, name, args.namespace, args.role)
    )
    if not removed:
        console.print(f"[red]{name} has no {args.role} on {args.namespace}[/]")
        return 1
    console.print(f"{name}: {args.role} on {args.namespace} revoked")
    return 0


def _disable(args: argparse.Namespace) -> int:
    name = target(args)
    run_db(args, lambda pool, _c: accounts.set_disabled(pool, name, True))
    console.print(f"{name} disabled")
    return 0


def _enable(args: argparse.Namespace) -> int:
    name = target(args)
    run_db(args, lambda pool, _c: accounts.set_disabled(pool, name, False))
    console.print(f"{name} enabled")
    return 0


def _remove(args: argparse.Namespace) -> int:
    name = target(args)
    run_db(args, lambda pool, _c: accounts.remove(pool, name))
    console.print(f"{name} removed")
    return 0

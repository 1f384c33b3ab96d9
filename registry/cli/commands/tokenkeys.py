"""`zoll token-keys …`: the keys that sign bearer tokens (not the attestation keys)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import asyncpg
from rich.table import Table

from registry import audit
from registry.auth import keyshare
from registry.auth.keys import TokenKeyring
from registry.cli.args import add_config_args
from registry.cli.commands.serve import config_from_args
from registry.cli.commands.users import handle, quiet_logs, run_db
from registry.cli.database import cli_actor
from registry.cli.output import add_json_flag, console, emit_json
from registry.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token-keys", help="keys that sign registry bearer tokens")
    cmds = p.add_subparsers(dest="token_keys_command", metavar="COMMAND", required=True)
    q = cmds.add_parser("list", help="signing and still-verifying keys")
    add_config_args(q)
    add_json_flag(q)
    q.set_defaults(handler=handle(_list))
    q = cmds.add_parser(
        "rotate", help="sign with a new key from now on (old tokens keep working until expiry)"
    )
    add_config_args(q)
    q.set_defaults(handler=handle(_rotate))


def keyring_of(config: Config) -> TokenKeyring:
    quiet_logs(config)
    return TokenKeyring(
        config.auth_keys_dir,
        config.auth.token_algorithm,
        config.auth.key_max_age,
        config.auth.token_ttl,
    )


def _list(args: argparse.Namespace) -> int:
    keyring = keyring_of(config_from_args(args))
    keyring.load()
    newest = keyring.signing_key()
    rows = [
        {
            "kid": k.kid,
            "algorithm": k.algorithm,
            "created": datetime.fromtimestamp(k.created, UTC).isoformat(),
            "signing": k.kid == newest.kid,
        }
        for k in keyring.all_keys()
    ]
    if args.json:
        emit_json(rows)
        return 0
    table = Table("kid", "algorithm", "created", "use", title=str(keyring.folder))
    for row in rows:
        table.add_row(
            str(row["kid"]),
            str(row["algorithm"]),
            str(row["created"]),
            "signs" if row["signing"] else "verifies",
        )
    console.print(table)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    keyring = keyring_of(config)
    keyring.load()
    key = keyring.rotate()

    async def record(pool: asyncpg.Pool, _config: Config) -> None:
        await keyshare.publish(pool, keyring)  # other instances verify it from now on
        with audit.acting_as(cli_actor()):
            await audit.record_now(
                pool, "auth.key.rotate", target=key.kid, detail={"algorithm": key.algorithm}
            )

    run_db(args, record)
    console.print(
        f"new signing key {key.kid} ({key.algorithm}); workers pick it up within a minute"
    )
    return 0

"""`zoll keys …`: the service's signing keys in its data folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rich.table import Table

from attest.servicekeys import KeyringError, ServiceKeyring, read_keyring
from registry.cli.args import add_config_args
from registry.cli.output import add_json_flag, console, emit_json


def _when(value: object) -> str:
    return "—" if value is None else str(value)


def list_cmd(args: argparse.Namespace) -> int:
    try:
        keys = read_keyring(args.data_dir)
    except KeyringError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    if args.json:
        emit_json({"keys": [k.to_json(include_location=True) for k in keys]})
        return 0
    if not keys:
        console.print(f"no keys yet in {args.data_dir / 'keys'} (one is made on first start)")
        return 0
    table = Table(title=f"service keys in {args.data_dir}")
    for column in ("keyid", "algorithm", "status", "valid from", "valid until", "source"):
        table.add_column(column)
    for key in keys:
        doc = key.to_json()
        table.add_row(
            key.keyid[:16] + "…",
            key.algorithm,
            "[green]active[/]" if key.active else "retired",
            _when(doc["validFrom"]),
            _when(doc["validUntil"]),
            key.source,
        )
    console.print(table)
    return 0


def rotate_cmd(args: argparse.Namespace) -> int:
    try:
        ring = ServiceKeyring.load_or_create(args.data_dir)
        old = ring.active
        new = ring.rotate(args.algorithm)
    except KeyringError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    if args.json:
        emit_json({"retired": old.keyid, "active": new.to_json()})
    else:
        console.print(f"retired {old.keyid}\n[green]active[/] {new.keyid} ({new.algorithm})")
        console.print("restart or reload running Zoll processes so they sign with the new key")
    return 0


def public_cmd(args: argparse.Namespace) -> int:
    try:
        keys = read_keyring(args.data_dir)
    except KeyringError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    match = [k for k in keys if (k.keyid.startswith(args.keyid) if args.keyid else k.active)]
    if len(match) != 1:
        console.print(f"[red]{len(match)} keys match; give a longer --keyid[/]")
        return 2
    sys.stdout.write(match[0].public_pem)
    return 0


def _in_data_dir(
    handler: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """The data folder as every command finds it: --data-dir, else the config (--config,
    ZOLL_CONFIG, ZOLL_DATA_DIR), else ./zoll-data."""

    def run(args: argparse.Namespace) -> int:
        if args.data_dir is None:
            from registry.cli.database import NoDatabase, cli_data_dir

            try:
                args.data_dir = cli_data_dir(args)
            except NoDatabase as exc:  # the configuration is invalid: it says why
                console.print(str(exc), style="red", markup=False, highlight=False)
                return 2
        return handler(args)

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="list, rotate and export the service signing keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    for name, handler, text in (
        ("list", list_cmd, "all published keys with their validity periods"),
        ("rotate", rotate_cmd, "make a new signing key active and retire the current one"),
        ("public", public_cmd, "print a public key as PEM (for cosign --key)"),
    ):
        parser = sub.add_parser(name, help=text)
        add_config_args(parser)
        if name != "public":
            add_json_flag(parser)
        parser.set_defaults(handler=_in_data_dir(handler))
        if name == "rotate":
            parser.add_argument(
                "--algorithm",
                choices=["ecdsa-p256", "ed25519"],
                help="of the new key (config default)",
            )
        if name == "public":
            parser.add_argument("--keyid", help="a key id or its prefix (default: the active key)")

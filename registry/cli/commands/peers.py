"""`zoll peers`: pin other Zoll nodes, list them with how far this node follows each, and
unpin them. Talks to the running service (`--url`, ZOLL_URL, or the service running from
the data folder; credentials from ZOLL_USER / ZOLL_PASSWORD): pinning is an
administrator's act and is audited there.

    zoll peers add https://zoll.land.example      # shows the fingerprints, asks, pins
    zoll peers list [--json]
    zoll peers remove zoll-land
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from registry.cli.args import add_config_args
from registry.cli.output import add_json_flag, console, emit_json, table
from registry.cli.service_api import (
    ServiceClient,
    ServiceError,
    credentials_from_env,
    light_data_dir,
    local_client,
)

TIMEOUT = 30.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("peers", help="other Zoll nodes: pin, list, unpin (federation)")
    actions = p.add_subparsers(dest="action", metavar="COMMAND", required=True)
    add = actions.add_parser("add", help="fetch a node's card, show its fingerprints, pin it")
    add.add_argument("peer_url", help="the other node's base URL")
    add.add_argument("--yes", action="store_true", help="pin without asking (scripts)")
    add.add_argument("--insecure", action="store_true", help="allow plain HTTP (loopback tests)")
    listing = actions.add_parser("list", help="pinned peers and how far this node follows each")
    remove = actions.add_parser("remove", help="unpin a peer")
    remove.add_argument("name", help="the peer's name, as `zoll peers list` shows it")
    for q in (add, listing, remove):
        add_config_args(q)
        q.add_argument(
            "--url",
            default=os.environ.get("ZOLL_URL"),
            help="this node's service URL (or ZOLL_URL); default: the service running from "
            "the data folder",
        )
        add_json_flag(q)
        q.set_defaults(handler=_handler, quick_exit=True)


def _client(args: argparse.Namespace) -> ServiceClient:
    if args.url:
        return ServiceClient(args.url, credentials_from_env(), TIMEOUT)
    data_dir = light_data_dir(args.data_dir, args.config) or Path("zoll-data")
    client = local_client(data_dir, TIMEOUT)
    if client is None:
        raise ServiceError(
            0,
            "No running service",
            f"no `zoll serve` answers from {data_dir} (or it asks for credentials: set "
            "ZOLL_USER and ZOLL_PASSWORD); give --url",
        )
    return client


def _fetch_card(url: str, insecure: bool) -> Any:
    from registry.federation.card import CardError, card_from_document
    from registry.federation.fetch import CARD_PATH

    base = url.rstrip("/")
    if base.startswith("http://") and not insecure:
        raise ServiceError(0, "Plain HTTP", f"{url} is not https; --insecure for loopback tests")
    try:
        with urllib.request.urlopen(base + CARD_PATH, timeout=TIMEOUT) as resp:  # noqa: S310
            return card_from_document(resp.read(1 << 20))
    except (OSError, CardError) as exc:
        raise ServiceError(0, "No valid node card", f"{base}: {exc}") from exc


def _handler(args: argparse.Namespace) -> int:
    try:
        if args.action == "add":
            return _add(args)
        if args.action == "list":
            return _list(args)
        client = _client(args)
        answer = client.call("DELETE", f"/api/v1/peers/{args.name}")
        if args.json:
            emit_json(answer)
        else:
            console.print(f"unpinned {args.name}")
        return 0
    except ServiceError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2 if exc.status in (0, 400, 401, 403) else 1


def _add(args: argparse.Namespace) -> int:
    card = _fetch_card(args.peer_url, args.insecure)
    if not args.json:
        console.print(
            f"{card.name} at {card.url}, log {card.log_origin}", markup=False, emoji=False
        )
        for what, value in card.fingerprints().items():
            # Plain text: rich would read ":cd:" in a fingerprint as an emoji code.
            console.print(
                f"  {what:<28} {value}", soft_wrap=True, highlight=False, markup=False, emoji=False
            )
    if not args.yes:
        if not sys.stdin.isatty():
            console.print("[red]compare the fingerprints out of band, then run with --yes[/red]")
            return 2
        if input(f"Pin {card.name} with these keys? [y/N] ").strip().lower() not in ("y", "yes"):
            console.print("not pinned")
            return 1
    body = {"url": args.peer_url, "fingerprints": card.fingerprints(), "insecure": args.insecure}
    answer = _client(args).call("POST", "/api/v1/peers", body=json.dumps(body).encode())
    if args.json:
        emit_json(answer)
    else:
        console.print(f"pinned {answer['peer']['name']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    answer = _client(args).call("GET", "/api/v1/peers")
    if args.json:
        emit_json(answer)
        return 0
    view = table(
        "peer",
        "url",
        "following",
        "read / peer size",
        "lag",
        "witnessing",
        title=f"peers of {answer['node']}",
    )
    for peer in answer["peers"]:
        follow = peer.get("follow") or {}
        witnessing = peer.get("witnessing") or {}
        state = follow.get("state", "—")
        if follow.get("last_error"):
            state += f" ({follow['last_error'][:60]})"
        cosigned = witnessing.get("cosignedSize")
        witness = (
            "—"
            if not witnessing
            else (
                f"cosigned {cosigned}"
                if not witnessing.get("lastError")
                else f"[red]{witnessing['lastError'][:60]}[/red]"
            )
        )
        view.add_row(
            peer["name"],
            peer["url"],
            state,
            f"{follow.get('entries_read', 0)} / {follow.get('peer_size', 0)}" if follow else "—",
            str(follow.get("lag_entries", "—")),
            witness,
        )
    console.print(view)
    if answer.get("forks"):
        console.print(
            f"[red]{answer['forks']} fork(s) detected[/red]: GET /api/v1/federation/forks"
        )
    return 0

"""Pinning peers as an operator would: `zoll peers add` shows the fingerprints of the
other node's signed card and pins exactly those keys; the API refuses a card whose keys
are not the ones the operator compared."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from registry.federation.card import verify_card
from tests.federation.nodes import nodes
from tests.support.served import ZOLL


async def zoll(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        ZOLL,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_peers_add_list_remove_through_the_cli(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with nodes(pg_admin_dsn, tmp_path, "zoll-a", "zoll-b") as started:
        a, b = started["zoll-a"], started["zoll-b"]
        async with http.get(f"{b.url}/api/v1/node") as resp:
            served = await resp.json()
        card = verify_card(json.dumps(served["envelope"]).encode())
        assert served["fingerprints"] == card.fingerprints()

        # without a terminal and without --yes nothing is pinned: fingerprints first
        code, _, shown = await zoll("peers", "add", b.url, "--insecure", "--url", a.url)
        assert code == 2 and "zoll-b" in shown  # people read stderr; stdout is for --json
        for fingerprint in card.fingerprints().values():
            assert fingerprint in shown
        code, _, _ = await zoll("peers", "add", b.url, "--url", a.url, "--yes")
        assert code == 2  # plain HTTP needs --insecure

        code, out, err = await zoll(
            "peers", "add", b.url, "--insecure", "--yes", "--url", a.url, "--json"
        )
        assert code == 0, err
        pinned = json.loads(out)
        assert pinned["peer"]["name"] == "zoll-b"
        assert pinned["fingerprints"] == card.fingerprints()
        code, out, _ = await zoll("peers", "list", "--url", a.url, "--json")
        listed = json.loads(out)
        assert listed["node"] == "zoll-a"
        assert [p["name"] for p in listed["peers"]] == ["zoll-b"]
        assert listed["peers"][0]["logKey"] == card.log_key

        # the service checks the card it fetches against what the operator compared
        wrong = dict(card.fingerprints(), log="00:11")
        async with http.post(
            f"{a.url}/api/v1/peers", json={"url": b.url, "insecure": True, "fingerprints": wrong}
        ) as resp:
            assert resp.status == 409
        # a node cannot pin itself
        async with http.post(
            f"{a.url}/api/v1/peers", json={"url": a.url, "insecure": True}
        ) as resp:
            assert resp.status == 409 and "this node" in (await resp.json())["detail"]

        code, _, _ = await zoll("peers", "remove", "zoll-b", "--url", a.url)
        assert code == 0
        code, out, _ = await zoll("peers", "list", "--url", a.url, "--json")
        assert json.loads(out)["peers"] == []
        audit = await a.registry.pool.fetch(
            "SELECT action, target FROM audit_events WHERE action LIKE 'peer.%' ORDER BY seq"
        )
        assert [(r["action"], r["target"]) for r in audit] == [
            ("peer.pin", "zoll-b"),
            ("peer.unpin", "zoll-b"),
        ]

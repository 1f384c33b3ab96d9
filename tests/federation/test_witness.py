"""Nodes witness each other's logs (c2sp.org/tlog-witness): a cosignature only after a
consistency proof from what the witness cosigned last, the witness's state survives a
restart, and a log that rewrites its history is refused, with the evidence kept."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from attest.tlog.checkpoint import SignedCheckpoint
from attest.tlog.cosignature import cosignatures
from attest.tlog.witnessing import AddCheckpoint
from registry.federation.card import verify_card
from tests.federation.nodes import append_decisions, federation_of, nodes, origin_of, pin
from tests.support.servers import LiveRegistry, live_registry


async def _card_of(http: aiohttp.ClientSession, node: LiveRegistry) -> dict:  # type: ignore[type-arg]
    async with http.get(f"{node.url}/api/v1/node") as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


async def test_a_peer_cosigns_each_consistent_checkpoint(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with nodes(pg_admin_dsn, tmp_path, "zoll-a", "zoll-b") as started:
        a, b = started["zoll-a"], started["zoll-b"]
        await pin(http, a, b)
        await pin(http, b, a)
        card_b = verify_card(
            __import__("json").dumps((await _card_of(http, b))["envelope"]).encode()
        )
        witness_b = card_b.cosigner()

        await append_decisions(a, 3)
        peers_of_a = await federation_of(a).peers()
        cosigned = await federation_of(a).cosigning.collect(peers_of_a)
        assert cosigned.checkpoint.size == 3
        assert [c.cosigner.name for c in cosignatures(cosigned.note, [witness_b])] == [
            witness_b.name
        ]
        # the served checkpoint carries the cosignature
        async with http.get(f"{a.url}/api/v1/log/checkpoint") as resp:
            served = SignedCheckpoint.parse(await resp.text())
        assert len(cosignatures(served.note, [witness_b])) == 1

        await append_decisions(a, 5, "more")
        cosigned = await federation_of(a).cosigning.collect(peers_of_a)
        assert cosigned.checkpoint.size == 8
        assert len(cosignatures(cosigned.note, [witness_b])) == 1
        state = await b.registry.pool.fetchrow(
            "SELECT size FROM witness_state WHERE origin = $1", origin_of("zoll-a")
        )
        assert state["size"] == 8

        # a log that forgets what the witness cosigned learns the size (409), as the spec says
        stale = AddCheckpoint(0, (), await a.services.log.checkpoint())
        async with http.post(f"{b.url}/witness/add-checkpoint", data=stale.to_bytes()) as resp:
            assert resp.status == 409
            assert resp.headers["Content-Type"].startswith("text/x.tlog.size")
            assert await resp.text() == "8\n"
        # an unknown log is 404; a checkpoint not signed by the pinned key is 403
        async with http.post(
            f"{a.url}/witness/add-checkpoint",
            data=AddCheckpoint(0, (), await b.services.log.checkpoint()).to_bytes(),
        ) as resp:
            assert resp.status == 200  # b is pinned in a: a witnesses b
        forged_text = stale.checkpoint.note.text.replace("\n8\n", "\n9\n")
        forged = SignedCheckpoint.parse(
            forged_text + "\n" + "".join(s.line() for s in stale.checkpoint.note.signatures)
        )
        async with http.post(
            f"{b.url}/witness/add-checkpoint", data=AddCheckpoint(8, (), forged).to_bytes()
        ) as resp:
            assert resp.status == 403


async def _rewrite_history(node: LiveRegistry) -> None:
    """What a malicious log operator would do: throw the tree away and build another."""
    async with node.registry.pool.acquire() as conn, conn.transaction():
        for table in ("tlog_cosignatures", "tlog_checkpoints", "tlog_nodes"):
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute(
            "UPDATE attestations SET status = 'signed', log_id = NULL, "
            "log_index = NULL WHERE log_id IS NOT NULL"
        )
        await conn.execute("DELETE FROM tlog_leaves")
        await conn.execute("UPDATE tlog_logs SET size = 0, root = sha256(''::bytea)")


async def test_the_witness_remembers_across_restarts_and_refuses_a_rewritten_log(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with nodes(pg_admin_dsn, tmp_path, "zoll-a") as started_a:
        a = started_a["zoll-a"]
        async with nodes(pg_admin_dsn, tmp_path, "zoll-b") as started_b:
            b = started_b["zoll-b"]
            await pin(http, a, b)
            await pin(http, b, a)
            await append_decisions(a, 4)
            await federation_of(a).cosigning.collect(await federation_of(a).peers())
            b_config = b.config
        # b stopped; it starts again on its own database and folder
        async with live_registry(b_config) as b:
            remembered = "SELECT size FROM witness_state WHERE origin = 'zoll-a.test/log'"
            assert await b.registry.pool.fetchval(remembered) == 4
            await _pin_url(http, a, b)
            await append_decisions(a, 2, "after-restart")
            cosigned = await federation_of(a).cosigning.collect(await federation_of(a).peers())
            assert len(cosigned.note.signatures) == 2  # a's own and b's: b proved 4 → 6
            assert await b.registry.pool.fetchval(remembered) == 6

            await _rewrite_history(a)
            await append_decisions(a, 7, "rewritten")
            refused = await federation_of(a).cosigning.collect(await federation_of(a).peers())
            assert refused.checkpoint.size == 7
            assert len(refused.note.signatures) == 1  # b did not cosign the other history
            error = await a.registry.pool.fetchval("SELECT last_error FROM tlog_witnesses")
            assert error is not None and "422" in error

            async with http.get(f"{b.url}/api/v1/federation/forks") as resp:
                forks = (await resp.json())["forks"]
            assert len(forks) == 1
            fork = forks[0]
            assert fork["peer"] == "zoll-a" and fork["origin"] == origin_of("zoll-a")
            known = SignedCheckpoint.parse(fork["knownCheckpoint"]).checkpoint
            offending = SignedCheckpoint.parse(fork["offendingCheckpoint"]).checkpoint
            assert (known.size, offending.size) == (6, 7)
            # both are signed by a's pinned log key: the pair is the evidence
            card_a = verify_card(
                __import__("json").dumps((await _card_of(http, a))["envelope"]).encode()
            )
            from attest.tlog.checkpoint import verify_checkpoint

            for text in (fork["knownCheckpoint"], fork["offendingCheckpoint"]):
                verify_checkpoint(text, [card_a.log_verifier()])
            state = await b.registry.pool.fetchrow(
                "SELECT state FROM federation_follow WHERE peer = 'zoll-a'"
            )
            assert state["state"] == "forked"
            assert await _forks_counted(http, b) >= 1  # the alarm (a process-wide counter)
            # trying again adds no second copy of the same evidence
            await federation_of(a).cosigning.collect(await federation_of(a).peers())
            assert await b.registry.pool.fetchval("SELECT count(*) FROM federation_forks") == 1


async def _forks_counted(http: aiohttp.ClientSession, node: LiveRegistry) -> float:
    async with http.get(f"{node.url}/metrics") as resp:
        text = await resp.text()
    found = re.search(r'^zoll_federation_forks_total\{peer="zoll-a"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def _pin_url(http: aiohttp.ClientSession, node: LiveRegistry, other: LiveRegistry) -> None:
    """A restarted node listens on a new port: pin it again (same keys, new URL)."""
    await pin(http, node, other)

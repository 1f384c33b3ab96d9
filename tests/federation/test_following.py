"""Reading a peer's log from its tiles: large bundles arrive whole, the peer's root is
recomputed from the entries, and progress is resumable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from attest.tlog.entries import admission_record
from registry.federation.follower import follow_once
from registry.federation.worker import FederationWorker
from tests.federation.nodes import append_decisions, federation_of, nodes, pin


async def test_a_bundle_larger_than_one_read_arrives_whole(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Entries of a few hundred KiB each (an SBOM statement is): the bundle comes in many
    TCP reads, and the follower must read it to its end."""
    follow = {"follow": [{"peer": "zoll-a", "repositories": ["*"]}]}
    async with (
        nodes(pg_admin_dsn, tmp_path, "zoll-a") as first,
        nodes(pg_admin_dsn, tmp_path, "zoll-b", federation=follow) as second,
    ):
        a, b = first["zoll-a"], second["zoll-b"]
        await pin(http, b, a)
        big = [
            admission_record(
                subject_digest="sha256:" + f"{n:02d}" * 32,
                repository="demo/app",
                decision="denied",
                reasons=[f"reason {i} " + "x" * 1000 for i in range(300)],
                decided_at=datetime.now(UTC),
            )
            for n in range(4)
        ]
        await a.services.log.append(big)
        await append_decisions(a, 3)
        await FederationWorker(a.services).witness_round()
        [peer] = await federation_of(b).peers()
        result = await follow_once(federation_of(b), peer, b.services.jobs)
        assert (result.state, result.read) == ("following", 7)
        assert result.verified_size == await a.services.log.size() == 7
        # nothing new: the next round reads nothing and stays verified
        again = await follow_once(federation_of(b), peer, b.services.jobs)
        assert (again.read, again.verified_size) == (0, 7)

"""Reading a peer's log from its tiles: large bundles arrive whole, the peer's root is
recomputed from the entries, and progress is resumable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from attest.tlog.entries import admission_record
from registry.db.notify import RETRY_SECONDS
from registry.federation import tiles
from registry.federation.follower import RoundResult, follow_once
from registry.federation.worker import FederationWorker
from tests.federation.nodes import append_decisions, federation_of, nodes, pin
from tests.support.oci import Image, push_image
from tests.support.servers import LiveRegistry

SLOW = {"poll_seconds": 60, "witness_seconds": 60}
"""Federation rounds far apart: what happens within seconds was woken, not polled."""


@asynccontextmanager
async def a_followed_by_b(
    admin_dsn: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    *,
    pipeline: bool = False,
    pinned: bool = True,
    **federation: Any,
) -> AsyncIterator[tuple[LiveRegistry, LiveRegistry]]:
    """Node a, and node b following all of a's repositories; with `pipeline` both run
    their jobs and federation loops (else tests drive the rounds), with `pinned` b has
    pinned a. `federation` settings apply to both."""
    follow = {**federation, "follow": [{"peer": "zoll-a", "repositories": ["*"]}]}
    async with (
        nodes(admin_dsn, tmp_path, "zoll-a", pipeline=pipeline, federation=federation) as first,
        nodes(admin_dsn, tmp_path, "zoll-b", pipeline=pipeline, federation=follow) as second,
    ):
        a, b = first["zoll-a"], second["zoll-b"]
        if pinned:
            await pin(http, b, a)
        yield a, b


async def read_once(follower: LiveRegistry) -> RoundResult:
    """One follow round of `follower` on its one peer."""
    [peer] = await federation_of(follower).peers()
    return await follow_once(federation_of(follower), peer, follower.services.jobs)


async def test_a_bundle_larger_than_one_read_arrives_whole(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Entries of a few hundred KiB each (an SBOM statement is): the bundle comes in many
    TCP reads, and the follower must read it to its end."""
    async with a_followed_by_b(pg_admin_dsn, tmp_path, http) as (a, b):
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
        result = await read_once(b)
        assert (result.state, result.read) == ("following", 7)
        assert result.verified_size == await a.services.log.size() == 7
        # nothing new: the next round reads nothing and stays verified
        again = await read_once(b)
        assert (again.read, again.verified_size) == (0, 7)


async def test_a_log_far_behind_is_published_in_steps_and_read_whole(
    pg_admin_dsn: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first publication of a large log (an upgrade, a restored node) commits its tiles
    step by step, so the lock that the pipeline's witnessing waits for is never held for
    all of it; a follower still reads the whole log, and no step's partial tile is left."""
    monkeypatch.setattr(tiles, "CATCH_UP", 256)  # 65,536 leaves in the service
    async with a_followed_by_b(pg_admin_dsn, tmp_path, http) as (a, b):
        async with a.registry.pool.acquire() as conn:  # every committed publication, in order
            await conn.execute(
                """CREATE TABLE published_sizes (n serial, size bigint);
                   CREATE FUNCTION note_size() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN INSERT INTO published_sizes (size) VALUES (NEW.size); RETURN NEW; END $$;
                   CREATE TRIGGER note_size AFTER INSERT OR UPDATE ON tlog_tiles
                   FOR EACH ROW EXECUTE FUNCTION note_size();"""
            )
        await append_decisions(a, 600)
        await FederationWorker(a.services).witness_round()
        sizes = [
            r["size"]
            for r in await a.registry.pool.fetch("SELECT size FROM published_sizes ORDER BY n")
        ]
        assert [s for s in sizes if s > 0] == [256, 512, 600]
        partial = {
            "tile/" + str(p).split("/tile/", 1)[1]
            for p in (tmp_path / "zoll-a").rglob("*")
            if p.is_file() and p.parent.name.endswith(".p")
        }
        # 600 = 2·256 + 88 entries (a Zoll-named bundle) and level-0 hashes, and 2
        # level-1 hashes; the first step's tile/1/000.p/1 is gone
        assert partial == {"tile/zoll-entries/002.p/88", "tile/0/002.p/88", "tile/1/000.p/2"}
        result = await read_once(b)
        assert (result.read, result.verified_size) == (600, await a.services.log.size())


async def test_a_follower_reads_on_at_once_when_its_peer_admits(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Rounds every 60 s, yet the follower is current within seconds: pinning starts the
    follow at once, an admission makes the node publish its tiles at once, and its
    add-checkpoint request to the follower (its witness) wakes the follower's reading."""
    async with a_followed_by_b(
        pg_admin_dsn, tmp_path, http, pipeline=True, pinned=False, **SLOW
    ) as (a, b):
        await append_decisions(a, 2)
        await asyncio.sleep(0.5)  # both nodes' first rounds are behind them
        await pin(http, a, b)  # b witnesses a: a's add-checkpoint requests reach b
        await pin(http, b, a)
        assert await _caught_up(b, 2), "pinning did not start the follow"
        started = time.monotonic()
        await push_image(http, a.url, "demo/app", Image.random(), "1.0")  # judged and logged
        await _reads_past(a, b, 2, started)
        assert time.monotonic() - started < 20 < 60


async def test_wake_ups_are_heard_again_after_the_database_cut_every_connection(
    pg_admin_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """A failover or restart ends the connections that hear NOTIFY: they come back by
    themselves, so the follower is still current within seconds, not at the next 60 s."""
    async with a_followed_by_b(
        pg_admin_dsn, tmp_path, http, pipeline=True, pinned=False, **SLOW
    ) as (a, b):
        await pin(http, a, b)
        await pin(http, b, a)
        await append_decisions(a, 2)
        await a.services.federation.cosigning.collect(await a.services.federation.peers())
        assert await _caught_up(b, 2), "not following"
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            for node in (a, b):
                database = urlsplit(node.services.config.database.dsn or "").path.lstrip("/")
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    database,
                )
        finally:
            await admin.close()
        await asyncio.sleep(2 * RETRY_SECONDS + 0.5)  # the listeners reconnect
        started = time.monotonic()
        for _ in range(20):  # the pools meet the connections that were cut first
            try:
                await push_image(http, a.url, "demo/app", Image.random(), "1.0")
                break
            except AssertionError:
                await asyncio.sleep(0.25)
        await _reads_past(a, b, 2, started)


async def _reads_past(a: LiveRegistry, b: LiveRegistry, size: int, started: float) -> None:
    """b has read a's log beyond `size` entries within 20 s of `started`."""
    now = 0
    while time.monotonic() - started < 20:
        now = await a.services.log.size()
        if now > size and await _caught_up(b, now, wait=0.2):
            return
    raise AssertionError(f"b did not read a's log past {size} entries (a has {now})")


async def _caught_up(node: LiveRegistry, size: int, wait: float = 10) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = await node.registry.pool.fetchval(
            "SELECT verified_size FROM federation_follow WHERE peer = 'zoll-a'"
        )
        if got is not None and got >= size:
            return True
        await asyncio.sleep(0.05)
    return False

"""The federation's background work in each worker process: collect cosignatures and
publish the log's tiles; follow the peers' logs. Each job runs in one process of the
cluster at a time (a PostgreSQL session lock per job), so several workers or service
instances on one database neither duplicate it nor race.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from registry.federation import tiles
from registry.federation.follower import FollowError, follow_once
from registry.federation.service import Federation
from registry.logs import get_logger
from registry.pipeline.services import PipelineServices

log = get_logger("zoll.federation")


@contextlib.asynccontextmanager
async def _exclusive(federation: Federation, name: str) -> AsyncIterator[bool]:
    """True if this process got the cluster-wide lock `name` (held until the block ends)."""
    async with federation.pool.acquire() as conn:
        got = await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name)
        try:
            yield bool(got)
        finally:
            if got:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", name)


class FederationWorker:
    def __init__(self, services: PipelineServices) -> None:
        assert services.federation is not None
        self.svc = services
        self.federation = services.federation
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.kick = asyncio.Event()
        """Set to run the witness round now (after an admission, say) instead of waiting."""

    async def start(self) -> None:
        config = self.federation.config.federation
        self._tasks.append(
            asyncio.create_task(self._every(config.witness_seconds, self.witness_round, self.kick))
        )
        self._tasks.append(asyncio.create_task(self._every(config.poll_seconds, self.follow_round)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _every(
        self,
        seconds: float,
        work: Callable[[], Awaitable[None]],
        kick: asyncio.Event | None = None,
    ) -> None:
        while not self._stop.is_set():
            try:
                await work()
            except Exception:  # a bad round is logged; the next one tries again
                log.exception("federation round failed", work=work.__name__)
            waker = kick or self._stop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), seconds)
            if kick is not None:
                kick.clear()

    async def witness_round(self) -> None:
        """Collect cosignatures for the latest checkpoint, then publish tiles up to it."""
        async with _exclusive(
            self.federation, f"tlog-witness:{self.federation.log.origin}"
        ) as mine:
            if not mine:
                return
            peers = await self.federation.peers()
            if peers:
                signed = await self.federation.cosigning.collect(peers)
            else:
                signed = await self.federation.cosigning.latest()
            await tiles.publish(self.federation, self.svc.registry.driver, signed)

    async def follow_round(self) -> None:
        rules = self.federation.config.federation.follow
        followed = {rule.peer for rule in rules}
        if not followed:
            return
        for peer in await self.federation.peers():
            if peer.name not in followed:
                continue
            async with _exclusive(self.federation, f"federation-follow:{peer.name}") as mine:
                if not mine:
                    continue
                try:
                    await follow_once(self.federation, peer, self.svc.jobs)
                except FollowError as exc:
                    log.warning("peer log not read", peer=peer.name, error=str(exc))

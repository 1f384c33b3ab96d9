"""The federation's background work in each worker process: collect cosignatures and
publish the log's tiles; follow the peers' logs — at intervals, and at once when woken
(registry/federation/wakeups.py). Each job runs in one process of the
cluster at a time (a PostgreSQL session lock per job), so several workers or service
instances on one database neither duplicate it nor race.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from registry.db.notify import Listener
from registry.federation.follower import FollowError, follow_once
from registry.federation.service import Federation
from registry.federation.wakeups import CHANNEL
from registry.logs import get_logger
from registry.pipeline.services import PipelineServices

log = get_logger("zoll.federation")
GATHER: Final = 0.1
"""Seconds a woken round waits first, so a burst of admissions makes one round."""


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
        self._wakers = {"publish": asyncio.Event(), "follow": asyncio.Event()}
        self._listener = Listener(
            services.config.database.dsn, {CHANNEL: self._woken}, self._wake_all
        )

    async def start(self) -> None:
        config = self.federation.config.federation
        await self._listener.start()
        witness, follow = self._wakers["publish"], self._wakers["follow"]
        self._tasks.append(
            asyncio.create_task(self._every(config.witness_seconds, self.witness_round, witness))
        )
        self._tasks.append(
            asyncio.create_task(self._every(config.poll_seconds, self.follow_round, follow))
        )

    def _wake_all(self) -> None:
        """Wake-ups sent while the database was away were lost: run both rounds."""
        for event in self._wakers.values():
            event.set()

    def _woken(self, payload: str) -> None:
        if payload in self._wakers:
            self._wakers[payload].set()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._listener.close()

    async def _every(
        self, seconds: float, work: Callable[[], Awaitable[None]], woken: asyncio.Event
    ) -> None:
        """`work` every `seconds`, or soon after `woken` is set."""
        while not self._stop.is_set():
            woken.clear()
            try:
                await work()
            except Exception:  # a bad round is logged; the next one tries again
                log.exception("federation round failed", work=work.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), seconds)
                await asyncio.sleep(GATHER)

    async def witness_round(self) -> None:
        """Publish the tiles up to the latest checkpoint and collect its cosignatures."""
        async with _exclusive(
            self.federation, f"tlog-witness:{self.federation.log.origin}"
        ) as mine:
            if not mine:
                return
            cosigning = self.federation.cosigning
            peers = await self.federation.peers()
            if peers:  # publishes the tiles before asking, and again with cosignatures
                await cosigning.collect(peers)
            elif cosigning.publish is not None:
                await cosigning.publish(await cosigning.latest())

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

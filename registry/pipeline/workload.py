"""What analysing images may cost: per image, per pusher, and which slots it may take.

A hostile image can stay within every size limit and still be expensive (a 5 MB layer
that expands to 4 GiB); a hostile pusher can push many. So:
- each analysis runs under `AnalysisLimits` from `pipeline.analysis` (time, bytes
  expanded, expansion ratio, entries): what trips a limit becomes a `limit` finding, the
  image does not pass, and the analysis stops there;
- each pusher's analyses may take `pusher_seconds_per_hour` seconds and expand
  `pusher_expanded_bytes_per_hour` bytes in the last hour (all workers, counted in
  `pipeline_work`); beyond, its further images wait (the job is postponed, no attempt
  spent) while other pushers' images go on;
- in each worker, one pusher's analyses hold at most `pipeline.concurrency - 1` job slots
  (at least one), so while a hostile image is analysed a slot stays free for others.
The pusher of an image is the actor of its last `manifest.push` in the audit log; the
service's own pushes (mirrors, rebuilds) are not counted against anyone.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from policy.analyzer.limits import AnalysisLimits
from registry.config import PipelineConfig
from registry.pipeline.jobs import RetryLater

WAIT_SECONDS = 30.0
"""How long a postponed analysis waits before it asks again."""


def analysis_limits(config: PipelineConfig) -> AnalysisLimits:
    a = config.analysis
    return AnalysisLimits(
        max_uncompressed_bytes=a.max_expanded_bytes,
        max_ratio=a.max_ratio,
        ratio_floor=a.ratio_floor,
        max_entries=a.max_entries,
        max_seconds=a.max_seconds,
    )


async def pusher_of(pool: asyncpg.Pool, repository: str, digest: str) -> str | None:
    """Who pushed this manifest last (None: the service itself, or nobody on record)."""
    row = await pool.fetchrow(
        """SELECT actor, actor_kind FROM audit_events
           WHERE repository = $1 AND action = 'manifest.push' AND target = $2
           ORDER BY seq DESC LIMIT 1""",
        repository,
        digest,
    )
    if row is None or row["actor_kind"] == "system":
        return None
    return str(row["actor"])


class Workload:
    """One worker's running analyses per pusher, and the pushers' hourly budgets."""

    def __init__(self, pool: asyncpg.Pool, config: PipelineConfig) -> None:
        self.pool = pool
        self.config = config
        self.running: collections.Counter[str] = collections.Counter()

    @property
    def slots_per_pusher(self) -> int:
        return max(1, self.config.concurrency - 1)

    @asynccontextmanager
    async def analysis(
        self, pusher: str | None, digest: str
    ) -> AsyncIterator[list[tuple[float, int]]]:
        """Hold a slot for one analysis of `pusher`'s image, or RetryLater. The caller
        appends (seconds, bytes expanded) to the yielded list; it is recorded at the end."""
        if pusher is None:
            yield []
            return
        if self.running[pusher] >= self.slots_per_pusher:
            raise RetryLater(
                f"{pusher!r} already has {self.running[pusher]} image(s) in analysis here; "
                "the other slots stay for other pushers",
                delay=WAIT_SECONDS / 6,
            )
        await self._within_budget(pusher)
        self.running[pusher] += 1
        spent: list[tuple[float, int]] = []
        try:
            yield spent
        finally:
            self.running[pusher] -= 1
            if self.running[pusher] <= 0:
                del self.running[pusher]
            for seconds, expanded in spent:
                await self.pool.execute(
                    """WITH old AS (DELETE FROM pipeline_work
                                    WHERE at < now() - interval '1 day')
                       INSERT INTO pipeline_work (pusher, digest, seconds, expanded)
                       VALUES ($1, $2, $3, $4)""",
                    pusher,
                    digest,
                    seconds,
                    expanded,
                )

    async def _within_budget(self, pusher: str) -> None:
        row = await self.pool.fetchrow(
            """SELECT coalesce(sum(seconds), 0) AS seconds, coalesce(sum(expanded), 0) AS bytes
               FROM pipeline_work WHERE pusher = $1 AND at > now() - interval '1 hour'""",
            pusher,
        )
        assert row is not None
        a = self.config.analysis
        if row["seconds"] >= a.pusher_seconds_per_hour or row["bytes"] >= (
            a.pusher_expanded_bytes_per_hour
        ):
            raise RetryLater(
                f"{pusher!r} used its analysis budget for this hour "
                f"({row['seconds']:.0f} s, {row['bytes']} bytes expanded); waiting",
                delay=WAIT_SECONDS,
            )

"""Durable jobs in PostgreSQL: survive restarts, are retried, never run twice at once.

Enqueueing is idempotent by key (a partial unique index over queued and running jobs).
Workers claim with `FOR UPDATE SKIP LOCKED` and hold a lease; a worker that dies stops
renewing it, and the job is queued again once the lease runs out. Failures are retried
with exponential backoff up to `max_attempts`, then the job is `failed` with its error.

Claims are fair (`Lane`): fresh work before retries, work someone waits for (a push)
before bulk work (mirror sets), and sources of one priority take turns.

Enqueueing a job that is running right now marks it `rerun`: its inputs changed while it
ran (a signature pushed while its image was being verified), so it is queued again when
it ends instead of the request being lost.

A job that queues its successor (the next stage of the same image) may keep it: the row
is inserted already running under the same worker, which runs it next without a claim
or a NOTIFY waking every idle worker (`Handoff`). It is an ordinary durable job all the
same: if the worker dies first, it is queued again like any other job of that worker.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from registry.processes import alive, dead_holders

NOTIFY_CHANNEL = "zoll_jobs"
PUSH = 0
"""Priority of work someone waits for: the stages of a pushed image, a pull-through fetch."""
BULK = 2
"""Priority of background work: mirror sets and the images they bring, re-evaluations."""


@dataclass(frozen=True, slots=True)
class Lane:
    """Whose work a job is, for fair scheduling: claims take fresh work before retries,
    then the lowest `priority`, then the `source` served longest ago (sources of one
    priority take turns), then the oldest job."""

    priority: int = PUSH
    source: str = "push"


LANE: ContextVar[Lane | None] = ContextVar("zoll_job_lane", default=None)
"""The lane of the job running in this task: what it queues inherits it (the stages of a
mirrored image stay bulk work of its upstream)."""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lane: Lane = Lane()
    worker: str = ""
    """Who holds it: with `attempts`, which claim this is (each claim counts one more)."""


@dataclass
class Handoff:
    """Lets the job a worker is running keep one job it queues, for `worker` to run next."""

    worker: str
    kinds: Collection[str]
    job: Job | None = None
    closed: bool = False
    """Set when the worker's chain of jobs has ended: a task a handler left running that
    queues something later must not hand it to a worker that will not run it."""

    def wants(self, kind: str) -> bool:
        return not self.closed and self.job is None and kind in self.kinds


HANDOFF: ContextVar[Handoff | None] = ContextVar("zoll_job_handoff", default=None)
"""Set by the runner around a job's handler; enqueue() looks at it."""


class RetryLater(Exception):
    """Not a failure: the job's inputs are not ready yet; try again after `delay` seconds
    without counting an attempt."""

    def __init__(self, reason: str, delay: float = 5.0) -> None:
        super().__init__(reason)
        self.delay = delay


class Failed(Exception):
    """A failure the job tells in one line (an upstream that cannot be reached): logged
    without a traceback, retried with backoff."""


class Permanent(Failed):
    """A failure retrying cannot fix (bad input, a refused upstream): fail the job now."""


class LeaseLost(Exception):
    """The job is no longer this claim's: its lease ran out and it was queued again, and
    perhaps claimed by another worker. What this run found is dropped, not recorded
    over the other run's."""


class Cancelled(Exception):
    """Not a failure: what the job was for is gone (an image deleted while its jobs
    waited or ran). The job ends as `cancelled`, quietly, and is not retried."""


class JobQueue:
    """Ending or renewing a job checks that it is still the claim that does so (its
    `worker` and `attempts`; `LeaseLost` if not): a run that outlived its lease must
    not end the run that took over."""

    def __init__(self, pool: asyncpg.Pool, *, lease_seconds: float = 600, max_attempts: int = 5):
        self.pool = pool
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    async def enqueue(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        delay: float = 0,
        lane: Lane | None = None,
    ) -> int | None:
        """Queue a job unless one with the same key is queued (then nothing happens) or
        running (then it runs again when it ends); return the new job's id, if any.
        Inside a running job, the first job it queues without delay is handed to it.
        The lane: `lane`, else that of the running job, else a push's."""
        lane = lane or LANE.get() or Lane()
        handoff = HANDOFF.get()
        holder = handoff.worker if handoff and delay == 0 and handoff.wants(kind) else None
        queued = await self._insert([(kind, key, payload)], [lane], delay, holder)
        if not queued:
            return None
        if handoff is not None and holder is not None:
            handoff.job = Job(
                queued[0], kind, key, payload, 1, self.max_attempts, lane, handoff.worker
            )
        return queued[0]

    async def enqueue_many(
        self,
        jobs: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        lanes: Sequence[Lane] | None = None,
    ) -> list[int]:
        """Queue (kind, key, payload) jobs in one statement, each as `enqueue` would (never
        handed over), each in its lane of `lanes`; return the ids of those newly queued."""
        default = LANE.get() or Lane()
        return await self._insert(jobs, lanes or [default] * len(jobs), 0, None)

    async def _insert(
        self,
        jobs: Sequence[tuple[str, str, dict[str, Any]]],
        lanes: Sequence[Lane],
        delay: float,
        holder: str | None,
    ) -> list[int]:
        """Queued already: nothing to do. Running: run it again when it ends (not before
        it started: a job handed over and not begun yet sees the new inputs anyway). With
        `holder`, the new jobs are running under that worker and nobody is woken."""
        unique = {
            key: (kind, payload, lane)
            for (kind, key, payload), lane in zip(jobs, lanes, strict=True)
        }
        rows = await self.pool.fetch(
            """WITH queued AS (
                 INSERT INTO jobs (kind, key, payload, max_attempts, run_after,
                                   state, worker, attempts, lease_until, priority, source)
                 SELECT k, y, p::jsonb, $4, now() + make_interval(secs => $5),
                        CASE WHEN $6::text IS NULL THEN 'queued' ELSE 'running' END, $6,
                        CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END,
                        CASE WHEN $6::text IS NULL THEN NULL
                             ELSE now() + make_interval(secs => $7) END, r, s
                 FROM unnest($1::text[], $2::text[], $3::text[], $9::smallint[], $10::text[])
                      AS j(k, y, p, r, s)
                 ON CONFLICT (key) WHERE state IN ('queued', 'running')
                 DO UPDATE SET rerun = true
                    WHERE jobs.state = 'running' AND jobs.started_at IS NOT NULL
                 RETURNING id, kind, xmax = 0 AS inserted)
               SELECT id, inserted,
                      CASE WHEN inserted AND $6::text IS NULL THEN pg_notify($8, kind) END
               FROM queued ORDER BY id""",
            [kind for kind, _, _ in unique.values()],
            list(unique),
            [json.dumps(payload) for _, payload, _ in unique.values()],
            self.max_attempts,
            delay,
            holder,
            self.lease_seconds,
            NOTIFY_CHANNEL,
            [lane.priority for _, _, lane in unique.values()],
            [lane.source for _, _, lane in unique.values()],
        )
        return [int(r["id"]) for r in rows if r["inserted"]]

    async def claim(self, worker: str, kinds: list[str]) -> Job | None:
        """The next job due, fairly (`Lane`): fresh work before retries, pushes before
        bulk work, the source served longest ago first, then the oldest job."""
        row = await self.pool.fetchrow(
            """WITH claimed AS (
                 UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $1,
                        lease_until = now() + make_interval(secs => $3), updated_at = now(),
                        started_at = now()
                 WHERE id = (SELECT j.id FROM jobs j
                              LEFT JOIN job_sources s ON s.source = j.source
                              WHERE j.state = 'queued' AND j.run_after <= now()
                                AND j.kind = ANY($2)
                              ORDER BY j.attempts > 0, j.priority, s.claimed_at NULLS FIRST,
                                       j.run_after, j.id
                              FOR UPDATE OF j SKIP LOCKED LIMIT 1)
                 RETURNING id, kind, key, payload, attempts, max_attempts, priority, source),
               served AS (
                 INSERT INTO job_sources (source, claimed_at)
                 SELECT source, clock_timestamp() FROM claimed
                 ON CONFLICT (source) DO UPDATE SET claimed_at = EXCLUDED.claimed_at)
               SELECT * FROM claimed""",
            worker,
            kinds,
            self.lease_seconds,
        )
        if row is None:
            return None
        return Job(
            row["id"],
            row["kind"],
            row["key"],
            row["payload"],
            row["attempts"],
            row["max_attempts"],
            Lane(row["priority"], row["source"]),
            worker,
        )

    async def extend(self, job: Job) -> bool:
        """Renew the lease; False if the job is no longer this claim's."""
        held = await self.pool.fetchval(
            """UPDATE jobs SET lease_until = now() + make_interval(secs => $4)
               WHERE (id, state, worker, attempts) = ($1, 'running', $2, $3) RETURNING true""",
            job.id,
            job.worker,
            job.attempts,
            self.lease_seconds,
        )
        return bool(held)

    async def complete(
        self, job: Job, result: dict[str, Any] | None = None, *, then: Job | None = None
    ) -> None:
        """Mark `job` done (queued again if a rerun was asked for meanwhile) and, in the
        same statement, `then` (a job handed to this worker) started. Raises `LeaseLost`
        (after starting `then`) if the job is no longer this claim's."""
        ended = await self.pool.fetch(
            """WITH begun AS (
                 UPDATE jobs SET started_at = now(), updated_at = now()
                 WHERE id = $5 AND state = 'running'),
               ended AS (
                 UPDATE jobs SET state = CASE WHEN rerun THEN 'queued' ELSE 'done' END,
                        attempts = CASE WHEN rerun THEN 0 ELSE attempts END,
                        run_after = CASE WHEN rerun THEN now() ELSE run_after END,
                        rerun = false, result = $4, lease_until = NULL, last_error = NULL,
                        updated_at = now()
                 WHERE (id, state, worker, attempts) = ($1, 'running', $2, $3)
                 RETURNING kind, state)
               SELECT CASE WHEN state = 'queued' THEN pg_notify($6, kind) END FROM ended""",
            job.id,
            job.worker,
            job.attempts,
            result,
            None if then is None else then.id,
            NOTIFY_CHANNEL,
        )
        if not ended:
            raise LeaseLost(job.key)

    async def begin(self, job: Job) -> None:
        """A job handed to this worker starts now."""
        await self.pool.execute(
            "UPDATE jobs SET started_at = now(), updated_at = now() WHERE id = $1", job.id
        )

    async def release(self, job: Job) -> None:
        """Give a handed-over job that will not run here back to the queue."""
        await self.pool.execute(
            """WITH released AS (
                 UPDATE jobs SET state = 'queued', attempts = attempts - 1, worker = NULL,
                        lease_until = NULL, updated_at = now()
                 WHERE id = $1 AND state = 'running' AND started_at IS NULL RETURNING kind)
               SELECT pg_notify($2, kind) FROM released""",
            job.id,
            NOTIFY_CHANNEL,
        )

    async def fail(self, job: Job, error: str, *, permanent: bool = False) -> datetime | None:
        """Record a failure; return when the job runs again (retried, or a rerun was asked
        for while it ran: then with a fresh set of attempts), None if it failed for good."""
        retry = not permanent and job.attempts < job.max_attempts
        backoff = min(600.0, 2.0**job.attempts) * random.uniform(0.8, 1.2)
        row = await self.pool.fetchrow(
            """UPDATE jobs SET state = CASE WHEN $4 OR rerun THEN 'queued' ELSE 'failed' END,
                      attempts = CASE WHEN rerun AND NOT $4 THEN 0 ELSE attempts END,
                      run_after = now() + make_interval(
                          secs => CASE WHEN $4 THEN $6 ELSE 0 END),
                      rerun = false, last_error = $5, lease_until = NULL, updated_at = now()
               WHERE (id, state, worker, attempts) = ($1, 'running', $2, $3)
               RETURNING state, run_after""",
            job.id,
            job.worker,
            job.attempts,
            retry,
            error[:4000],
            backoff,
        )
        if row is None:
            raise LeaseLost(job.key)
        if row["state"] != "queued":
            return None
        next_try: datetime = row["run_after"]
        return next_try

    async def cancel(self, job: Job, reason: str) -> None:
        """End a job whose subject is gone; its result says why. A rerun asked for
        meanwhile is dropped with it: there is nothing left to run it on."""
        ended = await self.pool.fetchval(
            """UPDATE jobs SET state = 'cancelled', rerun = false, lease_until = NULL,
                      last_error = NULL, result = $4, updated_at = now()
               WHERE (id, state, worker, attempts) = ($1, 'running', $2, $3) RETURNING true""",
            job.id,
            job.worker,
            job.attempts,
            {"outcome": "cancelled", "reason": reason},
        )
        if not ended:
            raise LeaseLost(job.key)

    async def cancel_queued(self, keys: Collection[str], reason: str) -> int:
        """Cancel the queued jobs of these keys (running ones notice by themselves)."""
        status = await self.pool.execute(
            """UPDATE jobs SET state = 'cancelled', result = $2, updated_at = now()
               WHERE key = ANY($1::text[]) AND state = 'queued'""",
            list(keys),
            {"outcome": "cancelled", "reason": reason},
        )
        return int(status.split()[-1])

    async def postpone(self, job: Job, delay: float, reason: str) -> None:
        """Queue again later without spending an attempt (inputs not ready yet)."""
        queued = await self.pool.fetchval(
            """UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL,
                      rerun = false, last_error = $5, run_after = now() + make_interval(secs => $4),
                      updated_at = now()
               WHERE (id, state, worker, attempts) = ($1, 'running', $2, $3) RETURNING true""",
            job.id,
            job.worker,
            job.attempts,
            delay,
            reason[:4000],
        )
        if not queued:
            raise LeaseLost(job.key)

    async def requeue_expired(self) -> int:
        """Jobs whose worker died: queue them again (the attempt already counted)."""
        status = await self.pool.execute(
            """UPDATE jobs SET state = CASE WHEN attempts < max_attempts
                                            THEN 'queued' ELSE 'failed' END,
                      last_error = coalesce(last_error, 'worker lost its lease'),
                      rerun = false, lease_until = NULL, updated_at = now()
               WHERE state = 'running' AND lease_until < now()"""
        )
        return int(status.split()[-1])

    async def requeue_orphans(self, host: str, running: Callable[[int], bool] = alive) -> int:
        """Jobs running under a process of this host that no longer exists (a killed
        worker, a crashed service) are queued again at once instead of waiting for their
        lease; the supervisor calls this when a worker dies, and at start."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT worker FROM jobs WHERE state = 'running' AND starts_with(worker, $1)",
            f"{host}:",
        )
        dead = dead_holders([r["worker"] for r in rows], host, running)
        if not dead:
            return 0
        status = await self.pool.execute(
            """UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = now(),
                      rerun = false, last_error = coalesce(last_error, 'worker process died')
               WHERE worker = ANY($1::text[]) AND state = 'running'""",
            dead,
        )
        return int(status.split()[-1])

    async def requeue_worker(self, worker: str) -> int:
        """Queue again the jobs `worker` (a job slot) holds: it lost track of them."""
        status = await self.pool.execute(
            """UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = now(),
                      rerun = false, last_error = coalesce(last_error, 'the database went away')
               WHERE worker = $1 AND state = 'running'""",
            worker,
        )
        return int(status.split()[-1])

    async def counts(self) -> dict[str, dict[str, int]]:
        rows = await self.pool.fetch("SELECT kind, state, count(*) AS n FROM jobs GROUP BY 1, 2")
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            out.setdefault(r["kind"], {})[r["state"]] = int(r["n"])
        return out

"""The durable job queue under the pipeline: a request made while a job runs is not lost,
and a job handed to the worker that queued it is still an ordinary durable job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.pipeline.jobs import HANDOFF, Handoff, Job, JobQueue, LeaseLost
from registry.pipeline.runner import HANDLERS, PipelineRunner
from registry.pipeline.services import PipelineServices
from tests.support.servers import LiveRegistry, live_registry, registry_config

TEST_KINDS = ("test-first", "test-second", "test-gate")


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    async with live_registry(registry_config(pg_dsn, tmp_path / "data", "filesystem", None)) as z:
        yield z


@pytest.fixture
def handlers() -> Iterator[dict[str, Any]]:
    """Job kinds of this test: `test-first` queues `test-second`; `test-gate` waits on an
    event. Each records the order in which jobs ran."""
    ran: list[str] = []
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def first(svc: PipelineServices, job: Job) -> dict[str, Any]:
        ran.append(job.key)
        await svc.jobs.enqueue("test-second", f"second:{job.key}", {})
        return {}

    async def second(svc: PipelineServices, job: Job) -> dict[str, Any]:
        ran.append(job.key)
        return {}

    async def gated(svc: PipelineServices, job: Job) -> dict[str, Any]:
        ran.append(job.key)
        entered.set()
        await gate.wait()
        return {}

    HANDLERS.update({"test-first": first, "test-second": second, "test-gate": gated})
    yield {"ran": ran, "gate": gate, "entered": entered}
    for kind in TEST_KINDS:
        HANDLERS.pop(kind, None)


async def queued_and_claimed(jobs: JobQueue, kind: str, key: str, worker: str) -> Job:
    """A job of `kind`, queued and then claimed by `worker` (as the runner's loop does)."""
    await jobs.enqueue(kind, key, {})
    job = await jobs.claim(worker, [kind])
    assert job is not None and job.key == key
    return job


async def taken_elsewhere(jobs: JobQueue, key: str) -> Job:
    """The queued `test-second` job `key`, claimed by some other worker."""
    job = await jobs.claim("elsewhere", ["test-second"])
    assert job is not None and job.key == key
    return job


async def states(zoll: LiveRegistry) -> dict[str, list[str]]:
    rows = await zoll.registry.pool.fetch("SELECT key, state FROM jobs ORDER BY id")
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["key"], []).append(row["state"])
    return out


async def test_a_request_while_the_job_runs_runs_it_again(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    runner = PipelineRunner(zoll.services)
    assert await jobs.enqueue("test-gate", "gate", {}) is not None
    assert await jobs.enqueue("test-gate", "gate", {}) is None  # queued already: one job
    job = await jobs.claim("w", ["test-gate"])
    assert job is not None
    running = asyncio.create_task(runner.run(job))
    await handlers["entered"].wait()
    # Its inputs change while it runs (a signature pushed during verification).
    assert await jobs.enqueue("test-gate", "gate", {}) is None
    handlers["gate"].set()
    await running
    assert await states(zoll) == {"gate": ["queued"]}
    again = await jobs.claim("w", ["test-gate"])
    assert again is not None and again.id == job.id and again.attempts == 1
    await runner.run(again)
    assert handlers["ran"] == ["gate", "gate"]
    assert await states(zoll) == {"gate": ["done"]}  # no third run nobody asked for


async def test_a_handed_over_job_runs_next_in_the_same_worker(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    runner = PipelineRunner(zoll.services)
    job = await queued_and_claimed(jobs, "test-first", "a", "host:1:0")
    ran = await runner.run(job, worker="host:1:0")
    assert [j.kind for j in ran] == ["test-first", "test-second"]
    assert handlers["ran"] == ["a", "second:a"]
    rows = await zoll.registry.pool.fetch(
        "SELECT kind, state, worker, attempts, started_at IS NOT NULL AS started FROM jobs"
    )
    assert {r["kind"]: (r["state"], r["worker"], r["attempts"], r["started"]) for r in rows} == {
        "test-first": ("done", "host:1:0", 1, True),
        "test-second": ("done", "host:1:0", 1, True),
    }


async def test_a_runner_that_may_not_take_the_kind_leaves_it_queued(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    job = await queued_and_claimed(jobs, "test-first", "b", "cli")
    ran = await PipelineRunner(zoll.services).run(job, kinds=["test-first"])
    assert [j.kind for j in ran] == ["test-first"]
    assert (await states(zoll))["second:b"] == ["queued"]
    await taken_elsewhere(jobs, "second:b")


async def test_a_handed_over_job_of_a_dead_worker_is_queued_again(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    """The worker died after queueing the next stage and before starting it."""
    jobs = zoll.services.jobs
    job = await queued_and_claimed(jobs, "test-first", "c", "host:999999:0")
    first_handler = HANDLERS["test-first"]
    handoff = Handoff("host:999999:0", ["test-second"])
    token = HANDOFF.set(handoff)
    try:
        await first_handler(zoll.services, job)
    finally:
        HANDOFF.reset(token)
    assert handoff.job is not None
    assert (await states(zoll))["second:c"] == ["running"]
    # Nobody else can take it while its worker lives …
    assert await jobs.claim("other", ["test-second"]) is None
    # … and once the process is gone, a restart queues it again.
    assert await jobs.requeue_orphans("host", lambda pid: pid != 999999) == 2
    await taken_elsewhere(jobs, "second:c")


async def test_a_cancelled_worker_gives_back_the_job_it_did_not_start(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs

    async def first_then_wait(svc: PipelineServices, job: Job) -> dict[str, Any]:
        await svc.jobs.enqueue("test-second", f"second:{job.key}", {})
        handlers["entered"].set()
        await asyncio.Event().wait()  # stopped here
        return {}

    HANDLERS["test-first"] = first_then_wait
    job = await queued_and_claimed(jobs, "test-first", "d", "host:1:0")
    task = asyncio.create_task(PipelineRunner(zoll.services).run(job, worker="host:1:0"))
    await handlers["entered"].wait()
    assert (await states(zoll))["second:d"] == ["running"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await states(zoll))["second:d"] == ["queued"]
    again = await taken_elsewhere(jobs, "second:d")
    assert again.attempts == 1


async def test_many_jobs_queued_at_once_behave_like_one_by_one(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    busy = await queued_and_claimed(jobs, "test-gate", "busy", "w")
    await jobs.begin(busy)
    queued = await jobs.enqueue_many(
        [
            ("test-second", "x", {"n": 1}),
            ("test-second", "y", {"n": 2}),
            ("test-second", "x", {"n": 1}),  # the same job twice: queued once
            ("test-gate", "busy", {}),  # running: runs again when it ends
        ]
    )
    assert len(queued) == 2
    assert await states(zoll) == {"busy": ["running"], "x": ["queued"], "y": ["queued"]}
    rerun = await zoll.registry.pool.fetchval("SELECT rerun FROM jobs WHERE key = 'busy'")
    assert rerun is True
    claimed = [await jobs.claim("w", ["test-second"]) for _ in range(3)]
    assert sorted((j.key, j.payload["n"]) for j in claimed if j) == [("x", 1), ("y", 2)]


async def test_a_job_queued_after_its_worker_moved_on_is_not_held(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    """A task a handler leaves behind may queue work later: it goes to the queue, not to
    a worker that has finished its chain and will never run it."""
    jobs = zoll.services.jobs
    later = asyncio.Event()
    left_behind: list[asyncio.Task[int | None]] = []

    async def first_leaves_a_task(svc: PipelineServices, job: Job) -> dict[str, Any]:
        async def queue_later() -> int | None:
            await later.wait()
            return await svc.jobs.enqueue("test-second", f"second:{job.key}", {})

        left_behind.append(asyncio.create_task(queue_later()))
        return {}

    HANDLERS["test-first"] = first_leaves_a_task
    job = await queued_and_claimed(jobs, "test-first", "e", "host:1:0")
    ran = await PipelineRunner(zoll.services).run(job, worker="host:1:0")
    assert [j.kind for j in ran] == ["test-first"]
    later.set()
    assert await left_behind[0] is not None
    assert (await states(zoll))["second:e"] == ["queued"]


async def expire_and_take_elsewhere(zoll: LiveRegistry, key: str) -> Job:
    """The lease of running job `key` runs out (its worker stalled), housekeeping queues
    it again and another worker claims it."""
    await zoll.registry.pool.execute(
        "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE key = $1", key
    )
    assert await zoll.services.jobs.requeue_expired() == 1
    job = await zoll.services.jobs.claim("elsewhere", [*TEST_KINDS])
    assert job is not None and job.key == key
    return job


async def test_a_run_that_outlived_its_lease_does_not_end_the_run_that_took_over(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    stale = await queued_and_claimed(jobs, "test-second", "k", "host:1:0")
    current = await expire_and_take_elsewhere(zoll, "k")
    assert current.attempts == stale.attempts + 1

    assert not await jobs.extend(stale)
    for ending in (
        jobs.complete(stale, {"by": "stale"}),
        jobs.fail(stale, "stale failure"),
        jobs.postpone(stale, 5, "stale postponement"),
        jobs.cancel(stale, "stale cancellation"),
    ):
        with pytest.raises(LeaseLost):
            await ending
    row = await zoll.registry.pool.fetchrow("SELECT state, worker, attempts, result FROM jobs")
    assert (row["state"], row["worker"], row["attempts"], row["result"]) == (
        "running",
        "elsewhere",
        current.attempts,
        None,
    )
    assert await jobs.extend(current)
    await jobs.complete(current, {"by": "elsewhere"})
    row = await zoll.registry.pool.fetchrow("SELECT state, result FROM jobs")
    assert (row["state"], row["result"]) == ("done", {"by": "elsewhere"})


async def test_a_runner_whose_lease_ran_out_leaves_the_job_to_its_new_holder(
    zoll: LiveRegistry, handlers: dict[str, Any]
) -> None:
    jobs = zoll.services.jobs
    job = await queued_and_claimed(jobs, "test-gate", "slow", "host:1:0")
    running = asyncio.create_task(PipelineRunner(zoll.services).run(job))
    await handlers["entered"].wait()
    current = await expire_and_take_elsewhere(zoll, "slow")
    handlers["gate"].set()
    await running  # ends quietly: its outcome is dropped
    assert await states(zoll) == {"slow": ["running"]}
    await jobs.complete(current, {})
    assert await states(zoll) == {"slow": ["done"]}


async def test_a_renewal_cut_off_by_the_database_does_not_end_the_lease(
    zoll: LiveRegistry, handlers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database drops the connection of a lease renewal in flight: the runner keeps
    renewing, so the job is not queued again under its running handler."""
    jobs = zoll.services.jobs
    monkeypatch.setattr(jobs, "lease_seconds", 0.9)  # renewed every 0.3 s
    job = await queued_and_claimed(jobs, "test-gate", "renewed", "host:1:0")
    running = asyncio.create_task(PipelineRunner(zoll.services).run(job))
    await handlers["entered"].wait()
    pool = zoll.registry.pool
    async with pool.acquire() as conn, conn.transaction():
        # The row locked: the next renewal waits on it, and its connection is cut.
        await conn.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job.id)
        for _ in range(100):
            cut = await pool.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE query LIKE 'UPDATE jobs SET lease_until%' AND wait_event_type = 'Lock'"""
            )
            if cut:
                break
            await asyncio.sleep(0.05)
        assert cut == 1
    await asyncio.sleep(2.0)  # more than two leases
    assert await pool.fetchval("SELECT lease_until > now() FROM jobs WHERE id = $1", job.id)
    assert await jobs.requeue_expired() == 0
    handlers["gate"].set()
    await running
    assert await states(zoll) == {"renewed": ["done"]}

"""Fair scheduling of the pipeline's jobs: a push is judged before a mirror backlog, a big
source does not starve a small one, a retry never goes ahead of fresh work; and what the
queue holds (depth and age per kind, failures, mirror progress) is in /metrics."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry.mirror.sets import MirrorSet
from registry.mirror.store import apply_and_queue
from registry.pipeline.jobs import BULK, Job, JobQueue, Lane
from registry.pipeline.runner import HANDLERS, PipelineRunner
from registry.pipeline.services import PipelineServices
from tests.support.oci import Image, push_image
from tests.support.servers import LiveRegistry, live_registry, registry_config


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    async with live_registry(registry_config(pg_dsn, tmp_path / "data", "filesystem", None)) as z:
        yield z


def backlog_set(entries: int) -> MirrorSet:
    """A mirror set of `entries` upstream repositories (its jobs are what counts here)."""
    mirrors = [
        {"name": f"e{n}", "source": f"upstream.example/team/app{n}", "target": f"m/app{n}"}
        | {"tags": ["1.0"]}
        for n in range(entries)
    ]
    return MirrorSet.model_validate({"version": 1, "name": "backlog", "mirrors": mirrors})


async def claim(jobs: JobQueue, kinds: list[str]) -> Job:
    job = await jobs.claim("test", kinds)
    assert job is not None
    return job


async def test_a_push_goes_before_a_mirror_backlog(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    await apply_and_queue(zoll.registry.pool, backlog_set(30), "sha256:test")
    digest = await push_image(http, zoll.url, "team/pushed", Image.random(), "1.0")
    first = await claim(zoll.services.jobs, ["mirror-entry", "verify"])
    assert (first.kind, first.payload.get("digest")) == ("verify", digest)


async def test_sources_take_turns(zoll: LiveRegistry) -> None:
    """Ten images of one upstream queued before one image of another: the other's image
    is second, not eleventh."""
    jobs = zoll.services.jobs
    for n in range(10):
        await jobs.enqueue("mirror-image", f"big/{n}", {}, lane=Lane(BULK, "mirror:big"))
    await jobs.enqueue("mirror-image", "small/0", {}, lane=Lane(BULK, "mirror:small"))
    order = [(await claim(jobs, ["mirror-image"])).key for _ in range(4)]
    assert order[:2] == ["big/0", "small/0"], order
    assert order[2:] == ["big/1", "big/2"], order


async def test_a_retry_never_goes_ahead_of_fresh_work(zoll: LiveRegistry) -> None:
    jobs = zoll.services.jobs
    await jobs.enqueue("verify", "retried", {})  # a push's stage: the highest priority
    failing = await claim(jobs, ["verify"])
    assert await jobs.fail(failing, "storage unavailable") is not None
    # its backoff has passed: it is due again, and older than everything below
    await zoll.registry.pool.execute("UPDATE jobs SET run_after = now() WHERE key = 'retried'")
    await jobs.enqueue("mirror-image", "fresh", {}, lane=Lane(BULK, "mirror:any"))
    order = [(await claim(jobs, ["verify", "mirror-image"])).key for _ in range(2)]
    assert order == ["fresh", "retried"]


@pytest.fixture
def failing_kind() -> Any:
    async def fails(svc: PipelineServices, job: Job) -> dict[str, Any]:
        raise RuntimeError("upstream went away")

    HANDLERS["test-fails"] = fails
    yield "test-fails"
    HANDLERS.pop("test-fails", None)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text exposition."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_show_the_queue_failures_and_mirror_progress(
    zoll: LiveRegistry, http: aiohttp.ClientSession, failing_kind: str
) -> None:
    await apply_and_queue(zoll.registry.pool, backlog_set(3), "sha256:test")
    await zoll.registry.pool.execute(
        "UPDATE jobs SET run_after = now() - interval '42 seconds', created_at = run_after"
    )
    await zoll.services.jobs.enqueue(failing_kind, "doomed", {})
    job = await claim(zoll.services.jobs, [failing_kind])
    await zoll.registry.pool.execute(
        "UPDATE jobs SET attempts = max_attempts WHERE id = $1", job.id
    )
    job = dataclasses.replace(job, attempts=job.max_attempts)
    await PipelineRunner(zoll.services).run(job)  # its last attempt: failed for good

    async with http.get(f"{zoll.url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    assert sample(text, "zoll_jobs", kind="mirror-entry", state="queued") == 3
    age = sample(text, "zoll_jobs_waiting_seconds", kind="mirror-entry")
    assert age is not None and 42 <= age < 120, age
    assert sample(text, "zoll_job_outcomes_total", kind=failing_kind, outcome="failed") == 1
    assert sample(text, "zoll_mirror_entries", set="backlog", state="resolving") == 3
    assert sample(text, "zoll_mirror_images", set="backlog", state="wanted") == 0

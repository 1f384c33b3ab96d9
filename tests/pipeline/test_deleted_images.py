"""An image deleted while its pipeline jobs wait or run: the jobs end quietly as
`cancelled`, never as failures retried for half an hour with a traceback each time.

The deletion lands at the worst moment on purpose: the test holds PostgreSQL's lock on
the manifests table, lets the stage run into it (past its own check that the image
exists), deletes the image in the lock's transaction and lets go."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from registry.pipeline.jobs import Job
from registry.pipeline.runner import PipelineRunner
from tests.policy.layouts import member, tar_bytes
from tests.support.oci import Image, push_image
from tests.support.servers import LiveRegistry, live_registry, registry_config

REPO = "team/app"


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", None)
    async with live_registry(config) as live:
        yield live


def small_image() -> Image:
    """An image the analyser reads for real: one gzip layer with a file in it."""
    layer = gzip.compress(tar_bytes([(member("app/hello"), b"hello\n")]), mtime=0)
    image = Image.random(layers=0)
    image.layers = [layer]
    return image


async def push(zoll: LiveRegistry, http: aiohttp.ClientSession) -> str:
    return await push_image(http, zoll.url, REPO, small_image(), "1.0")


async def run_stage(zoll: LiveRegistry, stage: str) -> Job:
    """Claim the image's `stage` job and run it (only that stage) to its end."""
    job = await zoll.services.jobs.claim("test", [stage])
    assert job is not None, f"no {stage} job queued"
    await PipelineRunner(zoll.services).run(job, kinds=[stage])
    return job


async def job_rows(zoll: LiveRegistry) -> dict[str, tuple[str, str | None]]:
    rows = await zoll.registry.pool.fetch("SELECT kind, state, last_error FROM jobs ORDER BY id")
    return {r["kind"]: (r["state"], r["last_error"]) for r in rows}


async def delete_while_running(zoll: LiveRegistry, digest: str, stage: str) -> None:
    """Run `stage` with the image deleted under it, after its start but before it reads
    the manifest again."""
    dsn = zoll.config.database.dsn
    assert dsn is not None
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE manifests IN ACCESS EXCLUSIVE MODE")
        job = await zoll.services.jobs.claim("test", [stage])
        assert job is not None
        running = asyncio.create_task(PipelineRunner(zoll.services).run(job, kinds=[stage]))
        for _ in range(600):  # until the stage waits on the lock (or ended without it)
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE relation = 'manifests'::regclass"
                " AND NOT granted"
            )
            if waiting or running.done():
                break
            await asyncio.sleep(0.05)
        assert waiting, f"the {stage} stage never read the manifests"
        # What `DELETE /v2/<name>/manifests/<digest>` does at its core.
        await conn.execute(
            """DELETE FROM manifests WHERE digest = $1
                 AND repository_id = (SELECT id FROM repositories WHERE name = $2)""",
            digest,
            REPO,
        )
        await tx.commit()
        await asyncio.wait_for(running, 60)
    finally:
        await conn.close()


async def test_a_job_queued_for_a_deleted_image_is_cancelled(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    digest = await push(zoll, http)
    async with http.delete(f"{zoll.url}/v2/{REPO}/manifests/{digest}") as r:
        assert r.status == 202
    assert (await job_rows(zoll))["verify"] == ("cancelled", None)
    assert await zoll.services.jobs.claim("test", ["verify"]) is None  # nothing left to run


async def test_the_scan_of_an_image_deleted_under_it_is_cancelled(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    digest = await push(zoll, http)
    await run_stage(zoll, "verify")
    await delete_while_running(zoll, digest, "scan")
    state, error = (await job_rows(zoll))["scan"]
    assert (state, error) == ("cancelled", None), error  # not AnalysisError: no manifest
    result = await zoll.registry.pool.fetchval("SELECT result FROM jobs WHERE kind = 'scan'")
    assert "deleted" in json.dumps(result)


async def test_the_attestation_of_an_image_deleted_under_it_is_cancelled(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    digest = await push(zoll, http)
    await run_stage(zoll, "verify")
    await run_stage(zoll, "scan")
    await delete_while_running(zoll, digest, "attest")
    rows = await job_rows(zoll)
    assert rows["attest"] == ("cancelled", None), rows  # not AssertionError in _attach
    assert "admit" not in rows  # nothing queued after it


async def test_an_image_that_stays_runs_to_its_end(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """The control: the same image, not deleted, is judged (a cancel needs a deletion)."""
    await push(zoll, http)
    for stage in ("verify", "scan", "attest", "admit"):
        await run_stage(zoll, stage)
    assert {state for state, _ in (await job_rows(zoll)).values()} == {"done"}

"""`zoll serve` losing its processes: workers killed with -9 (one, then all), the embedded
PostgreSQL and SeaweedFS killed. The supervisor replaces workers (their upload leases and
job claims are released at once), restarts the embedded backends on the same data and
address, and /readyz says what is down meanwhile. One service for the whole module."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest

from registry.embedded.postgres import postmaster_pid, running_dsn
from tests.faults.conftest import audit_verifies, get_as_client, readyz_within
from tests.support.oci import Image, push_image
from tests.support.served import Served

pytestmark = pytest.mark.slow
NO_AUTH = {"ZOLL_AUTH__ENABLED": "false"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("faults-serve") / "data"
    service = Served(data_dir, "--workers", "2", env=NO_AUTH)
    service.data_dir = data_dir  # type: ignore[attr-defined]
    try:
        yield service
    finally:
        assert service.stop() == 0, "".join(service.output[-40:])


def _data_dir(served: Served) -> Path:
    path: Path = served.data_dir  # type: ignore[attr-defined]
    return path


@pytest.fixture
async def db(served: Served) -> AsyncIterator[asyncpg.Connection]:
    dsn = running_dsn(_data_dir(served) / "postgres")
    assert dsn is not None
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _workers(served: Served) -> set[int]:
    """The worker processes: the supervisor's children that are not SeaweedFS."""
    children = psutil.Process(served.proc.pid).children()
    return {p.pid for p in children if "weed" not in " ".join(p.cmdline())}


def _url(served: Served) -> str:
    return f"http://{served.host}"


async def _push(http: aiohttp.ClientSession, served: Served, blob: bytes) -> int:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with http.post(
        f"{_url(served)}/v2/faults/serve/blobs/uploads/", params={"digest": digest}, data=blob
    ) as r:
        await r.read()
        return r.status


async def _pulled(http: aiohttp.ClientSession, served: Served, blob: bytes) -> bool:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    return await get_as_client(http, f"{_url(served)}/v2/faults/serve/blobs/{digest}") == blob


async def _until(check: object, seconds: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


async def test_a_killed_worker_is_replaced_and_its_claims_released_at_once(
    served: Served, http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    async with http.post(f"{_url(served)}/v2/faults/serve/blobs/uploads/") as r:
        assert r.status == 202
        location = _url(served) + r.headers["Location"]
    held = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b"x" * MiB
        await held.wait()  # never set: the PATCH stays in its worker

    patch = asyncio.create_task(http.patch(location, data=stalled_body()))
    upload_id = location.rsplit("/", 1)[-1]

    async def leased() -> bool:
        return bool(
            await db.fetchval("SELECT busy_by FROM upload_sessions WHERE id = $1::uuid", upload_id)
        )

    await _until(leased, 10)
    holder = await db.fetchval("SELECT busy_by FROM upload_sessions WHERE id = $1::uuid", upload_id)
    victim = int(holder.split(":")[1])
    assert victim in _workers(served)
    # A pipeline job the same worker holds (its kind has no handler: nobody else runs it).
    job = await db.fetchval(
        """INSERT INTO jobs (kind, key, state, worker, attempts, lease_until, started_at)
           VALUES ('fault-probe', 'fault-probe:1', 'running', $1, 1,
                   now() + interval '600 seconds', now()) RETURNING id""",
        f"{socket.gethostname()}:{victim}:0",
    )

    os.kill(victim, signal.SIGKILL)
    with pytest.raises(aiohttp.ClientError):
        await patch
    _, body = await readyz_within(http, _url(served), ready=False, seconds=5)
    assert "1 of 2 running" in str(body["checks"]["workers"])  # type: ignore[index]

    async def released() -> bool:
        state = await db.fetchval("SELECT state FROM jobs WHERE id = $1", job)
        lease = await db.fetchval(
            "SELECT busy_by FROM upload_sessions WHERE id = $1::uuid", upload_id
        )
        return state == "queued" and lease is None

    await _until(released, 10)  # not after the job's 600 s lease, nor the upload's 60 s
    await readyz_within(http, _url(served), ready=True, seconds=30)
    workers = _workers(served)
    assert len(workers) == 2 and victim not in workers

    blob = os.urandom(3 * MiB)
    async with http.patch(location, data=blob) as r:  # the client's retry: no 409
        assert r.status == 202, await r.text()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    async with http.put(location, params={"digest": digest}) as r:
        assert r.status == 201, await r.text()
    assert await _pulled(http, served, blob)
    await db.execute("DELETE FROM jobs WHERE id = $1", job)


async def test_killing_every_worker_keeps_the_backends_and_the_data(
    served: Served, http: aiohttp.ClientSession
) -> None:
    blob = os.urandom(100_000)
    assert await _push(http, served, blob) == 201
    postgres = postmaster_pid(_data_dir(served) / "postgres")
    for pid in _workers(served):
        os.kill(pid, signal.SIGKILL)
    await readyz_within(http, _url(served), ready=True, seconds=30)
    assert served.proc.poll() is None, "the supervisor stays"
    assert postmaster_pid(_data_dir(served) / "postgres") == postgres, "PostgreSQL stayed up"
    assert len(_workers(served)) == 2
    assert await _pulled(http, served, blob)


async def test_a_killed_embedded_postgres_is_restarted(
    served: Served, http: aiohttp.ClientSession
) -> None:
    """Killed mid-push and mid-pipeline: the push in flight fails clearly (or was
    acknowledged and stays), the pipeline finishes its image after the restart."""
    kept = os.urandom(200_000)
    assert await _push(http, served, kept) == 201
    image = Image.random(layers=1)
    digest = await push_image(http, _url(served), "faults/pipeline", image, "1")
    folder = _data_dir(served) / "postgres"
    old = postmaster_pid(folder)
    assert old is not None
    in_flight = os.urandom(4 * MiB)
    killed = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        for offset in range(0, len(in_flight), MiB):
            yield in_flight[offset : offset + MiB]
            if offset == MiB:
                os.kill(old, signal.SIGKILL)  # mid-push, mid-pipeline
                killed.set()
            await asyncio.sleep(0.3)

    in_flight_digest = "sha256:" + hashlib.sha256(in_flight).hexdigest()
    async with (
        asyncio.timeout(60),
        http.post(
            f"{_url(served)}/v2/faults/serve/blobs/uploads/",
            params={"digest": in_flight_digest},
            data=slowly(),
        ) as r,
    ):
        pushed = r.status
        if pushed == 503:
            assert r.headers["Retry-After"]
            assert (await r.json())["errors"][0]["code"] == "UNAVAILABLE"
    assert killed.is_set() and pushed in (201, 503)

    _, body = await readyz_within(http, _url(served), ready=False, seconds=5)
    assert "failed" in str(body["checks"])
    await readyz_within(http, _url(served), ready=True, seconds=60)
    assert postmaster_pid(folder) not in (None, old)
    assert await _pulled(http, served, kept), "an acknowledged push survives"
    if pushed == 201:
        assert await _pulled(http, served, in_flight)
    assert await _push(http, served, in_flight) == 201  # the client's retry
    dsn = running_dsn(folder)
    assert dsn is not None

    conn = await asyncpg.connect(dsn)
    try:

        async def pipeline_done() -> bool:
            busy = await conn.fetchval(
                """SELECT count(*) FROM jobs WHERE payload->>'digest' = $1
                   AND state IN ('queued', 'running')""",
                digest,
            )
            admitted = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE payload->>'digest' = $1 AND kind = 'admit'",
                digest,
            )
            return busy == 0 and admitted > 0

        await _until(pipeline_done, 90)
    finally:
        await conn.close()
    await audit_verifies(dsn)


async def test_a_killed_embedded_seaweedfs_is_restarted(
    served: Served, http: aiohttp.ClientSession
) -> None:
    kept = os.urandom(300_000)
    assert await _push(http, served, kept) == 201
    weed = [
        p for p in psutil.Process(served.proc.pid).children() if "weed" in " ".join(p.cmdline())
    ]
    assert len(weed) == 1
    os.killpg(weed[0].pid, signal.SIGKILL)

    _, body = await readyz_within(http, _url(served), ready=False, seconds=5)
    assert str(body["checks"]["storage"]).startswith("failed")  # type: ignore[index]
    await readyz_within(http, _url(served), ready=True, seconds=60)
    assert await _pulled(http, served, kept)
    assert await _push(http, served, os.urandom(10_000)) == 201

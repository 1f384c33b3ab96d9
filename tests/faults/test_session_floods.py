"""Upload-session floods and storage quotas: one robot cannot open sessions without end
(429 with the OCI error body beyond its cap, per principal and per repository), idle
sessions expire soon, and a principal's storage quota in a namespace is enforced while
its upload arrives — before the bytes are stored, not after."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.auth.conftest import Accounts, auth_settings
from tests.faults.conftest import audit_verifies
from tests.support.servers import LiveRegistry, live_registry, registry_config

PER_PRINCIPAL = 20
PER_REPOSITORY = 30
QUOTA = 1024 * 1024


@pytest.fixture
async def capped(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        auth=auth_settings(),
        uploads={
            "max_sessions_per_principal": PER_PRINCIPAL,
            "max_sessions_per_repository": PER_REPOSITORY,
            "session_expiry": 120,
            "empty_session_expiry": 60,
        },
        quotas=[{"prefix": "team/", "bytes_per_principal": QUOTA}],
    )
    async with live_registry(config) as live:
        yield live


async def _open(
    http: aiohttp.ClientSession, live: LiveRegistry, repo: str
) -> aiohttp.ClientResponse:
    async with http.post(f"{live.url}/v2/{repo}/blobs/uploads/") as r:
        await r.read()
        return r


async def test_a_session_flood_is_capped_per_principal_and_per_repository(
    capped: LiveRegistry,
) -> None:
    people = Accounts(capped)
    robot, _ = await people.robot("flooder", ("flood", "pusher"), ("team", "pusher"))
    await people.user("builder", ("flood", "pusher"))
    async with people.session(robot) as flooder:
        statuses = await asyncio.gather(
            *(_open(flooder, capped, f"flood/app{n % 3}") for n in range(PER_PRINCIPAL + 15))
        )
        opened = [r for r in statuses if r.status == 202]
        refused = [r for r in statuses if r.status == 429]
        assert len(opened) + len(refused) == PER_PRINCIPAL + 15
        assert len(opened) == PER_PRINCIPAL  # exactly, however many open at once
        async with flooder.post(f"{capped.url}/v2/flood/app0/blobs/uploads/") as r:
            assert r.status == 429
            assert r.headers["Retry-After"]
            error = (await r.json())["errors"][0]
            assert error["code"] == "TOOMANYREQUESTS"
            assert "flooder" in error["message"]

        # Others are not locked out by the robot's flood, up to the repository's own cap.
        async with people.session("builder") as builder:
            codes = [
                (await _open(builder, capped, "flood/app0")).status for _ in range(PER_REPOSITORY)
            ]
        assert 202 in codes and codes[-1] == 429

        # Finishing a session frees its slot.
        blob = b"one blob"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        for session in opened[: len(opened) - PER_PRINCIPAL + 1]:
            location = capped.url + session.headers["Location"]
            async with flooder.put(location, params={"digest": digest}, data=blob) as r:
                assert r.status == 201
        assert (await _open(flooder, capped, "flood/app1")).status == 202


async def test_idle_sessions_expire_soon(capped: LiveRegistry) -> None:
    people = Accounts(capped)
    await people.user("idler", ("flood", "pusher"))
    async with people.session("idler") as idler:
        assert (await _open(idler, capped, "flood/idle")).status == 202
        started = await _open(idler, capped, "flood/idle")
        async with idler.patch(capped.url + started.headers["Location"], data=b"data") as r:
            assert r.status == 202
        pool = capped.registry.pool
        await pool.execute("UPDATE upload_sessions SET updated_at = now() - interval '61 seconds'")
        assert await capped.registry.uploads.expire() == 1  # the empty one: after 60 s
        assert await pool.fetchval("SELECT count(*) FROM upload_sessions") == 1
        await pool.execute("UPDATE upload_sessions SET updated_at = now() - interval '121 seconds'")
        assert await capped.registry.uploads.expire() == 1  # with data: after 120 s
        assert await pool.fetchval("SELECT count(*) FROM upload_sessions") == 0


async def test_a_storage_quota_is_enforced_while_the_upload_arrives(capped: LiveRegistry) -> None:
    people = Accounts(capped)
    await people.user("alice", ("team", "pusher"), ("elsewhere", "pusher"))
    await people.user("bob", ("team", "pusher"))
    async with people.session("alice") as alice:
        first = os.urandom(QUOTA * 3 // 4)
        digest = "sha256:" + hashlib.sha256(first).hexdigest()
        async with alice.post(
            f"{capped.url}/v2/team/app/blobs/uploads/", params={"digest": digest}, data=first
        ) as r:
            assert r.status == 201

        second = os.urandom(QUOTA // 2)  # over the quota: refused, nothing stored
        digest2 = "sha256:" + hashlib.sha256(second).hexdigest()
        async with alice.post(
            f"{capped.url}/v2/team/other/blobs/uploads/", params={"digest": digest2}, data=second
        ) as r:
            assert r.status == 403
            error = (await r.json())["errors"][0]
        assert error["code"] == "DENIED" and "quota" in error["message"]
        assert (
            await capped.registry.pool.fetchval(
                "SELECT count(*) FROM blobs WHERE digest = $1", digest2
            )
            == 0
        )

        # A chunked upload is refused once its chunks pass the quota.
        async with alice.post(f"{capped.url}/v2/team/app/blobs/uploads/") as r:
            location = capped.url + r.headers["Location"]
        async with alice.patch(location, data=second) as r:
            assert r.status == 403

        # Outside the namespace, and for another principal, the quota does not apply.
        async with alice.post(
            f"{capped.url}/v2/elsewhere/app/blobs/uploads/", params={"digest": digest2}, data=second
        ) as r:
            assert r.status == 201
    async with (
        people.session("bob") as bob,
        bob.post(
            f"{capped.url}/v2/team/app/blobs/uploads/", params={"digest": digest2}, data=second
        ) as r,
    ):
        assert r.status == 201
    await audit_verifies(capped.config.database.dsn or "")

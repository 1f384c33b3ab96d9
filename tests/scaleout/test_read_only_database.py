"""The database address leads to a server that only reads: a standby, or the old primary
in the seconds of a failover before the address moves. Every connection is cut (as a
failover cuts them) and the new ones are read-only (`default_transaction_read_only`,
the same SQLSTATE 25006 a hot standby raises). The instance must say so — `/readyz` not
ready, so the load balancer skips it, and pushes `503` with `Retry-After`, which clients
retry, not `500` — and serve again once the address leads to the primary."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from tests.faults.conftest import readyz_within
from tests.support.oci import sha256
from tests.support.postgres import fresh_database
from tests.support.served import Served

pytestmark = pytest.mark.slow


@pytest.fixture
async def served(pg_admin_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Served, str]]:
    dsn = await fresh_database(pg_admin_dsn)
    env = {
        "ZOLL_DATABASE__DSN": dsn,
        "ZOLL_DATABASE__POOL_MIN": "1",
        "ZOLL_STORAGE__DRIVER": "filesystem",
        "ZOLL_AUTH__ENABLED": "false",
        "ZOLL_PIPELINE__ENABLED": "false",
    }
    service = Served(tmp_path / "data", "--workers", "1", env=env)
    try:
        yield service, urlsplit(dsn).path.lstrip("/")
    finally:
        service.stop()


async def _fail_over(admin_dsn: str, database: str, *, read_only: bool) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        setting = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
        await admin.execute(f'ALTER DATABASE "{database}" {setting}')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            database,
        )
    finally:
        await admin.close()


async def _push(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    blob = os.urandom(1000)
    async with http.post(
        f"{url}/v2/failover/app/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
    ) as r:
        await r.read()
        return r


async def test_a_read_only_database_is_not_ready_and_pushes_are_retried(
    served: tuple[Served, str], pg_admin_dsn: str, http: aiohttp.ClientSession
) -> None:
    service, database = served
    url = f"http://{service.host}"
    assert (await _push(http, url)).status == 201

    await _fail_over(pg_admin_dsn, database, read_only=True)
    for _ in range(30):  # past the requests that meet a connection the failover cut
        _, body = await readyz_within(http, url, ready=False, seconds=15)
        if "read-only" in str(body["checks"]):
            break
        await asyncio.sleep(0.5)
    assert body["checks"] == {
        "database": "failed: read-only (a standby, not the primary)",
        "storage": "ok",
        "workers": "ok",
    }
    refused = await _push(http, url)
    assert (refused.status, refused.headers.get("Retry-After")) == (503, "5")

    await _fail_over(pg_admin_dsn, database, read_only=False)
    await readyz_within(http, url, ready=True, seconds=15)
    assert (await _push(http, url)).status == 201

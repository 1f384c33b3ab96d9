"""Fixtures shared by every test package: real PostgreSQL, real SeaweedFS, HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.postgres import fresh_database, running_postgres
from tests.support.servers import (
    LiveRegistry,
    S3Server,
    live_registry,
    registry_config,
    running_seaweedfs,
)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """One embedded PostgreSQL server for the whole test process."""
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
async def pg_dsn(pg_admin_dsn: str) -> str:
    """A fresh database with all of Zoll's migrations applied."""
    return await fresh_database(pg_admin_dsn)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the whole test process (tests use their own prefixes)."""
    with running_seaweedfs() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture(params=["filesystem", "s3"])
def driver(request: pytest.FixtureRequest) -> str:
    """Both storage drivers: tests using `zoll` run once on each."""
    return str(request.param)


@pytest.fixture
async def zoll(
    driver: str, pg_dsn: str, tmp_path: Path, s3_server: S3Server
) -> AsyncIterator[LiveRegistry]:
    """A live Zoll on a free port (no auth, no pipeline runner), per test."""
    config = registry_config(pg_dsn, tmp_path / "data", driver, s3_server)
    async with live_registry(config) as live:
        yield live

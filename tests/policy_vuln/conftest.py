"""Fixtures for vulnerability matching: a pool on a fresh migrated database, the scenario."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.policy_vuln import scenario


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="session")
def machine_scenario() -> scenario.Scenario:
    return scenario.build()

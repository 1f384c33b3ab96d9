"""Connection pools with JSON codecs, so jsonb columns read and write Python objects."""

from __future__ import annotations

import json

import asyncpg
from asyncpg.pool import PoolConnectionProxy


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool whose connections speak JSON for json/jsonb columns."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, direct or borrowed from a pool."""
Executor = Conn | asyncpg.Pool
"""Anything that can run a query."""

"""Connection pools with JSON codecs, so jsonb columns read and write Python objects.

asyncpg resets every connection it takes back (`pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL`): one more round trip for every `pool.fetch…`, a quarter of all
queries the pipeline sent. Zoll's pools skip it. What the reset would undo is never left
behind: open transactions are rolled back on release all the same (asyncpg does that
before the pool's reset), nothing LISTENs or SETs on a pooled connection, and code that
takes a session advisory lock releases it itself and terminates the connection when it
cannot (`session_lock`).

Pools opened with `durable=False` commit without waiting for the WAL flush
(`synchronous_commit = off`): the pipeline's own bookkeeping and copies, which are
redone when a database crash loses them (docs/pipeline.md, "Durability").
`flush_commits` makes everything committed so far durable before it is shown.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg
from asyncpg.pool import PoolConnectionProxy


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await _json_codecs(conn)
    # asyncpg looks up the codecs of array types once per connection, with a query that
    # costs milliseconds, the first time a statement uses one; the bulk statements (audit
    # events, log leaves and nodes, blobs, upload sessions, vulnerability records) use these.
    # One lookup for all of them, now.
    await conn.fetchval(
        "SELECT $1::int8[] IS NULL AND $2::int2[] IS NULL AND $3::bytea[] IS NULL"
        " AND $4::uuid[] IS NULL AND $5::timestamptz[] IS NULL",
        *[None] * 5,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing beyond asyncpg's rollback (see the module docstring)."""


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, bulk: bool = True, durable: bool = True
) -> asyncpg.Pool:
    """A pool whose connections speak JSON for json/jsonb columns; with `bulk`, each
    also resolves the array codecs of the bulk statements when it opens (services do;
    a CLI that sends a handful of queries would only wait for it). Without `durable`,
    its commits return before they reach the disk (see the module docstring)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection if bulk else _json_codecs,
        reset=_keep_session,
        command_timeout=60,
        server_settings=None if durable else {"synchronous_commit": "off"},
    )
    assert pool is not None
    return pool


Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, direct or borrowed from a pool."""
Executor = Conn | asyncpg.Pool
"""Anything that can run a query."""


async def flush_commits(executor: Executor) -> None:
    """Make every commit so far durable, from whichever pool: a synchronous commit
    waits for the WAL up to its own record, and every earlier commit lies before it.
    PostgreSQL does not wait for a transaction that wrote nothing, so this one writes
    the smallest record there is (a logical decoding message, any role may)."""
    await executor.execute(
        "BEGIN; SET LOCAL synchronous_commit = on;"
        " SELECT pg_logical_emit_message(true, 'zoll', 'flush'); COMMIT"
    )


@contextlib.asynccontextmanager
async def unlocking(conn: Conn) -> AsyncIterator[None]:
    """Release every session advisory lock taken on `conn` in the block. Pools do not
    reset connections, so a lock that cannot be released (a cancelled task, a broken
    connection) ends the session."""
    try:
        yield
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock_all()")
        except BaseException:
            # A lost connection is already closed and handed back to its pool.
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise


@contextlib.asynccontextmanager
async def session_lock(conn: Conn, key: int, *, wait: bool = True) -> AsyncIterator[bool]:
    """Hold session advisory lock `key` on `conn` for the block; yields False when
    `wait` is off and someone else holds it."""
    async with unlocking(conn):
        if wait:
            await conn.execute("SELECT pg_advisory_lock($1)", key)
            yield True
        else:
            yield bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

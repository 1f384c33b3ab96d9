"""Blob rows and per-repository links.

Every change to a blob's existence (finalising an upload, mounting, collecting) runs
under a transaction-scoped advisory lock on the digest. That serialises a push of a
blob against garbage collection of the same blob, so GC can never delete bytes that a
concurrent upload has just (re)written, and an upload never links a blob GC is removing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from registry import audit
from registry.db import repositories
from registry.db.pool import Conn, Executor
from registry.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    storage_key: str


async def lock_digest(conn: Conn, digest: Digest | str) -> None:
    """Serialise lifecycle changes of one blob until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", str(digest))


async def in_repository(
    pool: asyncpg.Pool, name: str, digest: Digest, touch_after: float = 3600
) -> BlobInfo | None:
    """The blob if it is linked into repository `name`.

    Touches the link when it is older than `touch_after` seconds (half the GC grace
    period), so a client that skips an upload because HEAD said the blob exists is not
    undercut by GC before it pushes the manifest.
    """
    row = await pool.fetchrow(
        """WITH hit AS (
             SELECT b.size, b.storage_key, rb.repository_id, rb.linked_at
             FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2),
           touch AS (
             UPDATE repository_blobs SET linked_at = now()
             FROM hit WHERE repository_blobs.repository_id = hit.repository_id
               AND repository_blobs.digest = $2
               AND hit.linked_at < now() - make_interval(secs => $3))
           SELECT size, storage_key FROM hit""",
        name,
        str(digest),
        touch_after,
    )
    if row is None:
        return None
    return BlobInfo(digest, int(row["size"]), row["storage_key"])


async def stored(conn: Executor, digest: Digest) -> BlobInfo | None:
    """The blob if Zoll stores it in any repository."""
    row = await conn.fetchrow("SELECT size, storage_key FROM blobs WHERE digest = $1", str(digest))
    return None if row is None else BlobInfo(digest, int(row["size"]), row["storage_key"])


async def finalize(
    pool: asyncpg.Pool,
    name: str,
    digest: Digest,
    size: int,
    commit: Callable[[], Awaitable[str]],
    discard: Callable[[], Awaitable[None]],
    *,
    session: uuid.UUID | None = None,
) -> BlobInfo:
    """Record a verified upload and link it into `name`.

    `commit` moves the bytes into their final place and returns the storage key; it runs
    only if the blob is not stored yet (otherwise `discard` drops the duplicate bytes).
    The row is written in the same transaction, under the digest lock, which also ends
    upload `session` if given (GC then sees the blob row or the session, never neither).
    """
    duplicate = False
    async with pool.acquire() as conn, conn.transaction():
        await lock_digest(conn, digest)
        existing = await stored(conn, digest)
        if existing is None:
            key = await commit()
            await conn.execute(
                "INSERT INTO blobs (digest, size, storage_key) VALUES ($1, $2, $3)",
                str(digest),
                size,
                key,
            )
            info = BlobInfo(digest, size, key)
        else:
            duplicate = True  # the fresh link below is what protects it from GC
            info = existing
        await _link(conn, name, digest)
        if session is not None:
            await conn.execute("DELETE FROM upload_sessions WHERE id = $1", session)
        await audit.record(
            conn, "blob.upload", repository=name, target=str(digest), detail={"size": info.size}
        )
    if duplicate:
        await discard()
    return info


async def _link(conn: Conn, name: str, digest: Digest) -> None:
    """Link `digest` into repository `name` (created if new), in the caller's transaction:
    one round trip when the repository exists."""
    while not await conn.fetchval(
        """INSERT INTO repository_blobs (repository_id, digest)
           SELECT id, $2 FROM repositories WHERE name = $1
           ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = now()
           RETURNING 1""",
        name,
        str(digest),
    ):
        await repositories.ensure(conn, name)


async def mount(pool: asyncpg.Pool, source: str, target: str, digest: Digest) -> BlobInfo | None:
    """Link a blob from repository `source` into `target` without copying bytes."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_digest(conn, digest)
        row = await conn.fetchrow(
            """SELECT b.size, b.storage_key FROM repositories r
               JOIN repository_blobs rb ON rb.repository_id = r.id
               JOIN blobs b ON b.digest = rb.digest
               WHERE r.name = $1 AND rb.digest = $2""",
            source,
            str(digest),
        )
        if row is None:
            return None
        await _link(conn, target, digest)
        await audit.record(
            conn, "blob.mount", repository=target, target=str(digest), detail={"from": source}
        )
        return BlobInfo(digest, int(row["size"]), row["storage_key"])


async def link_stored(pool: asyncpg.Pool, name: str, digest: Digest) -> BlobInfo | None:
    """Link a blob Zoll already stores (in any repository) into `name`."""
    if await stored(pool, digest) is None:
        return None  # the common answer for new content, without a transaction or lock
    async with pool.acquire() as conn, conn.transaction():
        await lock_digest(conn, digest)
        info = await stored(conn, digest)
        if info is None:
            return None
        await _link(conn, name, digest)
        await audit.record(conn, "blob.link", repository=name, target=str(digest))
        return info


async def unlink(pool: asyncpg.Pool, name: str, digest: Digest) -> bool:
    """Remove a blob from a repository (the bytes go when GC finds no link left)."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            """DELETE FROM repository_blobs rb USING repositories r
               WHERE rb.repository_id = r.id AND r.name = $1 AND rb.digest = $2""",
            name,
            str(digest),
        )
        if status == "DELETE 0":
            return False
        await audit.record(conn, "blob.delete", repository=name, target=str(digest))
        return True

"""Blob rows and per-repository links.

Every change to a blob's existence (finalising an upload, mounting, collecting) runs
under a transaction-scoped advisory lock on the digest. That serialises a push of a
blob against garbage collection of the same blob, so GC can never delete bytes that a
concurrent upload has just (re)written, and an upload never links a blob GC is removing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from registry import audit
from registry.audit import Change
from registry.db import repositories
from registry.db.pool import Conn, Executor, session_lock, unlocking
from registry.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int
    storage_key: str


async def lock_digest(conn: Conn, digest: Digest | str) -> None:
    """Serialise lifecycle changes of one blob until the transaction ends."""
    await _lock_digests(conn, [digest])


@contextlib.asynccontextmanager
async def digests_held(conn: Conn, digests: Sequence[Digest | str]) -> AsyncIterator[None]:
    """The locks of `lock_digest` for several blobs, held on `conn`'s session across
    transactions (the same keys, so they exclude each other's holders): GC
    keeps pushes of these blobs waiting from committing their rows' deletion until their
    objects are deleted too."""
    async with unlocking(conn):
        await _lock_digests(conn, digests, session=True)
        yield


_DIGEST_LOCKS = {
    False: "SELECT pg_advisory_xact_lock(hashtextextended(d, 7)) FROM unnest($1::text[]) AS d",
    True: "SELECT pg_advisory_lock(hashtextextended(d, 7)) FROM unnest($1::text[]) AS d",
}
"""The one place that says which lock key a blob has (`fetch_lock` has the other), for
the transaction or for the session; both kinds of lock on one key exclude each other."""


async def _lock_digests(
    conn: Conn, digests: Sequence[Digest | str], *, session: bool = False
) -> None:
    """`lock_digest` for several blobs, in one order for everyone (no deadlocks)."""
    await conn.execute(_DIGEST_LOCKS[session], sorted({str(d) for d in digests}))


@contextlib.asynccontextmanager
async def fetch_lock(conn: Conn, digest: Digest) -> AsyncIterator[bool]:
    """Held on `conn`'s session while one worker process fetches `digest` from an
    upstream; yields False (at once) when another process holds it. The key is 56 bits
    of the digest as a negative number, apart from Zoll's fixed (positive) lock keys."""
    key = -1 - int.from_bytes(bytes.fromhex(digest.encoded[:14]), "big")
    async with session_lock(conn, key, wait=False) as mine:
        yield mine


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


async def _stored_many(conn: Executor, digests: Sequence[Digest]) -> dict[Digest, BlobInfo]:
    by_text = {str(d): d for d in digests}
    rows = await conn.fetch(
        "SELECT digest, size, storage_key FROM blobs WHERE digest = ANY($1::text[])",
        list(by_text),
    )
    return {
        by_text[r["digest"]]: BlobInfo(by_text[r["digest"]], int(r["size"]), r["storage_key"])
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class Verified:
    """Uploaded bytes whose digest matched: `commit` moves them into place at `key` and
    returns it (called only if the blob is not stored yet), `discard` drops them."""

    digest: Digest
    size: int
    key: str
    commit: Callable[[], Awaitable[str]]
    discard: Callable[[], Awaitable[None]]


async def finalize(
    pool: asyncpg.Pool,
    name: str,
    upload: Verified,
    *,
    session: uuid.UUID | None = None,
) -> BlobInfo:
    """Record a verified upload and link it into `name` (see `finalize_many`)."""
    sessions = [session] if session is not None else []
    (info,) = await finalize_many(pool, name, [upload], sessions)
    return info


async def start_writes(pool: Executor, keys: Sequence[str]) -> None:
    """Record that objects may be written at `keys`, committed before they are: until a
    row records each (or GC finds none and deletes the object), GC knows where to look.
    Recorded before the digest locks are taken, so a write stalled past the grace period
    may lose its record to GC and, if its transaction then fails, leave an object only
    the deep pass finds; nothing visible is ever wrong."""
    await pool.execute(
        """INSERT INTO storage_writes (key) SELECT unnest($1::text[])
           ON CONFLICT (key) DO UPDATE SET started_at = now()""",
        list(keys),
    )


async def finalize_many(
    pool: asyncpg.Pool,
    name: str,
    uploads: Sequence[Verified],
    sessions: Sequence[uuid.UUID] = (),
) -> list[BlobInfo]:
    """Record verified uploads (distinct digests) and link them into `name`, in one
    transaction under their digest locks, which also ends the upload `sessions` and the
    recorded store writes (GC then sees the blob row, the session or the write, never
    none of them). Bytes of a blob stored meanwhile by someone else are discarded."""
    duplicates: list[Verified] = []
    infos: list[BlobInfo] = []
    await start_writes(pool, [u.key for u in uploads])
    async with pool.acquire() as conn, conn.transaction():
        digests = [u.digest for u in uploads]
        await _lock_digests(conn, digests)
        existing = await _stored_many(conn, digests)
        fresh = [u for u in uploads if u.digest not in existing]
        # Every write settles before the transaction ends: a failed batch leaves no
        # write still running (only, at worst, objects GC sweeps).
        settled = await asyncio.gather(*(u.commit() for u in fresh), return_exceptions=True)
        for outcome in settled:
            if isinstance(outcome, BaseException):
                raise outcome
        keys = [str(k) for k in settled]
        await conn.execute(
            """WITH recorded AS (DELETE FROM storage_writes WHERE key = ANY($4::text[]))
               INSERT INTO blobs (digest, size, storage_key)
               SELECT * FROM unnest($1::text[], $2::int8[], $3::text[])""",
            [str(u.digest) for u in fresh],
            [u.size for u in fresh],
            list(keys),
            [u.key for u in uploads],
        )
        stored_now = {
            u.digest: BlobInfo(u.digest, u.size, k) for u, k in zip(fresh, keys, strict=True)
        }
        for upload in uploads:
            if upload.digest in existing:
                duplicates.append(upload)  # the fresh link below protects it from GC
            infos.append(existing.get(upload.digest) or stored_now[upload.digest])
        await _link(conn, name, digests)
        if sessions:
            await conn.execute(
                "DELETE FROM upload_sessions WHERE id = ANY($1::uuid[])", list(sessions)
            )
        await audit.record_all(
            conn,
            [Change("blob.upload", name, str(i.digest), {"size": i.size}) for i in infos],
        )
    for duplicate in duplicates:
        await duplicate.discard()
    return infos


async def _link(conn: Conn, name: str, digests: Sequence[Digest]) -> None:
    """Link `digests` into repository `name` (created if new), in the caller's
    transaction: one round trip when the repository exists. A user or robot pushing a
    blob that was not linked yet is recorded as its pusher (storage quotas count it)."""
    statement = """INSERT INTO repository_blobs (repository_id, digest, pushed_by)
                   SELECT r.id, d, $3 FROM repositories r, unnest($2::text[]) AS d
                   WHERE r.name = $1
                   ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = now()
                   RETURNING 1"""
    texts = [str(d) for d in digests]
    pusher = audit.current_actor().quota_holder()
    if texts and await conn.fetchval(statement, name, texts, pusher) is None:
        await repositories.ensure(conn, name)
        await conn.execute(statement, name, texts, pusher)


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
        await _link(conn, target, [digest])
        await audit.record(
            conn, "blob.mount", repository=target, target=str(digest), detail={"from": source}
        )
        return BlobInfo(digest, int(row["size"]), row["storage_key"])


async def link_stored(pool: asyncpg.Pool, name: str, digest: Digest) -> BlobInfo | None:
    """Link a blob Zoll already stores (in any repository) into `name`."""
    return (await link_stored_many(pool, name, [digest])).get(digest)


async def link_stored_many(
    pool: asyncpg.Pool, name: str, digests: Sequence[Digest]
) -> dict[Digest, BlobInfo]:
    """Link those of `digests` (distinct) that Zoll already stores into `name`, in one
    transaction; returns them."""
    if not await _stored_many(pool, digests):
        return {}  # the common answer for new content, without a transaction or lock
    async with pool.acquire() as conn, conn.transaction():
        await _lock_digests(conn, digests)
        found = await _stored_many(conn, digests)
        if found:
            await _link(conn, name, list(found))
            await audit.record_all(conn, [Change("blob.link", name, str(d)) for d in found])
        return found


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

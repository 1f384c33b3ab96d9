"""Online garbage collection that never removes what a push in flight can still use.

Four sweeps, each safe against concurrent pushes:

1. Untagged manifests: per repository, manifests not reachable from a tag (through index
   children and referrers of kept manifests) and older than the grace period. Candidates
   are locked FOR UPDATE (SKIP LOCKED), then reachability is recomputed in a fresh
   statement before deleting. A push that tags a candidate meanwhile either committed
   first (recomputation sees the tag) or waits on our lock and re-inserts the manifest
   (its INSERT … ON CONFLICT DO UPDATE retries after our delete).
2. Blob links: links no manifest of the repository references, older than the grace
   period, with the same lock-then-recheck pattern; a manifest push holds FOR SHARE on
   the links it needs. HEAD on a blob refreshes an aging link, so a client that skipped
   an upload because the blob exists is not undercut before it pushes its manifest.
3. Blobs: rows with no link left, older than the grace period. Each is deleted under
   the per-digest advisory lock that uploads, mounts and links also take, so bytes are
   never removed while a concurrent upload of the same digest publishes them.
4. Storage: objects with no row (a crash or failed transaction between storing and
   recording) and upload data with no session, older than the grace period. Every
   object write is recorded first (`storage_writes`), so the sweep checks those records,
   not the store; only a deep pass, every `gc.deep_sweep_interval`, lists the store.

Only one GC runs at a time across all workers and nodes (a session advisory lock), and
it rests between batches (`Pacer`), as VACUUM does under autovacuum's cost delay.

Cost grows with the registry only where it must (each mark reads what it marks once):
every sweep walks its table in key order, `BATCH` rows per transaction, so memory and
lock hold times stay those of one batch; repositories without an untagged manifest are
not visited; a blob costs one storage call (its delete), and the storage sweep lists
upload data only (the deep pass: one listing call per page of objects).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from registry import audit
from registry.db import blobs as blob_rows
from registry.db import uploads as sessions
from registry.db.pool import session_lock
from registry.http.state import Registry
from registry.logs import get_logger
from registry.metrics import GC_DELETED, GC_RUNS
from registry.oci.digest import Digest, DigestError
from registry.storage.base import StorageError

log = get_logger("zoll.gc")
GC_LOCK = 0x5A4F4743  # "ZOGC"
BATCH = 500
"""Rows per sweep transaction: bounds memory, lock hold time and the work lost to a crash."""
BLOB_BATCH = 50
"""Blobs per delete batch: each batch is one store request (S3 DeleteObjects) that keeps
the store busy while it runs, and pushes arriving meanwhile wait behind it. At 500 keys
the slowest 1 % of the pushes during a 100× collection all fell in this sweep; at 100
they still did, and push p99 during GC was 1.45× idle; at 50, 1.27× (docs/benchmarks.md).
50 keys cost a fiftieth of a request per blob."""
REST_AFTER = 0.05
"""Seconds of work after which a collection rests (`Pacer`): rests long enough to let
waiting requests through, few enough that timer overhead stays small."""
DEEP_PAGE = 100
"""Objects per listing request in the deep pass, each page checked and followed by a
rest: a push that meets the pass meets one short request, not 1,000 keys' worth of the
store's and the database's work (with 1,000-key pages and 50 ms stretches of work,
pushes during the pass had a p99 of 2.0× idle, docs/benchmarks.md)."""

_KEPT = """
WITH RECURSIVE kept(digest) AS (
    SELECT manifest_digest FROM tags WHERE repository_id = $1
  UNION
    SELECT next.digest FROM kept k CROSS JOIN LATERAL (
        SELECT child_digest AS digest FROM manifest_children
         WHERE repository_id = $1 AND parent_digest = k.digest
      UNION ALL
        SELECT digest FROM manifests
         WHERE repository_id = $1 AND subject_digest = k.digest
    ) AS next
)"""


class Pacer:
    """Keeps a collection to `duty` of its run: after each `rest_after` seconds of work
    (`REST_AFTER`; 0: after every call) it waits work × (1 − duty) / duty. A batch of
    deletes keeps the store and the database busy for a moment (on S3, `BLOB_BATCH`
    keys in one request); pushes arriving then wait for it, so the rest is theirs."""

    def __init__(self, duty: float, rest_after: float | None = None) -> None:
        self._duty = duty
        self._every = REST_AFTER if rest_after is None else rest_after
        self._since = time.monotonic()
        self.rested = 0.0

    async def pause(self) -> None:
        """Called after each batch: rests once a stretch of work is long enough."""
        worked = time.monotonic() - self._since
        if self._duty >= 1 or worked < self._every:
            return
        rest = worked * (1 - self._duty) / self._duty
        await asyncio.sleep(rest)
        self.rested += rest
        self._since = time.monotonic()


@dataclass
class GCReport:
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    manifests: int = 0
    links: int = 0
    blobs: int = 0
    bytes_freed: int = 0
    orphaned_objects: int = 0
    expired_uploads: int = 0
    deep: bool = False
    """Whether this collection listed the whole store."""
    rested: float = 0.0
    """Seconds spent resting between batches (`Pacer`), included in `seconds`."""
    skipped: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    """How long each sweep took."""

    @asynccontextmanager
    async def timing(self, sweep: str) -> AsyncIterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[sweep] = round(time.perf_counter() - start, 3)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["started"] = self.started.isoformat()
        return out


async def collect(
    registry: Registry, *, grace: float | None = None, deep: bool | None = None
) -> GCReport:
    """Run one collection; returns a report (skipped=True if another GC holds the lock).
    `deep` lists the whole store for unrecorded objects (default: when the last such
    pass is `gc.deep_sweep_interval` old)."""
    grace = registry.config.gc.grace_period if grace is None else grace
    report = GCReport()
    async with (
        registry.pool.acquire() as lock_conn,
        session_lock(lock_conn, GC_LOCK, wait=False) as held,
    ):
        if not held:
            report.skipped = True
            return report
        GC_RUNS.inc()
        pacer = Pacer(registry.config.gc.duty_cycle)
        async with report.timing("uploads"):
            report.expired_uploads = await registry.uploads.expire()
        if registry.config.gc.untagged_manifests:
            async with report.timing("manifests"):
                for repo_id in await _repositories_with_untagged(registry.pool, grace):
                    report.manifests += await _untagged_manifests(registry.pool, repo_id, grace)
                    await pacer.pause()
        async with report.timing("links"):
            report.links = await _unreferenced_links(registry.pool, grace, pacer)
        async with report.timing("blobs"):
            report.blobs, report.bytes_freed = await _unlinked_blobs(registry, grace, pacer)
        async with report.timing("storage"):
            report.orphaned_objects = await _unrecorded_writes(registry, grace)
            report.orphaned_objects += await _abandoned_uploads(registry, grace)
        report.deep = await _deep_pass_due(registry) if deep is None else deep
        if report.deep:
            page_pacer = Pacer(registry.config.gc.duty_cycle, rest_after=0)
            async with report.timing("deep"):
                report.orphaned_objects += await _unrecorded_objects(registry, grace, page_pacer)
            pacer.rested += page_pacer.rested
        report.rested = round(pacer.rested, 3)
    kinds = ("manifests", "links", "blobs", "orphaned_objects", "expired_uploads")
    for kind in kinds:
        GC_DELETED.labels(kind).inc(getattr(report, kind))
    if any(getattr(report, kind) for kind in kinds):
        detail = {kind: getattr(report, kind) for kind in (*kinds, "bytes_freed")}
        await audit.record_now(
            registry.pool, "gc.collect", detail=detail, actor=audit.Actor("gc", "system")
        )
    log.info("gc finished", **report.to_json())
    return report


async def _repositories_with_untagged(pool: asyncpg.Pool, grace: float) -> list[int]:
    """Repositories holding an old manifest no tag names: only they can hold candidates
    (a repository whose manifests are all tagged keeps all of them)."""
    rows = await pool.fetch(
        """SELECT DISTINCT m.repository_id FROM manifests m
            WHERE m.created_at < now() - make_interval(secs => $1)
              AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id
                                                     AND t.manifest_digest = m.digest)
            ORDER BY 1""",
        grace,
    )
    return [r["repository_id"] for r in rows]


async def _untagged_manifests(pool: asyncpg.Pool, repo_id: int, grace: float) -> int:
    async with pool.acquire() as conn, conn.transaction():
        candidates = await conn.fetch(
            _KEPT  # noqa: S608 (constant SQL fragments)
            + """
            SELECT digest FROM manifests
             WHERE repository_id = $1 AND created_at < now() - make_interval(secs => $2)
               AND digest NOT IN (SELECT digest FROM kept)
             FOR UPDATE SKIP LOCKED""",
            repo_id,
            grace,
        )
        if not candidates:
            return 0
        status = await conn.execute(
            _KEPT  # noqa: S608 (constant SQL fragments)
            + """
            DELETE FROM manifests
             WHERE repository_id = $1 AND digest = ANY($2::text[])
               AND digest NOT IN (SELECT digest FROM kept)""",
            repo_id,
            [r["digest"] for r in candidates],
        )
        return int(status.split()[-1])


LINK_CANDIDATES: Final = """
SELECT repository_id, digest FROM repository_blobs rb
 WHERE (repository_id, digest) > ($2, $3)
   AND linked_at < now() - make_interval(secs => $1)
   AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb
                    WHERE mb.repository_id = rb.repository_id AND mb.blob_digest = rb.digest
                      AND (mb.repository_id, mb.blob_digest) > ($2, $3))
 ORDER BY repository_id, digest
 LIMIT $4
 FOR UPDATE SKIP LOCKED"""
"""The next batch of links no manifest references, after ($2, $3) in key order. The
bound is repeated on manifest_blobs (it holds for every match) so that a merge anti join
starts its inner index there too: without it each batch read the references from the
first repository on, and the sweep grew with the square of the registry (241 s at
1,000,000 blobs in bench/scale.py)."""

BLOB_CANDIDATES: Final = """
SELECT digest FROM blobs b
 WHERE digest > $2 AND created_at < now() - make_interval(secs => $1)
   AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                    WHERE rb.digest = b.digest AND rb.digest > $2)
 ORDER BY digest LIMIT $3"""
"""The next batch of blob rows no repository links, after $2 (bounded on both sides, as
LINK_CANDIDATES)."""


async def _unreferenced_links(pool: asyncpg.Pool, grace: float, pacer: Pacer) -> int:
    """Walk the links in key order, one batch per transaction."""
    removed = 0
    after: tuple[int, str] = (0, "")
    while True:
        async with pool.acquire() as conn, conn.transaction():
            candidates = await conn.fetch(
                LINK_CANDIDATES,
                grace,
                *after,
                BATCH,
            )
            if not candidates:
                return removed
            status = await conn.execute(
                """DELETE FROM repository_blobs rb
                    USING unnest($1::bigint[], $2::text[]) AS c(repository_id, digest)
                    WHERE rb.repository_id = c.repository_id AND rb.digest = c.digest
                      AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb
                                       WHERE mb.repository_id = rb.repository_id
                                         AND mb.blob_digest = rb.digest)""",
                [r["repository_id"] for r in candidates],
                [r["digest"] for r in candidates],
            )
            removed += int(status.split()[-1])
            after = (candidates[-1]["repository_id"], candidates[-1]["digest"])
        await pacer.pause()


async def _delete_all(registry: Registry, keys: list[str]) -> dict[str, str]:
    """Key → why, for each key that may still be stored (all of them if the store
    could not be asked)."""
    if not keys:
        return {}
    try:
        return await registry.driver.delete_many(keys)
    except StorageError as exc:
        return dict.fromkeys(keys, str(exc))


UNLINKED_DELETE: Final = """
WITH gone AS (
    DELETE FROM blobs b
     WHERE digest = ANY($1::text[])
       AND created_at < now() - make_interval(secs => $2)
       AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
    RETURNING digest, size, storage_key, created_at
), recorded AS (
    INSERT INTO storage_writes (key, started_at)
    SELECT storage_key, '-infinity' FROM gone
    ON CONFLICT (key) DO NOTHING
)
SELECT * FROM gone"""
"""Delete a batch's unlinked rows and record their objects as writes to settle, in one
commit: from then on the storage sweep finds those objects even if this collection dies
before deleting them. A write a push recorded first stays as it was ('-infinity' marks
the records this collection ends itself)."""


async def _unlinked_blobs(registry: Registry, grace: float, pacer: Pacer) -> tuple[int, int]:
    """Walk the blobs in digest order. Each batch is deleted under its blobs' digest
    locks, held on the session from the rows' deletion until their objects are gone (one
    store request): pushes of those blobs wait, and a row never outlives its object."""
    deleted = freed = 0
    after = ""
    while True:
        rows = await registry.pool.fetch(
            BLOB_CANDIDATES,
            grace,
            after,
            BLOB_BATCH,
        )
        if not rows:
            return deleted, freed
        after = rows[-1]["digest"]
        digests = [r["digest"] for r in rows]
        async with registry.pool.acquire() as conn, blob_rows.digests_held(conn, digests):
            gone = await conn.fetch(UNLINKED_DELETE, digests, grace)
            keys = [r["storage_key"] for r in gone]
            # One request for the batch (S3's DeleteObjects), not one per blob.
            failed = await _delete_all(registry, keys)
            kept = [r for r in gone if r["storage_key"] in failed]
            async with conn.transaction():
                # Not waiting for the disk: a crash that loses this commit leaves records
                # the storage sweep settles (the rows' deletion above was durable).
                await conn.execute("SET LOCAL synchronous_commit = off")
                if kept:  # a delete that failed keeps its row: its bytes may still be there
                    log.warning(
                        "blob deletes failed",
                        count=len(kept),
                        error=failed[kept[0]["storage_key"]],
                    )
                    await conn.execute(
                        """INSERT INTO blobs (digest, size, storage_key, created_at)
                           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[],
                                                $4::timestamptz[])""",
                        *(
                            list(col)
                            for col in zip(
                                *(
                                    (r["digest"], r["size"], r["storage_key"], r["created_at"])
                                    for r in kept
                                ),
                                strict=True,
                            )
                        ),
                    )
                await conn.execute(
                    """DELETE FROM storage_writes
                        WHERE key = ANY($1::text[]) AND started_at = '-infinity'""",
                    keys,
                )
            deleted += len(gone) - len(kept)
            freed += sum(int(r["size"]) for r in gone if r["storage_key"] not in failed)
        await pacer.pause()


def _upload_of_key(key: str) -> str:
    """The upload id of a per-upload key (`blobs/u/<id>`), else the key itself."""
    return key[len("blobs/u/") :] if key.startswith("blobs/u/") else key


def _digest_of_key(key: str) -> Digest | None:
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "blobs":
        try:
            return Digest.parse(f"{parts[1]}:{parts[3]}")
        except DigestError:
            return None
    return None


async def _remove_unrecorded(registry: Registry, keys: list[str]) -> tuple[int, list[str]]:
    """Delete the objects at `keys` that no blob row records and no open upload session
    may still record; returns how many, and the keys now settled (recorded or deleted)."""
    known = {
        r["storage_key"]
        for r in await registry.pool.fetch(
            "SELECT storage_key FROM blobs WHERE storage_key = ANY($1::text[])", keys
        )
    }
    uploading = await sessions.known_ids(registry.pool, [_upload_of_key(k) for k in keys])
    removed = 0
    settled: list[str] = []
    for key in keys:
        if _upload_of_key(key) in uploading:
            continue
        if key in known:
            settled.append(key)
            continue
        async with registry.pool.acquire() as conn, conn.transaction():
            digest = _digest_of_key(key)
            if digest is not None:
                await blob_rows.lock_digest(conn, digest)
            # Checked after the session: finalising records the blob before it
            # deletes its session, so one of the two checks always sees it.
            still = await conn.fetchval("SELECT 1 FROM blobs WHERE storage_key = $1", key)
            if still is None:
                await registry.driver.delete(key)
                removed += 1
        settled.append(key)
    return removed, settled


async def _unrecorded_writes(registry: Registry, grace: float) -> int:
    """Objects whose recorded write is older than the grace period and whose row never
    came: O(writes in flight), not O(store)."""
    removed = 0
    after = ""
    try:
        while True:
            keys = [
                r["key"]
                for r in await registry.pool.fetch(
                    """SELECT key FROM storage_writes
                        WHERE key > $1 AND started_at < now() - make_interval(secs => $2)
                        ORDER BY key LIMIT $3""",
                    after,
                    grace,
                    BATCH,
                )
            ]
            if not keys:
                return removed
            after = keys[-1]
            count, settled = await _remove_unrecorded(registry, keys)
            removed += count
            await registry.pool.execute(
                """DELETE FROM storage_writes
                    WHERE key = ANY($1::text[])
                      AND started_at < now() - make_interval(secs => $2)""",
                settled,
                grace,
            )
    except StorageError as exc:
        log.warning("storage sweep incomplete", error=str(exc))
        return removed


async def _abandoned_uploads(registry: Registry, grace: float) -> int:
    """Upload data (parts, tails, multipart uploads) whose session is gone."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    removed = 0
    try:
        stale = [(u, m) async for u, m in registry.driver.list_uploads() if m < cutoff]
        live = await sessions.known_ids(registry.pool, [u for u, _ in stale])
        for upload_id, _ in stale:
            if upload_id not in live:
                await registry.driver.discard_upload(upload_id, {})
                removed += 1
    except StorageError as exc:
        log.warning("upload sweep incomplete", error=str(exc))
    return removed


async def _deep_pass_due(registry: Registry) -> bool:
    due: bool = await registry.pool.fetchval(
        """SELECT coalesce(bool_and(finished_at < now() - make_interval(secs => $1)), true)
             FROM storage_sweeps""",
        registry.config.gc.deep_sweep_interval,
    )
    return due


async def _unrecorded_objects(registry: Registry, grace: float, pacer: Pacer) -> int:
    """The deep pass: list every stored object, delete those nothing records (left
    before writes were recorded, or by a write that outlived its record); a page at a
    time (`DEEP_PAGE`), resting after each."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace)
    removed = listed = 0
    batch: list[str] = []
    try:
        async for obj in registry.driver.list_blobs(DEEP_PAGE):
            listed += 1
            if obj.modified < cutoff:
                batch.append(obj.key)
            if listed % DEEP_PAGE == 0:
                if batch:
                    removed += (await _remove_unrecorded(registry, batch))[0]
                    batch.clear()
                await pacer.pause()
        if batch:
            removed += (await _remove_unrecorded(registry, batch))[0]
    except StorageError as exc:
        log.warning("deep storage sweep incomplete", error=str(exc))
        return removed
    await registry.pool.execute(
        """INSERT INTO storage_sweeps (finished_at) VALUES (now())
           ON CONFLICT (only_row) DO UPDATE SET finished_at = now()"""
    )
    return removed

"""Manifests, tags and referrers.

A manifest is stored only after every blob and child manifest it references is present
in the same repository; those rows are locked (FOR SHARE) while the manifest is written,
so garbage collection cannot remove them in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry import audit
from registry.db import repositories
from registry.db.pool import Conn
from registry.oci.digest import Digest
from registry.oci.manifest import Manifest


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    content: bytes
    subject: str | None
    state: str | None = None
    """The pipeline's verdict (admitted, quarantined, …); None if it never saw it."""
    reasons: list[str] | None = None


@dataclass(frozen=True, slots=True)
class MissingReference:
    """Why a manifest cannot be stored: what it points to that the repository lacks."""

    kind: str  # "blob" | "manifest"
    digest: str
    reason: str


class ManifestInUse(Exception):
    """The manifest is a child of an index in the same repository."""

    def __init__(self, parents: list[str]) -> None:
        super().__init__(", ".join(parents))
        self.parents = parents


async def get(
    pool: asyncpg.Pool, name: str, reference: str, *, by_digest: bool
) -> StoredManifest | None:
    if by_digest:
        row = await pool.fetchrow(
            """SELECT m.digest, m.media_type, m.content, m.subject_digest, s.state, s.reasons
               FROM manifests m
               JOIN repositories r ON r.id = m.repository_id
               LEFT JOIN image_status s ON s.repository_id = m.repository_id
                                       AND s.digest = m.digest
               WHERE r.name = $1 AND m.digest = $2""",
            name,
            reference,
        )
    else:
        row = await pool.fetchrow(
            """SELECT m.digest, m.media_type, m.content, m.subject_digest, s.state, s.reasons
               FROM tags t
               JOIN repositories r ON r.id = t.repository_id
               JOIN manifests m ON m.repository_id = t.repository_id
                               AND m.digest = t.manifest_digest
               LEFT JOIN image_status s ON s.repository_id = m.repository_id
                                       AND s.digest = m.digest
               WHERE r.name = $1 AND t.name = $2""",
            name,
            reference,
        )
    if row is None:
        return None
    return StoredManifest(
        Digest.parse(row["digest"]),
        row["media_type"],
        bytes(row["content"]),
        row["subject_digest"],
        row["state"],
        row["reasons"],
    )


async def _check_references(conn: Conn, repo_id: int, manifest: Manifest) -> list[MissingReference]:
    missing: list[MissingReference] = []
    blobs = {str(d.digest): d for d in manifest.blob_references()}
    if blobs:
        rows = await conn.fetch(
            """SELECT b.digest, b.size FROM repository_blobs rb
               JOIN blobs b ON b.digest = rb.digest
               WHERE rb.repository_id = $1 AND rb.digest = ANY($2::text[])
               FOR SHARE OF rb, b""",
            repo_id,
            list(blobs),
        )
        sizes = {r["digest"]: int(r["size"]) for r in rows}
        for digest, desc in blobs.items():
            if digest not in sizes:
                missing.append(MissingReference("blob", digest, "blob unknown to repository"))
            elif sizes[digest] != desc.size:
                missing.append(
                    MissingReference(
                        "blob",
                        digest,
                        f"descriptor size {desc.size} != stored size {sizes[digest]}",
                    )
                )
    children = {str(d.digest): d for d in manifest.manifests}
    if children:
        rows = await conn.fetch(
            """SELECT digest, size FROM manifests
               WHERE repository_id = $1 AND digest = ANY($2::text[]) FOR SHARE""",
            repo_id,
            list(children),
        )
        sizes = {r["digest"]: int(r["size"]) for r in rows}
        for digest, desc in children.items():
            if digest not in sizes:
                missing.append(
                    MissingReference("manifest", digest, "manifest unknown to repository")
                )
            elif sizes[digest] != desc.size:
                missing.append(
                    MissingReference(
                        "manifest",
                        digest,
                        f"descriptor size {desc.size} != stored size {sizes[digest]}",
                    )
                )
    return missing


async def put(
    pool: asyncpg.Pool,
    name: str,
    manifest: Manifest,
    tags: list[str],
    request_id: str | None = None,
) -> list[MissingReference]:
    """Store `manifest` (and point `tags` at it); return what is missing instead, if anything."""
    return await put_many(pool, name, [(manifest, tags)], request_id)


class _Refused(Exception):
    def __init__(self, missing: list[MissingReference]) -> None:
        self.missing = missing


async def put_many(
    pool: asyncpg.Pool,
    name: str,
    items: Sequence[tuple[Manifest, list[str]]],
    request_id: str | None = None,
) -> list[MissingReference]:
    """Store manifests (each with its tags) in one transaction, in order, so a later one
    may refer to an earlier one; if anything is missing, store none and return it."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            repo_id = await repositories.ensure(conn, name)
            changes: list[audit.Change] = []
            for manifest, tags in items:
                missing = await _check_references(conn, repo_id, manifest)
                if missing:
                    raise _Refused(missing)  # rolls back the ones stored before it
                changes += await _insert(conn, repo_id, name, manifest, tags, request_id)
            if changes:
                await audit.record_all(conn, changes)  # last: see registry.audit.log
    except _Refused as refused:
        return refused.missing
    return []


async def _insert(
    conn: Conn,
    repo_id: int,
    name: str,
    manifest: Manifest,
    tags: list[str],
    request_id: str | None,
) -> list[audit.Change]:
    """Write one checked manifest and its tags; return what the audit log must say."""
    digest = str(manifest.digest)
    inserted = await conn.fetchval(
        """INSERT INTO manifests (repository_id, digest, media_type, artifact_type,
               subject_digest, annotations, content, size)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (repository_id, digest)
               DO UPDATE SET media_type = manifests.media_type  -- locks it against GC
           RETURNING (xmax = 0) AS inserted""",
        repo_id,
        digest,
        manifest.media_type,
        manifest.effective_artifact_type,
        str(manifest.subject.digest) if manifest.subject else None,
        manifest.annotations or None,
        manifest.raw,
        len(manifest.raw),
    )
    changes = []
    if inserted:
        blob_digests = sorted({str(d.digest) for d in manifest.blob_references()})
        if blob_digests:
            await conn.executemany(
                """INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                [(repo_id, digest, b) for b in blob_digests],
            )
        child_digests = sorted({str(d.digest) for d in manifest.manifests})
        if child_digests:
            await conn.executemany(
                """INSERT INTO manifest_children (repository_id, parent_digest, child_digest)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                [(repo_id, digest, c) for c in child_digests],
            )
        changes.append(
            audit.Change(
                "manifest.push",
                name,
                digest,
                {"media_type": manifest.media_type, "size": len(manifest.raw)},
            )
        )
    for tag in tags:
        moved, previous = await _point_tag(conn, repo_id, tag, digest, request_id)
        if moved:
            changes.append(audit.Change("tag.move", name, tag, {"from": previous, "to": digest}))
    return changes


async def _point_tag(
    conn: Conn, repo_id: int, tag: str, digest: str, request_id: str | None
) -> tuple[bool, str | None]:
    """Point `tag` at `digest`; (whether it moved, where it pointed before)."""
    previous = await conn.fetchval(
        "SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2 FOR UPDATE",
        repo_id,
        tag,
    )
    if previous == digest:
        return False, previous
    await conn.execute(
        """INSERT INTO tags (repository_id, name, manifest_digest) VALUES ($1, $2, $3)
           ON CONFLICT (repository_id, name)
           DO UPDATE SET manifest_digest = EXCLUDED.manifest_digest, updated_at = now()""",
        repo_id,
        tag,
        digest,
    )
    await conn.execute(
        """INSERT INTO tag_history (repository_id, name, previous_digest, manifest_digest,
               request_id) VALUES ($1, $2, $3, $4, $5)""",
        repo_id,
        tag,
        previous,
        digest,
        request_id,
    )
    return True, previous


async def delete(
    pool: asyncpg.Pool, name: str, digest: Digest, request_id: str | None = None
) -> bool:
    """Delete a manifest and the tags pointing at it; refuse while an index needs it."""
    async with pool.acquire() as conn, conn.transaction():
        repo_id = await repositories.lookup(conn, name)
        if repo_id is None:
            return False
        parents = await conn.fetch(
            """SELECT parent_digest FROM manifest_children
               WHERE repository_id = $1 AND child_digest = $2 AND parent_digest <> $2""",
            repo_id,
            str(digest),
        )
        if parents:
            raise ManifestInUse([r["parent_digest"] for r in parents])
        tags = await conn.fetch(
            "SELECT name FROM tags WHERE repository_id = $1 AND manifest_digest = $2",
            repo_id,
            str(digest),
        )
        try:
            status = await conn.execute(
                "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
                repo_id,
                str(digest),
            )
        except asyncpg.ForeignKeyViolationError as exc:  # an index was pushed meanwhile
            raise ManifestInUse(["(an index pushed concurrently)"]) from exc
        if status == "DELETE 0":
            return False
        await conn.executemany(
            """INSERT INTO tag_history (repository_id, name, previous_digest, manifest_digest,
                   request_id) VALUES ($1, $2, $3, NULL, $4)""",
            [(repo_id, t["name"], str(digest), request_id) for t in tags],
        )
        await audit.record(
            conn,
            "manifest.delete",
            repository=name,
            target=str(digest),
            detail={"tags": sorted(t["name"] for t in tags)},
        )
        return True


async def delete_tag(
    pool: asyncpg.Pool, name: str, tag: str, request_id: str | None = None
) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """DELETE FROM tags t USING repositories r
               WHERE t.repository_id = r.id AND r.name = $1 AND t.name = $2
               RETURNING t.repository_id, t.manifest_digest""",
            name,
            tag,
        )
        if row is None:
            return False
        await conn.execute(
            """INSERT INTO tag_history (repository_id, name, previous_digest, manifest_digest,
                   request_id) VALUES ($1, $2, $3, NULL, $4)""",
            row["repository_id"],
            tag,
            row["manifest_digest"],
            request_id,
        )
        await audit.record(
            conn,
            "tag.delete",
            repository=name,
            target=tag,
            detail={"digest": row["manifest_digest"]},
        )
        return True


TAG_PAGE = """
    SELECT name FROM tags WHERE repository_id = $1 AND name > coalesce($2::text, '')
     ORDER BY name LIMIT $3"""
"""`coalesce` rather than `$2 IS NULL OR name > $2`: a condition on the index in every
plan, also the generic one a prepared statement settles on, where the `OR` form read
the repository's tags from its first."""


async def tag_page(pool: asyncpg.Pool, name: str, last: str | None, limit: int) -> list[str] | None:
    """Tags after `last` in lexical order, or None if the repository is unknown."""
    repo_id = await repositories.lookup(pool, name)
    if repo_id is None:
        return None
    rows = await pool.fetch(
        TAG_PAGE,
        repo_id,
        last,
        limit,
    )
    return [r["name"] for r in rows]


async def referrers(
    pool: asyncpg.Pool, name: str, subject: Digest, artifact_type: str | None
) -> list[dict[str, Any]]:
    """Descriptors of manifests in `name` whose subject is `subject`."""
    rows = await pool.fetch(
        """SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations
           FROM manifests m JOIN repositories r ON r.id = m.repository_id
           WHERE r.name = $1 AND m.subject_digest = $2
             AND ($3::text IS NULL OR m.artifact_type = $3)
           ORDER BY m.created_at, m.digest""",
        name,
        str(subject),
        artifact_type,
    )
    return [_referrer(r) for r in rows]


REFERRER_PAGE = """
    SELECT m.media_type, m.digest, m.size, m.artifact_type, m.annotations
      FROM manifests m
     WHERE m.repository_id = $1 AND m.subject_digest = $2
       AND ($3::text IS NULL OR m.artifact_type = $3)
       AND m.digest > coalesce($4::text, '')  -- an index condition in any plan
     ORDER BY m.digest LIMIT $5"""


async def referrer_page(
    pool: asyncpg.Pool,
    name: str,
    subject: Digest,
    artifact_type: str | None,
    last: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """A page of `referrers` in digest order after `last`: read through the
    (repository, subject, digest) index, so a page costs the same however many
    signatures and attestations name the subject."""
    repo_id = await repositories.lookup(pool, name)
    if repo_id is None:
        return []
    rows = await pool.fetch(
        REFERRER_PAGE,
        repo_id,
        str(subject),
        artifact_type,
        last,
        limit,
    )
    return [_referrer(r) for r in rows]


def _referrer(r: asyncpg.Record) -> dict[str, Any]:
    desc: dict[str, Any] = {
        "mediaType": r["media_type"],
        "digest": r["digest"],
        "size": int(r["size"]),
    }
    if r["artifact_type"]:
        desc["artifactType"] = r["artifact_type"]
    if r["annotations"]:
        desc["annotations"] = r["annotations"]
    return desc


IMAGE_PAGE = """
    WITH page AS MATERIALIZED (
        SELECT m.digest, m.media_type, m.artifact_type, m.size, m.created_at, m.subject_digest
          FROM manifests m
         WHERE m.repository_id = $1 AND m.digest > coalesce($2::text, '')
         ORDER BY m.digest LIMIT $3),
    named AS (
        SELECT t.manifest_digest, array_agg(t.name ORDER BY t.name) AS tags
          FROM tags t
         WHERE t.repository_id = $1
           AND t.manifest_digest >= (SELECT min(digest) FROM page)
           AND t.manifest_digest <= (SELECT max(digest) FROM page)
         GROUP BY t.manifest_digest)
    SELECT p.*, coalesce(n.tags, '{}') AS tags
      FROM page p LEFT JOIN named n ON n.manifest_digest = p.digest
     ORDER BY p.digest"""
"""The page of manifests is taken from the primary key first (joining first sorted every
manifest after `after` with all its tags before the limit), then the tags of the whole
page from one range of `tags_by_manifest`, between the page's first and last digest: a
tag can only name a manifest of its own repository, so that range holds exactly them."""


async def images(
    pool: asyncpg.Pool, name: str, after: str | None, limit: int
) -> list[asyncpg.Record] | None:
    """Manifests of a repository (digest order) with their tags; None if no such repository."""
    repo_id = await repositories.lookup(pool, name)
    if repo_id is None:
        return None
    return await pool.fetch(IMAGE_PAGE, repo_id, after, limit)


async def image(pool: asyncpg.Pool, name: str, digest: Digest) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """SELECT m.digest, m.media_type, m.artifact_type, m.size, m.created_at, m.content,
                  m.subject_digest, r.name AS repository,
                  coalesce(array_agg(t.name ORDER BY t.name) FILTER (WHERE t.name IS NOT NULL),
                           '{}') AS tags
           FROM manifests m JOIN repositories r ON r.id = m.repository_id
           LEFT JOIN tags t ON t.repository_id = m.repository_id AND t.manifest_digest = m.digest
           WHERE r.name = $1 AND m.digest = $2
           GROUP BY m.repository_id, m.digest, r.name""",
        name,
        str(digest),
    )


async def tag_history(
    pool: asyncpg.Pool, name: str, tag: str | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT h.id, h.name, h.previous_digest, h.manifest_digest, h.changed_at, h.request_id
           FROM tag_history h JOIN repositories r ON r.id = h.repository_id
           WHERE r.name = $1 AND ($2::text IS NULL OR h.name = $2)
             AND ($3::bigint IS NULL OR h.id < $3)
           ORDER BY h.id DESC LIMIT $4""",
        name,
        tag,
        before,
        limit,
    )

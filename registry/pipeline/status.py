"""What the pipeline concluded about each image, and the story of how it got there."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from registry.pipeline.classify import Kind

_REPO = "(SELECT id FROM repositories WHERE name = $1)"


async def ensure(
    pool: asyncpg.Pool,
    repository: str,
    digest: str,
    kind: Kind,
    state: str,
    reasons: list[str] | None = None,
    artifact_type: str | None = None,
) -> None:
    """Create the row for a newly stored manifest. Existing rows are kept, except that an
    artifact's rule is decided again (a tag that names its subject may come later)."""
    await pool.execute(
        """INSERT INTO image_status (repository_id, digest, kind, state, reasons, artifact_type)
           SELECT id, $2, $3, $4, $5, $6 FROM repositories WHERE name = $1
           ON CONFLICT (repository_id, digest) DO UPDATE
               SET state = EXCLUDED.state, reasons = EXCLUDED.reasons,
                   artifact_type = EXCLUDED.artifact_type, updated_at = now()
               WHERE image_status.kind = 'artifact' AND EXCLUDED.kind = 'artifact'
                 AND (image_status.state, image_status.reasons, image_status.artifact_type)
                     IS DISTINCT FROM (EXCLUDED.state, EXCLUDED.reasons, EXCLUDED.artifact_type)""",
        repository,
        digest,
        kind,
        state,
        reasons or [],
        artifact_type,
    )


async def get(pool: asyncpg.Pool, repository: str, digest: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        """SELECT s.*, r.name AS repository FROM image_status s  -- noqa
            JOIN repositories r ON r.id = s.repository_id
            WHERE r.name = $1 AND s.digest = $2""",
        repository,
        digest,
    )


async def update(pool: asyncpg.Pool, repository: str, digest: str, **columns: Any) -> None:
    """Set columns of an image's row (names are fixed by the callers in this package)."""
    allowed = {
        "state",
        "reasons",
        "origin",
        "verification",
        "verification_passed",
        "hardening",
        "hardening_passed",
        "sbom",
        "fingerprint",
        "rebuild",
        "artifact_type",
        "supplier_sboms",
        "vulnerabilities",
    }
    unknown = set(columns) - allowed
    if unknown:
        raise ValueError(f"unknown image_status columns {sorted(unknown)}")
    names = sorted(columns)
    assignments = ", ".join(f"{name} = ${i + 3}" for i, name in enumerate(names))
    await pool.execute(
        f"""UPDATE image_status SET {assignments}, updated_at = now()
            WHERE repository_id = {_REPO} AND digest = $2""",  # noqa: S608 (allow-listed names)
        repository,
        digest,
        *[columns[n] for n in names],
    )


async def index_terms(
    pool: asyncpg.Pool,
    repository: str,
    digest: str,
    packages: Iterable[str],
    vulnerabilities: Iterable[str],
) -> None:
    """Replace what the catalogue search finds the image by: package names (lower case)
    and vulnerability ids with their aliases (upper case)."""
    kinds, terms = [], []
    for kind, values, norm in (
        ("package", packages, str.lower),
        ("vulnerability", vulnerabilities, str.upper),
    ):
        for value in sorted({norm(v) for v in values if v}):
            kinds.append(kind)
            terms.append(value)
    async with pool.acquire() as conn, conn.transaction():
        repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", repository)
        if repo_id is None:
            return
        await conn.execute(
            "DELETE FROM image_search_terms WHERE repository_id = $1 AND digest = $2",
            repo_id,
            digest,
        )
        await conn.execute(
            """INSERT INTO image_search_terms (kind, term, repository_id, digest)
               SELECT k, t, $3, $4 FROM unnest($1::text[], $2::text[]) AS x(k, t)
               WHERE EXISTS (SELECT 1 FROM image_status
                             WHERE repository_id = $3 AND digest = $4)
               ON CONFLICT DO NOTHING""",
            kinds,
            terms,
            repo_id,
            digest,
        )


async def event(
    pool: asyncpg.Pool,
    repository: str,
    digest: str,
    stage: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await pool.execute(
        f"""INSERT INTO pipeline_events (repository_id, digest, stage, outcome, detail)
            VALUES ({_REPO}, $2, $3, $4, $5)""",  # noqa: S608 (constant fragment)
        repository,
        digest,
        stage,
        outcome,
        detail,
    )


async def events(pool: asyncpg.Pool, repository: str, digest: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        f"""SELECT stage, outcome, detail, at FROM pipeline_events
            WHERE repository_id = {_REPO} AND digest = $2 ORDER BY id""",  # noqa: S608
        repository,
        digest,
    )


async def children(pool: asyncpg.Pool, repository: str, digest: str) -> list[str]:
    rows = await pool.fetch(
        f"""SELECT child_digest FROM manifest_children
            WHERE repository_id = {_REPO} AND parent_digest = $2""",  # noqa: S608
        repository,
        digest,
    )
    return [r["child_digest"] for r in rows]


async def parents(pool: asyncpg.Pool, repository: str, digest: str) -> list[str]:
    rows = await pool.fetch(
        f"""SELECT parent_digest FROM manifest_children
            WHERE repository_id = {_REPO} AND child_digest = $2""",  # noqa: S608
        repository,
        digest,
    )
    return [r["parent_digest"] for r in rows]


async def admitted_state(
    pool: asyncpg.Pool, repository: str, digest: str
) -> tuple[str, Any] | None:
    """(state, reasons) of an image for the pull gate; None if the pipeline never saw it."""
    row = await pool.fetchrow(
        f"""SELECT state, reasons FROM image_status
            WHERE repository_id = {_REPO} AND digest = $2""",  # noqa: S608
        repository,
        digest,
    )
    return None if row is None else (row["state"], row["reasons"])


async def stale(
    pool: asyncpg.Pool, prefix: str, fingerprint: str, limit: int = 500
) -> list[tuple[str, str]]:
    """Images under `prefix` judged with other inputs than `fingerprint` (or never judged)."""
    rows = await pool.fetch(
        """SELECT r.name, s.digest FROM image_status s
           JOIN repositories r ON r.id = s.repository_id
           WHERE s.kind IN ('image', 'index', 'chart') AND starts_with(r.name, $1)
             AND s.fingerprint IS DISTINCT FROM $2
           ORDER BY s.updated_at LIMIT $3""",
        prefix,
        fingerprint,
        limit,
    )
    return [(r["name"], r["digest"]) for r in rows]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)

"""The pipeline's part for Helm charts: scan (render, list images, judge) and closure.

A chart is verified like an image (the same trust policy over its signatures). Its scan
renders it with the chart's defaults plus the values of the mirror set entry that brought
it (kept in its origin), judges the chart criteria, and records every image it deploys in
`chart_images` with the copy in this registry it resolves to: the same repository when the
chart names this registry, or the mirrored copy of exactly that upstream reference. Its
admission then also needs every one of those images here and admitted ("closure"); the
reasons name each image that holds it back. When an image's admission changes, the charts
that deploy it go through admission again.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from policy import decide
from policy.chart import (
    ChartContext,
    ChartImage,
    ChartLimits,
    analyze_chart,
    chart_sbom,
    evaluate_chart,
)
from registry.content import RegistryReader
from registry.oci.digest import Digest
from registry.pipeline import status
from registry.pipeline.jobs import RetryLater
from registry.pipeline.services import PipelineServices

MIRROR_WAIT_SECONDS = 2.0


def limits(svc: PipelineServices) -> ChartLimits:
    charts = svc.config.charts
    return ChartLimits(
        render_seconds=charts.render_seconds,
        render_memory_bytes=charts.render_memory_mib << 20,
    )


def registry_names(svc: PipelineServices) -> tuple[str, ...]:
    return svc.config.charts.names(svc.config.http.public_url)


async def _mirror_pending(pool: asyncpg.Pool, mirror_set: str) -> int:
    """Copies of the chart's mirror set still to do: its images may be among them."""
    found: int = await pool.fetchval(
        """SELECT count(*) FROM jobs WHERE kind IN ('mirror-entry', 'mirror-image')
             AND state IN ('queued', 'running') AND payload->>'set' = $1""",
        mirror_set,
    )
    return found


async def resolve(
    pool: asyncpg.Pool, names: tuple[str, ...], image: ChartImage
) -> tuple[str, str] | None:
    """The (repository, digest) in this registry that `image` names, if it is here."""
    if image.repository is None or image.registry is None:
        return None
    if image.registry in names:
        if image.digest is not None:
            found = await pool.fetchval(
                """SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id
                   WHERE r.name = $1 AND m.digest = $2""",
                image.repository,
                image.digest,
            )
        else:
            found = await pool.fetchval(
                """SELECT t.manifest_digest FROM tags t
                   JOIN repositories r ON r.id = t.repository_id
                   WHERE r.name = $1 AND t.name = $2""",
                image.repository,
                image.tag,
            )
        return (image.repository, str(found)) if found else None
    pinned = image.digest or image.tag
    row = await pool.fetchrow(
        """SELECT repository, digest FROM mirror_images WHERE source = $1 AND reference = $2
           ORDER BY mirrored_at DESC LIMIT 1""",
        f"{image.registry}/{image.repository}",
        pinned,
    )
    return (row["repository"], row["digest"]) if row else None


async def scan_chart(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    pool = svc.registry.pool
    origin = row["origin"] or {}
    if origin.get("mirror_set") and await _mirror_pending(pool, origin["mirror_set"]):
        raise RetryLater(
            f"waiting for mirror set {origin['mirror_set']} to copy the images", MIRROR_WAIT_SECONDS
        )
    rule = svc.config.namespace(repo)
    analysis = await analyze_chart(
        RegistryReader(svc.registry, repo),
        Digest.parse(digest),
        origin.get("values") or {},
        limits(svc),
    )
    names = registry_names(svc)
    mirrored: dict[str, str] = {}
    resolved: list[tuple[ChartImage, tuple[str, str] | None]] = []
    for image in analysis.images:
        here = await resolve(pool, names, image)
        resolved.append((image, here))
        if here is not None and image.registry not in names and image.digest:
            mirrored[image.reference] = f"{here[0]}@{here[1]}"
    context = ChartContext(
        repository=repo,
        registry_names=names,
        signature_verified=row["verification_passed"],
        mirrored=mirrored,
    )
    report = evaluate_chart(analysis, context, svc.catalog(rule))
    decision = decide(report, svc.admission_rule(rule))
    async with pool.acquire() as conn, conn.transaction():
        repo_id = await conn.fetchval("SELECT id FROM repositories WHERE name = $1", repo)
        await conn.execute(
            "DELETE FROM chart_images WHERE repository_id = $1 AND digest = $2", repo_id, digest
        )
        await conn.executemany(
            """INSERT INTO chart_images (repository_id, digest, reference, source, pinned,
                   image_repository, image_digest) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT DO NOTHING""",
            [
                (
                    repo_id,
                    digest,
                    image.reference,
                    f"{image.registry}/{image.repository}" if image.repository else None,
                    image.digest or image.tag,
                    here[0] if here else None,
                    here[1] if here else None,
                )
                for image, here in resolved
            ],
        )
    await status.update(
        pool,
        repo,
        digest,
        hardening={**report.to_json(), "chart": analysis.to_json()},
        hardening_passed=decision.allowed,
        sbom=chart_sbom(analysis, name=repo),
    )
    return ("passed" if decision.allowed else "failed"), {
        "reason": decision.reason,
        "blocking": [r.id for r in decision.blocking],
        "images": len(analysis.images),
        "workloads": len(analysis.workloads),
        "engine": analysis.engine,
    }


async def closure_reasons(svc: PipelineServices, repo: str, digest: str) -> list[str]:
    """Why the images a chart deploys hold it back (none: all here and admitted)."""
    pool = svc.registry.pool
    names = registry_names(svc)
    reasons = []
    rows = await pool.fetch(
        """SELECT c.reference, c.source, c.pinned, c.image_repository, c.image_digest
           FROM chart_images c JOIN repositories r ON r.id = c.repository_id
           WHERE r.name = $1 AND c.digest = $2 ORDER BY c.reference""",
        repo,
        digest,
    )
    for row in rows:
        where = (row["image_repository"], row["image_digest"])
        if where[0] is None and row["source"]:
            registry, _, repository = row["source"].partition("/")
            pinned = row["pinned"] or ""
            image = ChartImage(
                row["reference"],
                registry,
                repository,
                None if pinned.startswith("sha256:") else pinned,
                pinned if pinned.startswith("sha256:") else None,
                (),
            )
            found = await resolve(pool, names, image)
            if found is not None:
                where = found
                await pool.execute(
                    """UPDATE chart_images SET image_repository = $4, image_digest = $5
                       WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
                         AND digest = $2 AND reference = $3""",
                    repo,
                    digest,
                    row["reference"],
                    *found,
                )
        if where[0] is None:
            reasons.append(f"image {row['reference']} is not in this registry")
            continue
        image_row = await status.get(pool, where[0], where[1])
        if image_row is None:
            reasons.append(f"image {row['reference']} is not in this registry")
        elif image_row["state"] != "admitted":
            why = list(image_row["reasons"] or [])
            reasons.append(
                f"image {row['reference']} ({where[0]}@{where[1]}) is {image_row['state']}"
                + (f": {why[0]}" if why else "")
            )
    return reasons


async def charts_deploying(
    pool: asyncpg.Pool, repo: str, digest: str, origin: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """(repository, digest) of every chart that deploys this image (by its copy here, or
    by the upstream reference it was mirrored from)."""
    origin = origin or {}
    rows = await pool.fetch(
        """SELECT DISTINCT r.name, c.digest FROM chart_images c
           JOIN repositories r ON r.id = c.repository_id
           WHERE (c.image_repository = $1 AND c.image_digest = $2)
              OR (c.source = $3 AND c.pinned = $4)""",
        repo,
        digest,
        origin.get("source"),
        origin.get("reference"),
    )
    return [(r["name"], r["digest"]) for r in rows]

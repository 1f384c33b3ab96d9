"""Mirror jobs: an entry resolves to images; each image is copied by its own durable job.

`mirror-entry` lists what an entry wants (exact tags, tags matching a pattern or a SemVer
range, pinned digests) and queues one `mirror-image` job each; `mirror-image` copies the
image with its attachments into the entry's target repository, where the pipeline takes
over. Both are idempotent: a re-run after a crash copies only what is missing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from registry.mirror.sets import MirrorEntry, MirrorSet
from registry.mirror.store import entry_job, entry_lane, load_set
from registry.mirror.upstream import problem
from registry.oci.client import NotFoundError, RemoteReader
from registry.oci.reader import ContentNotFound, ContentReader
from registry.pipeline import status
from registry.pipeline.jobs import Failed, Job, Permanent
from registry.pipeline.runner import job_handler, periodic
from registry.pipeline.services import PipelineServices


async def queue_entry(
    svc: PipelineServices, set_name: str, entry: str, source: str | None = None
) -> int | None:
    if source is None:
        source = (await load_set(svc.registry.pool, set_name)).entry(entry).source
    return await svc.jobs.enqueue(*entry_job(set_name, entry), lane=entry_lane(source))


@periodic
async def queue_due_entries(svc: PipelineServices) -> int:
    rows = await svc.registry.pool.fetch(
        """SELECT e.set_name, e.name,
                  (SELECT m->>'source' FROM jsonb_array_elements(s.document->'mirrors') m
                    WHERE m->>'name' = e.name) AS source
           FROM mirror_entries e JOIN mirror_sets s ON s.name = e.set_name
           WHERE e.next_run_at <= now()"""
    )
    for row in rows:
        await queue_entry(svc, row["set_name"], row["name"], row["source"] or "")
    return len(rows)


async def wanted(
    entry: MirrorEntry, tags: list[str] | None
) -> list[tuple[str, str | None, str | None]]:
    """(reference, tag to set, digest the tag must have) for every image an entry wants."""
    refs: list[tuple[str, str | None, str | None]] = [(d, None, None) for d in entry.digests]
    pinned = entry.pinned()
    for tag in tags or []:
        if tag.startswith("sha256-"):  # cosign's signature tags are attachments, not images
            continue
        if tag not in pinned and entry.wants_tag(tag):
            pinned[tag] = None
    refs.extend((t, t, digest) for t, digest in pinned.items())
    return refs


def told(exc: Exception) -> Exception:
    """An upstream's failure as the job failure it is: one line, permanent or retried
    (`registry.mirror.upstream.problem`); anything else as it came."""
    if isinstance(exc, Failed):
        return exc
    found = problem(exc)
    if found is None:
        return exc
    line, permanent = found
    return Permanent(line) if permanent else Failed(line)


async def _reachable(source: ContentReader, reference: str) -> None:
    """Ask the upstream for one image of the entry before queueing them all, so an upstream
    that cannot be reached or refuses us fails the entry once instead of every image. An
    image missing upstream is that image's own failure, told by its own job."""
    try:
        if isinstance(source, RemoteReader):
            await source.repository.resolve(reference)
        else:
            await source.get_manifest(reference)
    except NotFoundError as exc:
        if "NAME_UNKNOWN" in exc.codes:  # the repository itself: no image will be found
            raise
    except ContentNotFound:
        pass


@job_handler("mirror-entry")
async def run_entry(svc: PipelineServices, job: Job) -> dict[str, Any]:
    pool = svc.registry.pool
    mirror_set = await load_set(pool, job.payload["set"])
    entry = mirror_set.entry(job.payload["entry"])
    try:
        source = svc.upstreams.reader(entry)
        upstream_tags = await source.tags() if entry.lists_tags else None
        refs = await wanted(entry, upstream_tags)
        if refs and upstream_tags is None:
            await _reachable(source, refs[0][0])
    except Exception as exc:
        failure = told(exc)
        error = str(failure) if isinstance(failure, Failed) else f"{type(exc).__name__}: {exc}"
        await _entry_done(pool, mirror_set, entry, None, error)
        if failure is exc:
            raise
        raise failure from exc
    for reference, tag, expect in refs:
        await svc.jobs.enqueue(
            "mirror-image",
            f"mirror-image:{mirror_set.name}/{entry.name}/{reference}",
            {
                "set": mirror_set.name,
                "entry": entry.name,
                "reference": reference,
                "tag": tag,
                "expect": expect,
            },
        )
    result = {"images": len(refs), "references": [r for r, _, _ in refs]}
    await _entry_done(pool, mirror_set, entry, result, None)
    return result


async def _entry_done(
    pool: asyncpg.Pool,
    mirror_set: MirrorSet,
    entry: MirrorEntry,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    await pool.execute(
        """UPDATE mirror_entries SET last_run_at = now(),
               last_result = coalesce($3, last_result), last_error = $4,
               next_run_at = now() + make_interval(secs => $5)
           WHERE set_name = $1 AND name = $2""",
        mirror_set.name,
        entry.name,
        result,
        error,
        mirror_set.schedule_seconds(entry),
    )


class UpstreamChanged(Permanent):
    """A pinned tag resolves to another digest upstream: the copy is refused."""


@job_handler("mirror-image")
async def run_image(svc: PipelineServices, job: Job) -> dict[str, Any]:
    try:
        return await _copy_image(svc, job)
    except Exception as exc:
        failure = told(exc)
        if failure is exc:
            raise
        raise failure from exc


async def _copy_image(svc: PipelineServices, job: Job) -> dict[str, Any]:
    pool = svc.registry.pool
    mirror_set = await load_set(pool, job.payload["set"])
    entry = mirror_set.entry(job.payload["entry"])
    if job.payload.get("source"):  # an image a chart of this entry deploys
        entry = entry.model_copy(
            update={
                "source": job.payload["source"],
                "target": job.payload["target"],
                "values": None,
                "chart_images": False,
            }
        )
    reference, tag = job.payload["reference"], job.payload.get("tag")
    source = svc.upstreams.reader(entry)
    expect = job.payload.get("expect")
    if expect is not None:
        found = (await source.get_manifest(reference)).digest
        if str(found) != expect:
            raise UpstreamChanged(
                f"{entry.source}:{reference} is now {found}, but the mirror set pins {expect}"
            )
        reference = expect  # copy exactly what was pinned, then tag it
    result = await svc.copier.manifest(
        source,
        entry.target,
        reference,
        tags=[tag] if tag else [],
        platforms=mirror_set.platforms(entry),
        attachments=entry.attachments,
    )
    origin = {
        "mirror_set": mirror_set.name,
        "entry": entry.name,
        "source": entry.source,
        "reference": reference,
        "mirrored_at": datetime.now(UTC).isoformat(),
    }
    if job.payload.get("chart"):
        origin["deployed_by"] = job.payload["chart"]
    row = await status.get(pool, entry.target, str(result.digest))
    is_chart = row is not None and row["kind"] == "chart"
    if is_chart and entry.values:
        origin["values"] = entry.values
    await status.update(pool, entry.target, str(result.digest), origin=origin)
    if is_chart and entry.chart_images:
        await _mirror_chart_images(svc, mirror_set, entry, str(result.digest))
    if svc.config.namespace(entry.target).rebuild == "prefer":
        from registry.pipeline.rebuilds import keep_sovereign_copy  # loads the rebuild library

        await keep_sovereign_copy(svc, entry.target, str(result.digest))
    await pool.execute(
        """INSERT INTO mirror_images (set_name, entry, source, reference, repository, digest,
               bytes_fetched, blobs_fetched, blobs_reused)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (set_name, entry, source, reference) DO UPDATE
               SET digest = EXCLUDED.digest, repository = EXCLUDED.repository,
               bytes_fetched = mirror_images.bytes_fetched + EXCLUDED.bytes_fetched,
               blobs_fetched = mirror_images.blobs_fetched + EXCLUDED.blobs_fetched,
               blobs_reused = EXCLUDED.blobs_reused, mirrored_at = now()""",
        mirror_set.name,
        entry.name,
        entry.source,
        reference,
        entry.target,
        str(result.digest),
        result.bytes_fetched,
        result.blobs_fetched,
        result.blobs_reused,
    )
    return {
        "digest": str(result.digest),
        "bytes_fetched": result.bytes_fetched,
        "blobs_fetched": result.blobs_fetched,
        "blobs_reused": result.blobs_reused,
        "attachments": result.attachments,
    }


async def _mirror_chart_images(
    svc: PipelineServices, mirror_set: MirrorSet, entry: MirrorEntry, digest: str
) -> int:
    """Queue a copy of every image the chart deploys that is not in this registry: the
    chart is rendered with the entry's values, as its scan will render it."""
    from policy.chart import analyze_chart  # loads the chart reader only when needed
    from registry.content import RegistryReader
    from registry.oci.digest import Digest
    from registry.pipeline.charts import limits, registry_names

    analysis = await analyze_chart(
        RegistryReader(svc.registry, entry.target), Digest.parse(digest), entry.values, limits(svc)
    )
    names = registry_names(svc)
    queued = 0
    for image in analysis.images:
        if image.repository is None or image.registry in names:
            continue
        source = f"{image.registry}/{image.repository}"
        reference = image.digest or image.tag
        await svc.jobs.enqueue(
            "mirror-image",
            f"mirror-image:{mirror_set.name}/{entry.name}/{source}@{reference}",
            {
                "set": mirror_set.name,
                "entry": entry.name,
                "source": source,
                "target": entry.image_target(image.repository),
                "reference": reference,
                "tag": image.tag if image.digest is None else None,
                "expect": None,
                "chart": f"{entry.target}@{digest}",
            },
        )
        queued += 1
    return queued


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)

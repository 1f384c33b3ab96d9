"""How far the service has come with mirror work, and what went wrong: read by
`zoll mirror` and by the API.

A set's progress is told from the latest job of each of its keys — the job resolving
each entry, the copy of each image the entry resolved to, the pipeline stages of each
copied image — not from the jobs one application created: a second `apply` while the
first one's work still runs (or waits for its next attempt) follows that work, whoever
queued it. Images count as images (the progress bar), and each entry carries its latest
failure in one line, with the attempt it was and when the next one runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from registry.mirror.sets import MirrorEntry, MirrorSet
from registry.mirror.store import load_set
from registry.pipeline.keys import STAGES, job_key

MIRROR_KINDS = ["mirror-entry", "mirror-image"]
ACTIVE = ("queued", "running")
ENDED = ("done", "failed")
"""Entry states with nothing left to do (the others: resolving, retrying, copying, judging)."""


def entry_key(set_name: str, entry: str) -> str:
    return f"mirror-entry:{set_name}/{entry}"


def image_key(set_name: str, entry: str, reference: str) -> str:
    return f"mirror-image:{set_name}/{entry}/{reference}"


async def _latest(pool: asyncpg.Pool, keys: Iterable[str]) -> dict[str, asyncpg.Record]:
    """The latest job of each key."""
    rows = await pool.fetch(
        """SELECT DISTINCT ON (key) key, payload, state, attempts, max_attempts, run_after,
                  last_error, result, updated_at
           FROM jobs WHERE key = ANY($1::text[]) ORDER BY key, id DESC""",
        list(keys),
    )
    return {r["key"]: r for r in rows}


async def _active(pool: asyncpg.Pool, keys: Iterable[str]) -> set[str]:
    rows = await pool.fetch(
        "SELECT key FROM jobs WHERE key = ANY($1::text[]) AND state IN ('queued', 'running')",
        list(keys),
    )
    return {r["key"] for r in rows}


def _failing(job: asyncpg.Record | None) -> bool:
    """Failed for good, or failed and waiting for its next attempt."""
    return job is not None and (
        job["state"] == "failed"
        or (job["state"] == "queued" and bool(job["last_error"]) and job["attempts"] > 0)
    )


@dataclass
class _Entry:
    entry: MirrorEntry
    job: asyncpg.Record | None
    references: list[str] | None
    """What the entry resolved to in its latest run; None while it resolves (or failed)."""
    images: dict[str, asyncpg.Record | None] = field(default_factory=dict)
    judging: set[str] = field(default_factory=set)
    """References whose copy is done and whose pipeline stages still run."""

    def copied(self) -> dict[str, str]:
        """reference → digest of the images copied."""
        return {
            ref: job["result"]["digest"]
            for ref, job in self.images.items()
            if job is not None and job["state"] == "done" and job["result"]
        }

    def ended(self) -> int:
        """Images copied and judged, or failed for good."""
        return sum(
            1
            for ref, job in self.images.items()
            if job is not None
            and (job["state"] == "failed" or (job["state"] == "done" and ref not in self.judging))
        )

    def latest_failure(self) -> dict[str, Any] | None:
        jobs = [(None, self.job), *self.images.items()]
        failing = [(ref, job) for ref, job in jobs if job is not None and _failing(job)]
        if not failing:
            return None
        ref, job = max(failing, key=lambda item: item[1]["updated_at"])
        retrying = job["state"] != "failed"
        return {
            "error": (f"{ref}: " if ref else "") + (job["last_error"] or "failed"),
            "attempt": job["attempts"],
            "max_attempts": job["max_attempts"],
            "next_try_at": job["run_after"] if retrying else None,
        }

    def state(self) -> str:
        images = list(self.images.values())
        if self.job is None or self.job["state"] in ACTIVE:
            return "retrying" if _failing(self.job) else "resolving"
        if any(_failing(j) and j is not None and j["state"] != "failed" for j in images):
            return "retrying"
        if any(j is None or j["state"] in ACTIVE for j in images):
            return "copying"
        if self.judging:
            return "judging"
        return "failed" if _failing(self.job) or any(map(_failing, images)) else "done"

    def report(self) -> dict[str, Any]:
        failure = self.latest_failure() or {}
        return {
            "entry": self.entry.name,
            "state": self.state(),
            "images": None if self.references is None else len(self.references),
            "copied": len(self.copied()),
            "error": failure.get("error"),
            "attempt": failure.get("attempt"),
            "max_attempts": failure.get("max_attempts"),
            "next_try_at": failure.get("next_try_at"),
        }

    def failed(self) -> list[dict[str, Any]]:
        jobs = [self.job, *self.images.values()]
        return [
            {"job": j["payload"], "error": j["last_error"]}
            for j in jobs
            if j is not None and j["state"] == "failed"
        ]


async def _entries(pool: asyncpg.Pool, mirror_set: MirrorSet) -> list[_Entry]:
    name = mirror_set.name
    results = {
        r["name"]: r["last_result"] or {}
        for r in await pool.fetch(
            "SELECT name, last_result FROM mirror_entries WHERE set_name = $1", name
        )
    }
    entry_jobs = await _latest(pool, [entry_key(name, e.name) for e in mirror_set.mirrors])
    found = []
    for entry in mirror_set.mirrors:
        job = entry_jobs.get(entry_key(name, entry.name))
        refs = None
        if job is not None and job["state"] == "done" and entry.name in results:
            refs = list(results[entry.name].get("references", []))
        found.append(_Entry(entry, job, refs))
    image_jobs = await _latest(
        pool, [image_key(name, e.entry.name, r) for e in found for r in e.references or []]
    )
    stage_keys: dict[str, tuple[_Entry, str]] = {}
    for e in found:
        e.images = {r: image_jobs.get(image_key(name, e.entry.name, r)) for r in e.references or []}
        for ref, digest in e.copied().items():
            for stage in STAGES:
                stage_keys[job_key(stage, e.entry.target, digest)] = (e, ref)
    for key in await _active(pool, stage_keys):
        e, ref = stage_keys[key]
        e.judging.add(ref)
    return found


async def set_report(pool: asyncpg.Pool, mirror_set: MirrorSet) -> dict[str, Any]:
    """Where a set's work stands: each entry (state, images, latest failure), how many
    images the entries resolved to and how many of those ended (copied and judged, or
    failed), the copied images with their verdicts, and the jobs that failed for good."""
    found = await _entries(pool, mirror_set)
    reports = [e.report() for e in found]
    pending = [r for r in reports if r["state"] not in ENDED]
    return {
        "set": mirror_set.name,
        "entries": reports,
        "wanted": sum(len(e.references or []) for e in found),
        "ended": sum(e.ended() for e in found),
        "pending": len(pending),
        "finished": not pending,
        "images": await set_images(pool, mirror_set.name),
        "failed": [f for e in found for f in e.failed()],
        "charts": await set_charts(pool, mirror_set.name),
        "release": await set_release(pool, mirror_set.name),
    }


async def follow(
    pool: asyncpg.Pool, mirror_set: MirrorSet, poll: float, until: float | None = None
) -> AsyncIterator[dict[str, Any]]:
    """`set_report` now and every `poll` seconds until the set is finished, or until the
    monotonic clock passes `until`: what a waiting follower (CLI or API) shows."""
    while True:
        report = await set_report(pool, mirror_set)
        yield report
        if report["finished"] or (until is not None and time.monotonic() >= until):
            return
        await asyncio.sleep(poll)


async def set_images(pool: asyncpg.Pool, set_name: str) -> list[dict[str, Any]]:
    """The images a set's entries resolved to, with their pipeline state and reasons."""
    rows = await pool.fetch(
        """SELECT i.entry, i.reference, i.repository, i.digest, s.state, s.reasons
           FROM mirror_images i
           LEFT JOIN repositories r ON r.name = i.repository
           LEFT JOIN image_status s ON s.repository_id = r.id AND s.digest = i.digest
           WHERE i.set_name = $1 ORDER BY i.entry, i.reference""",
        set_name,
    )
    return [dict(r) for r in rows]


async def entries(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every mirror entry with its last and next run, image count, state and latest
    failure (of the entry itself or of one of its images: `last_error`)."""
    rows = await pool.fetch(
        """SELECT e.set_name, e.name, e.last_run_at, e.next_run_at, e.last_error,
                  e.last_result, (SELECT count(*) FROM mirror_images i
                                   WHERE i.set_name = e.set_name AND i.entry = e.name) AS images
           FROM mirror_entries e ORDER BY e.set_name, e.name"""
    )
    out = [dict(r) for r in rows]
    reports: dict[tuple[str, str], dict[str, Any]] = {}
    for set_name in sorted({r["set_name"] for r in out}):
        try:
            mirror_set = await load_set(pool, set_name)
        except KeyError:
            continue
        for e in await _entries(pool, mirror_set):
            reports[(set_name, e.entry.name)] = e.report()
    for row in out:
        report = reports.get((row["set_name"], row["name"]), {})
        row["state"] = report.get("state")
        row["last_error"] = report.get("error") or row["last_error"]
        for k in ("attempt", "max_attempts", "next_try_at"):
            row[k] = report.get(k)
    return out


async def pending_mirror_jobs(pool: asyncpg.Pool) -> dict[str, int]:
    """`kind:state` → count of mirror jobs queued, running or failed."""
    rows = await pool.fetch(
        """SELECT kind, state, count(*) AS n FROM jobs
           WHERE kind = ANY($1::text[]) AND state IN ('queued', 'running', 'failed')
           GROUP BY 1, 2""",
        MIRROR_KINDS,
    )
    return {f"{r['kind']}:{r['state']}": int(r["n"]) for r in rows}


async def set_release(pool: asyncpg.Pool, set_name: str) -> dict[str, Any] | None:
    """The release a set was made from (name, version, chart and image keys), if any."""
    found: dict[str, Any] | None = await pool.fetchval(
        "SELECT document->'release' FROM mirror_sets WHERE name = $1", set_name
    )
    return found


async def set_charts(pool: asyncpg.Pool, set_name: str) -> list[dict[str, Any]]:
    """The charts a set brought in, each with its state and every image it deploys (the
    copy here it resolves to, and that copy's state): the per-chart report."""
    charts = await pool.fetch(
        """SELECT i.entry, i.reference, i.repository, i.digest, s.state, s.reasons
           FROM mirror_images i
           JOIN repositories r ON r.name = i.repository
           JOIN image_status s ON s.repository_id = r.id AND s.digest = i.digest
           WHERE i.set_name = $1 AND s.kind = 'chart' ORDER BY i.entry, i.reference""",
        set_name,
    )
    out = []
    for chart in charts:
        images = await pool.fetch(
            """SELECT c.reference, c.image_repository AS repository, c.image_digest AS digest,
                      s.state, s.reasons
               FROM chart_images c JOIN repositories r ON r.id = c.repository_id
               LEFT JOIN repositories ir ON ir.name = c.image_repository
               LEFT JOIN image_status s ON s.repository_id = ir.id AND s.digest = c.image_digest
               WHERE r.name = $1 AND c.digest = $2 ORDER BY c.reference""",
            chart["repository"],
            chart["digest"],
        )
        out.append({**dict(chart), "images": [dict(i) for i in images]})
    return out

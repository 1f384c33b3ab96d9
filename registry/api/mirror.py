"""`/api/v1/mirror`: apply mirror sets and follow the service working through them.

This is what `zoll mirror apply` uses when a service is running: the command sends the
set's YAML and waits on the progress call, so it needs neither the database nor the
storage, only the service's URL (and credentials when it asks for them).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from registry.api.router import API, ApiError, Param, registry_wide_only
from registry.http.access import registry_wide
from registry.http.state import registry_of
from registry.mirror import progress
from registry.mirror.sets import MirrorSet, MirrorSetError
from registry.mirror.store import applied_at, apply_and_queue, load_set

ADMIN = registry_wide("admin")
AUDIT = registry_wide("audit")
MAX_SET_BYTES = 1024 * 1024
MAX_WAIT = 30.0
POLL = 0.05
"""How often a waiting progress call looks at the set's jobs (a few index lookups)."""


class MirrorSetApplied(BaseModel):
    set: str
    entries: list[str]
    applied_at: datetime
    """The set's jobs are those created from this time on (see the progress call)."""


class MirrorImage(BaseModel):
    entry: str
    reference: str
    repository: str
    digest: str
    state: str | None = None
    """quarantined, admitted, rejected or exempt; none before the pipeline saw it"""
    reasons: list[str] | None = None


class ChartImage(BaseModel):
    reference: str
    """as the rendered chart names it"""
    repository: str | None = None
    """the copy in this registry it resolves to (none: not here)"""
    digest: str | None = None
    state: str | None = None
    reasons: list[str] | None = None


class MirrorChart(BaseModel):
    entry: str
    reference: str
    repository: str
    digest: str
    state: str
    reasons: list[str]
    images: list[ChartImage]
    """every image the chart deploys, and where it stands"""


class MirrorFailure(BaseModel):
    job: dict[str, Any]
    error: str | None = None


class MirrorEntryProgress(BaseModel):
    entry: str
    state: str = Field(
        description="resolving, retrying, copying, judging (copied, pipeline running), "
        "done or failed"
    )
    images: int | None = Field(None, description="images it resolved to; none while resolving")
    copied: int
    error: str | None = Field(
        None, description="its latest failure, in one line (`reference: ` for an image's)"
    )
    attempt: int | None = Field(None, description="which attempt that failure was")
    max_attempts: int | None = None
    next_try_at: datetime | None = Field(None, description="when it is tried again; none: never")


class MirrorProgress(BaseModel):
    set: str
    applied_at: datetime
    entries: list[MirrorEntryProgress]
    wanted: int = Field(description="images the entries resolved to so far")
    ended: int = Field(description="of those, images copied and judged, or failed for good")
    pending: int = Field(description="entries with work left (resolving, copying, judging)")
    finished: bool = Field(description="every entry done or failed (whoever queued its work)")
    images: list[MirrorImage]
    failed: list[MirrorFailure] = Field(description="entries and images that failed for good")
    charts: list[MirrorChart] = Field(default_factory=list)
    release: dict[str, Any] | None = None
    """name, version, chart and image keys when the set was applied as a release"""


class MirrorEntryStatus(BaseModel):
    set_name: str
    name: str
    images: int
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    last_error: str | None = Field(
        None, description="the latest failure of the entry or one of its images, in one line"
    )
    last_result: dict[str, Any] | None = None
    state: str | None = Field(None, description="as in the progress call's entries")
    attempt: int | None = None
    max_attempts: int | None = None
    next_try_at: datetime | None = None


class MirrorStatus(BaseModel):
    entries: list[MirrorEntryStatus]
    jobs: dict[str, int]
    """`kind:state` → count of mirror jobs queued, running or failed"""


SET_PARAM = Param("name", "path", "mirror set name")


@API.operation(
    "POST",
    "/api/v1/mirror/sets",
    summary="Apply a mirror set and queue its entries",
    tag="mirror",
    needs=ADMIN,
    response=MirrorSetApplied,
    body=MirrorSet,
    params=(Param("source", "query", "file name to name in error messages"),),
    errors={400: "Not a valid mirror set (the detail names each field)", 413: "Too large"},
)
async def apply_mirror_set(request: web.Request) -> MirrorSetApplied:
    """The body is the set as YAML (`application/yaml`) or JSON, as `zoll mirror apply`
    reads it. It replaces the set of that name; every entry is due now."""
    raw = await request.content.read(MAX_SET_BYTES + 1)
    if len(raw) > MAX_SET_BYTES:
        raise ApiError(413, "Request body too large", f"at most {MAX_SET_BYTES} bytes")
    source = request.query.get("source", "mirror set")[:200]
    try:
        mirror_set, sha256 = MirrorSet.parse(raw, source)
    except MirrorSetError as exc:
        raise ApiError(400, "Invalid mirror set", str(exc)) from None
    registry = registry_of(request)
    names, applied = await apply_and_queue(
        registry.pool, mirror_set, sha256, max_attempts=registry.config.pipeline.max_attempts
    )
    return MirrorSetApplied(set=mirror_set.name, entries=names, applied_at=applied)


@API.operation(
    "GET",
    "/api/v1/mirror/sets",
    summary="Mirror entries, their last and next runs, and pending mirror work",
    tag="mirror",
    needs=AUDIT,
    response=MirrorStatus,
    errors={403: "Auditors of some namespaces only"},
)
async def mirror_status(request: web.Request) -> MirrorStatus:
    """What `zoll mirror status` shows."""
    _registry_wide(request)
    pool = registry_of(request).pool
    rows = await progress.entries(pool)
    return MirrorStatus(
        entries=[MirrorEntryStatus.model_validate(r) for r in rows],
        jobs=await progress.pending_mirror_jobs(pool),
    )


@API.operation(
    "GET",
    "/api/v1/mirror/sets/{name}/progress",
    summary="How far the service is with a mirror set's latest application",
    tag="mirror",
    needs=AUDIT,
    response=MirrorProgress,
    params=(
        SET_PARAM,
        Param(
            "wait",
            "query",
            f"seconds (up to {MAX_WAIT:g}) to wait for the set to finish before answering",
            {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
        ),
    ),
    errors={403: "Auditors of some namespaces only", 404: "No such mirror set"},
)
async def mirror_progress(request: web.Request) -> MirrorProgress:
    """Each entry of the set — resolving, copying, judging, retrying (its latest failure
    in one line, the attempt, the next try), done or failed — counted from the latest
    job of each of its keys, whoever queued it; the images with their state; what failed
    for good. With `wait`, answers as soon as every entry is done or failed, or when the
    time is up: a long poll, so followers need not ask often."""
    _registry_wide(request)
    pool = registry_of(request).pool
    name = request.match_info["name"]
    wait = _seconds(request.query.get("wait", "0"))
    try:
        since = await applied_at(pool, name)
        mirror_set = await load_set(pool, name)
    except KeyError:
        raise ApiError(404, "No such mirror set", name[:100]) from None
    reports = [r async for r in progress.follow(pool, mirror_set, POLL, time.monotonic() + wait)]
    return MirrorProgress.model_validate({**reports[-1], "applied_at": since})


def _registry_wide(request: web.Request) -> None:
    """A set names upstreams and targets in any namespace: auditors of some namespaces
    only see their images through /api/v1/images, not the mirror sets."""
    registry_wide_only(request, "mirror sets span namespaces")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_WAIT:
        raise ApiError(400, "Invalid parameter", f"wait must be a number from 0 to {MAX_WAIT:g}")
    return value

"""Repositories, the images in them, and how their tags moved."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from registry.api.router import API, ApiError, Param, limit_param, query_int
from registry.db import manifests as manifest_rows
from registry.db import repositories as repo_rows
from registry.http.access import registry_wide, repository
from registry.http.state import registry_of
from registry.oci.names import is_valid_name

NAME = "{name:[^{}]+?}"


class RepositorySummary(BaseModel):
    name: str
    created_at: datetime
    tags: int
    manifests: int


class RepositoryPage(BaseModel):
    repositories: list[RepositorySummary]
    next: str | None = None
    """Pass as `after` for the next page."""


class ImageSummary(BaseModel):
    digest: str
    media_type: str
    artifact_type: str | None = None
    size: int
    created_at: datetime
    subject: str | None = None
    tags: list[str]


class ImagePage(BaseModel):
    repository: str
    images: list[ImageSummary]
    next: str | None = None


class TagMove(BaseModel):
    id: int
    tag: str
    previous_digest: str | None = None
    digest: str | None = None
    """None when the tag was deleted."""
    changed_at: datetime
    request_id: str | None = None


class TagHistory(BaseModel):
    repository: str
    moves: list[TagMove]
    next: int | None = None


def path_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not is_valid_name(name):
        raise ApiError(400, "Invalid repository name", name[:200])
    return name


@API.operation(
    "GET",
    "/api/v1/repositories",
    summary="List repositories",
    tag="repositories",
    needs=registry_wide("catalog"),
    response=RepositoryPage,
    params=(limit_param(), Param("after", "query", "repository name to continue after")),
)
async def list_repositories(request: web.Request) -> RepositoryPage:
    """Repositories in name order with how many tags and manifests each holds."""
    reg = registry_of(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await repo_rows.summaries(reg.pool, request.query.get("after"), limit + 1)
    page = [
        RepositorySummary(
            name=r["name"], created_at=r["created_at"], tags=r["tags"], manifests=r["manifests"]
        )
        for r in rows[:limit]
    ]
    return RepositoryPage(repositories=page, next=page[-1].name if len(rows) > limit else None)


@API.operation(
    "GET",
    "/api/v1/repositories/{name}/images",
    route=f"/api/v1/repositories/{NAME}/images",
    summary="List the manifests of a repository",
    tag="repositories",
    needs=repository("pull"),
    response=ImagePage,
    params=(
        Param("name", "path", "repository name (may contain /)"),
        limit_param(),
        Param("after", "query", "digest to continue after"),
    ),
    errors={404: "No such repository"},
)
async def list_images(request: web.Request) -> ImagePage:
    """Every manifest stored in the repository, tagged or not, with its tags."""
    reg = registry_of(request)
    name = path_name(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await manifest_rows.images(reg.pool, name, request.query.get("after"), limit + 1)
    if rows is None:
        raise ApiError(404, "No such repository", name)
    images = [
        ImageSummary(
            digest=r["digest"],
            media_type=r["media_type"],
            artifact_type=r["artifact_type"],
            size=r["size"],
            created_at=r["created_at"],
            subject=r["subject_digest"],
            tags=list(r["tags"]),
        )
        for r in rows[:limit]
    ]
    return ImagePage(
        repository=name, images=images, next=images[-1].digest if len(rows) > limit else None
    )


@API.operation(
    "GET",
    "/api/v1/repositories/{name}/tag-history",
    route=f"/api/v1/repositories/{NAME}/tag-history",
    summary="How the tags of a repository moved",
    tag="repositories",
    needs=repository("pull"),
    response=TagHistory,
    params=(
        Param("name", "path", "repository name (may contain /)"),
        Param("tag", "query", "only this tag"),
        limit_param(),
        Param("before", "query", "history id to continue before", {"type": "integer"}),
    ),
)
async def tag_history(request: web.Request) -> TagHistory:
    """Newest first: every push that moved a tag and every tag deletion, with request ids."""
    reg = registry_of(request)
    name = path_name(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    before = query_int(request, "before", 0, 1, 2**62) if "before" in request.query else None
    rows = await manifest_rows.tag_history(
        reg.pool, name, request.query.get("tag"), before, limit + 1
    )
    moves = [
        TagMove(
            id=r["id"],
            tag=r["name"],
            previous_digest=r["previous_digest"],
            digest=r["manifest_digest"],
            changed_at=r["changed_at"],
            request_id=r["request_id"],
        )
        for r in rows[:limit]
    ]
    return TagHistory(
        repository=name, moves=moves, next=moves[-1].id if len(rows) > limit else None
    )

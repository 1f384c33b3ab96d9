"""One image's story: what it is, what it references, what refers to it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from registry.api.router import API, ApiError, Param
from registry.db import manifests as manifest_rows
from registry.http.access import Access
from registry.http.state import registry_of
from registry.oci.digest import Digest, DigestError
from registry.oci.names import is_valid_name

IMAGE = "{name:[^{}@]+}@{digest:[^/{}]+}"
IMAGE_PARAMS = (
    Param("name", "path", "repository name (may contain /)"),
    Param("digest", "path", "manifest digest, e.g. sha256:…"),
)


class DescriptorModel(BaseModel):
    mediaType: str
    digest: str
    size: int
    artifactType: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None


class ImageDetail(BaseModel):
    repository: str
    digest: str
    media_type: str
    artifact_type: str | None = None
    size: int
    created_at: datetime
    tags: list[str]
    subject: str | None = None
    config: DescriptorModel | None = None
    layers: list[DescriptorModel] = []
    manifests: list[DescriptorModel] = []
    """Children, when the image is an index."""
    referrers: list[DescriptorModel] = []
    manifest: dict[str, Any]


def image_ref(request: web.Request) -> tuple[str, Digest]:
    """The repository and digest of an `/api/v1/images/<name>@<digest>` path."""
    name = request.match_info["name"]
    if not is_valid_name(name):
        raise ApiError(400, "Invalid repository name", name[:200])
    try:
        return name, Digest.parse(request.match_info["digest"])
    except DigestError as exc:
        raise ApiError(400, "Invalid digest", str(exc)) from exc


def image_needs(request: web.Request) -> list[Access]:
    return [Access("repository", request.match_info["name"], "pull")]


@API.operation(
    "GET",
    "/api/v1/images/{name}@{digest}",
    route=f"/api/v1/images/{IMAGE}",
    summary="An image and everything attached to it",
    tag="images",
    needs=image_needs,
    response=ImageDetail,
    params=IMAGE_PARAMS,
    errors={404: "No such image in that repository"},
)
async def get_image(request: web.Request) -> ImageDetail:
    """The manifest, its config and layers (or, for an index, its children), its tags,
    and the artifacts (signatures, attestations, SBOMs) that name it as their subject."""
    reg = registry_of(request)
    name, digest = image_ref(request)
    row = await manifest_rows.image(reg.pool, name, digest)
    if row is None:
        raise ApiError(404, "No such image", f"{name}@{digest}")
    body: dict[str, Any] = json.loads(bytes(row["content"]))
    referrers = await manifest_rows.referrers(reg.pool, name, digest, None)
    config = body.get("config")
    return ImageDetail(
        repository=name,
        digest=row["digest"],
        media_type=row["media_type"],
        artifact_type=row["artifact_type"],
        size=row["size"],
        created_at=row["created_at"],
        tags=list(row["tags"]),
        subject=row["subject_digest"],
        config=DescriptorModel.model_validate(config) if isinstance(config, dict) else None,
        layers=[DescriptorModel.model_validate(d) for d in body.get("layers") or []],
        manifests=[DescriptorModel.model_validate(d) for d in body.get("manifests") or []],
        referrers=[DescriptorModel.model_validate(d) for d in referrers],
        manifest=body,
    )

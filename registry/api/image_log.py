"""Every statement Zoll made about one image, linked to its log entries with proofs:
what an auditor needs to check an admission decision offline."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from attest.dsse import Envelope, EnvelopeError
from attest.signing import envelope_statement
from attest.tlog.entries import KIND_ADMISSION, KIND_ATTESTATION, LogEntry
from registry.api.images import IMAGE, IMAGE_PARAMS, image_needs, image_ref
from registry.api.router import API, ApiError
from registry.db import manifests as manifest_rows
from registry.http.state import registry_of
from registry.pipeline.services import services_of


class ImageLogEntry(BaseModel):
    """One entry; saved as a file it is both `--entry` and `--proof` of
    `zoll log verify-inclusion`."""

    logIndex: int
    kind: str
    predicateType: str | None = None
    """For attestations: what the statement says (VSA, hardening result, SBOM, …)."""
    decision: str | None = None
    """For admission decisions: admitted or denied."""
    entry: dict[str, Any]
    """The log entry as `/api/v1/log/entries/{index}` serves it."""
    proof: dict[str, Any]
    """Inclusion proof against `checkpoint`."""
    checkpoint: str


class ImageLog(BaseModel):
    repository: str
    digest: str
    origin: str
    checkpoint: str
    """The log's signed checkpoint every proof below leads to."""
    entries: list[ImageLogEntry]


def _summary(entry: LogEntry) -> dict[str, str | None]:
    if entry.kind == KIND_ATTESTATION:
        try:
            statement = envelope_statement(Envelope.from_json(entry.body.get("envelope")))
        except (EnvelopeError, ValueError):
            return {}
        return {"predicateType": statement.get("predicateType")}
    if entry.kind == KIND_ADMISSION:
        return {"decision": entry.body.get("decision")}
    return {}


@API.operation(
    "GET",
    "/api/v1/images/{name}@{digest}/log",
    route=f"/api/v1/images/{IMAGE}/log",
    summary="Every log entry about an image, with inclusion proofs",
    tag="transparency",
    needs=image_needs,
    response=ImageLog,
    params=IMAGE_PARAMS,
    errors={404: "No such image, and no entry about it"},
)
async def image_log(request: web.Request) -> ImageLog:
    """The attestations Zoll signed about the image (VSA, hardening result, SBOM, rebuild
    result) and its admission decisions, in log order, each with an inclusion proof
    against the current signed checkpoint."""
    name, digest = image_ref(request)
    svc = services_of(request)
    head = await svc.log.checkpoint()
    size = head.checkpoint.size
    found = [e for e in await svc.log.entries_about(name, str(digest)) if e.index < size]
    if not found and await manifest_rows.image(registry_of(request).pool, name, digest) is None:
        raise ApiError(404, "No such image", f"{name}@{digest}")
    text = head.to_text()
    entries = []
    for entry in found:
        proof = await svc.log.inclusion_proof(entry.index, size)
        entries.append(
            ImageLogEntry(
                logIndex=entry.index,
                kind=entry.kind,
                entry=entry.to_json(),
                proof=proof.to_json(),
                checkpoint=text,
                **_summary(entry),
            )
        )
    return ImageLog(
        repository=name,
        digest=str(digest),
        origin=svc.log.origin,
        checkpoint=text,
        entries=entries,
    )

"""The auditor's view of the pipeline: where an image stands and why, with the evidence."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from registry.api.images import IMAGE, IMAGE_PARAMS, image_needs, image_ref
from registry.api.router import API, ApiError
from registry.http.access import registry_wide
from registry.http.state import registry_of
from registry.pipeline import status
from registry.pipeline.services import services_of


class StageEvent(BaseModel):
    stage: str
    outcome: str
    at: datetime
    detail: dict[str, Any] | None = None


class ImageStatus(BaseModel):
    repository: str
    digest: str
    kind: str
    """image, index, chart or artifact"""
    state: str
    """quarantined, admitted, rejected or exempt"""
    reasons: list[str]
    """Why it is held; for an exempt artifact, the rule that lets it through"""
    namespace: str
    """The namespace rule (prefix) that applies."""
    admission: str
    verification_passed: bool | None = None
    hardening_passed: bool | None = None
    origin: dict[str, Any] | None = None
    fingerprint: str | None = None
    updated_at: datetime
    events: list[StageEvent]
    warnings: list[str] = []
    """What was not checked (no vulnerability data, …), from the latest scan."""
    log_indexes: list[int] = []
    """Transparency-log entries about the image (attestations, admission decisions); with
    their proofs at `/api/v1/images/{name}@{digest}/log`."""


class Document(BaseModel):
    """A stored JSON document (verification result, hardening report, SBOM)."""

    repository: str
    digest: str
    document: dict[str, Any]


class AttestationModel(BaseModel):
    id: int
    predicate_type: str
    keyid: str
    status: str
    log_index: int | None = None
    created_at: datetime
    envelope: dict[str, Any]
    inclusion_proof: dict[str, Any] | None = None
    """Against the checkpoint below, so it can be checked offline."""


class Attestations(BaseModel):
    repository: str
    digest: str
    checkpoint: str
    """The log's signed checkpoint (C2SP signed note) the proofs refer to."""
    attestations: list[AttestationModel]


class JobCounts(BaseModel):
    jobs: dict[str, dict[str, int]]
    """kind → state → count"""


async def _row(request: web.Request) -> Any:
    name, digest = image_ref(request)
    row = await status.get(registry_of(request).pool, name, str(digest))
    if row is None:
        raise ApiError(404, "No such image", f"{name}@{digest}")
    return row


@API.operation(
    "GET",
    "/api/v1/images/{name}@{digest}/status",
    route=f"/api/v1/images/{IMAGE}/status",
    summary="Where an image stands in the pipeline, and its story",
    tag="pipeline",
    needs=image_needs,
    response=ImageStatus,
    params=IMAGE_PARAMS,
    errors={404: "No such image"},
)
async def image_status(request: web.Request) -> ImageStatus:
    """Quarantined, admitted, rejected or exempt, with the reasons, and every stage outcome
    in order (verify, scan, attest, admit)."""
    row = await _row(request)
    name = row["repository"]
    rule = registry_of(request).config.namespace(name)
    events = await status.events(registry_of(request).pool, name, row["digest"])
    indexes = await services_of(request).log.indexes_about(name, row["digest"])
    return ImageStatus(
        repository=name,
        digest=row["digest"],
        kind=row["kind"],
        state=row["state"],
        reasons=list(row["reasons"] or []),
        namespace=rule.prefix,
        admission=rule.admission,
        verification_passed=row["verification_passed"],
        hardening_passed=row["hardening_passed"],
        origin=row["origin"],
        fingerprint=row["fingerprint"],
        updated_at=row["updated_at"],
        events=[
            StageEvent(stage=e["stage"], outcome=e["outcome"], at=e["at"], detail=e["detail"])
            for e in events
        ],
        log_indexes=indexes,
        warnings=next(
            (
                (e["detail"] or {}).get("warnings", [])
                for e in reversed(events)
                if e["stage"] == "scan"
            ),
            [],
        ),
    )


def _document(field: str, what: str) -> Any:
    async def handler(request: web.Request) -> Document:
        row = await _row(request)
        if row[field] is None:
            raise ApiError(
                404, f"No {what}", f"{row['repository']}@{row['digest']} has no {what} yet"
            )
        return Document(repository=row["repository"], digest=row["digest"], document=row[field])

    handler.__name__ = f"get_{field}"
    handler.__doc__ = f"The {what} stored for the image."
    return handler


for _field, _what, _path in (
    ("verification", "verification result", "verification"),
    ("hardening", "hardening report", "hardening"),
    ("sbom", "SBOM (CycloneDX 1.6)", "sbom"),
):
    API.operation(
        "GET",
        f"/api/v1/images/{{name}}@{{digest}}/{_path}",
        route=f"/api/v1/images/{IMAGE}/{_path}",
        summary=f"The image's {_what}",
        tag="pipeline",
        needs=image_needs,
        response=Document,
        params=IMAGE_PARAMS,
        errors={404: f"No such image, or no {_what} yet"},
    )(_document(_field, _what))


class SupplierSboms(BaseModel):
    repository: str
    digest: str
    sboms: list[dict[str, Any]]
    """Each supplier SBOM: where it was found (referrer, cosign tag, attestation), its
    format, the document, and its comparison with Zoll's SBOM (in both, only the
    supplier's, only Zoll's)."""


@API.operation(
    "GET",
    "/api/v1/images/{name}@{digest}/sbom/supplier",
    route=f"/api/v1/images/{IMAGE}/sbom/supplier",
    summary="The SBOMs the supplier attached, compared with Zoll's",
    tag="pipeline",
    needs=image_needs,
    response=SupplierSboms,
    params=IMAGE_PARAMS,
    errors={404: "No such image, or not scanned yet"},
)
async def supplier_sboms(request: web.Request) -> SupplierSboms:
    """Read at scan time: SPDX and CycloneDX documents attached as OCI referrers, under
    cosign's `.sbom` tag, or as SBOM attestations; Zoll's own SBOM is at `/sbom`."""
    row = await _row(request)
    if row["supplier_sboms"] is None:
        raise ApiError(
            404, "Not scanned yet", f"{row['repository']}@{row['digest']} has not been scanned"
        )
    return SupplierSboms(
        repository=row["repository"], digest=row["digest"], sboms=row["supplier_sboms"]
    )


@API.operation(
    "GET",
    "/api/v1/images/{name}@{digest}/attestations",
    route=f"/api/v1/images/{IMAGE}/attestations",
    summary="Zoll's signed attestations about an image, with log inclusion proofs",
    tag="pipeline",
    needs=image_needs,
    response=Attestations,
    params=IMAGE_PARAMS,
    errors={404: "No such image"},
)
async def image_attestations(request: web.Request) -> Attestations:
    """Every logged attestation (VSA, hardening result, SBOM, rebuild result) as its DSSE
    envelope, with an inclusion proof against the current signed checkpoint."""
    row = await _row(request)
    svc = services_of(request)
    checkpoint = await svc.log.checkpoint()
    items = []
    for att in await svc.ledger.for_subject(image_ref(request)[1]):
        proof = None
        if att.log_index is not None and att.log_index < checkpoint.checkpoint.size:
            proof = (
                await svc.log.inclusion_proof(att.log_index, checkpoint.checkpoint.size)
            ).to_json()
        items.append(
            AttestationModel(
                id=att.id,
                predicate_type=att.predicate_type,
                keyid=att.keyid,
                status=att.status,
                log_index=att.log_index,
                created_at=att.created_at,
                envelope=att.envelope.to_json(),
                inclusion_proof=proof,
            )
        )
    return Attestations(
        repository=row["repository"],
        digest=row["digest"],
        checkpoint=checkpoint.to_text(),
        attestations=items,
    )


@API.operation(
    "GET",
    "/api/v1/pipeline/jobs",
    summary="Pipeline jobs by kind and state",
    tag="pipeline",
    needs=registry_wide("audit"),
    response=JobCounts,
)
async def job_counts(request: web.Request) -> JobCounts:
    """How much work is queued, running, done and failed, per job kind."""
    return JobCounts(jobs=await services_of(request).jobs.counts())

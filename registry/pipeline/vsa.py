"""What Zoll's VSA names besides its verdict (SLSA VSA v1): the image with the registry it
lives in (`resourceUri`), the supplier attestations the verification relied on
(`inputAttestations`), and the trust policy document by the URL and digest auditors
fetch it at (`policy`). Everything an auditor follows from a VSA resolves."""

from __future__ import annotations

from typing import Any

from attest.results import VerificationResult
from attest.statements import ResourceRef
from registry.oci.digest import Digest, DigestError
from registry.pipeline import status
from registry.pipeline.services import PipelineServices, public_base, registry_host


def resource_uri(svc: PipelineServices, repo: str, digest: Digest) -> str:
    return f"oci://{registry_host(svc.config)}/{repo}@{digest}"


def policy_ref(svc: PipelineServices, result: VerificationResult | None) -> ResourceRef:
    """The policy document's URL (`/api/v1/trust-policies/{digest}`, the applied policy's
    name as the fragment) and its SHA-256."""
    sha = svc.trust_policy_sha256
    if sha == "none":
        return ResourceRef("zoll:trust-policy/none")
    uri = f"{public_base(svc.config)}/api/v1/trust-policies/sha256:{sha}"
    if result is not None:
        uri += "#" + result.policy.split("@", 1)[0]
    return ResourceRef(uri, {"sha256": sha})


async def input_attestations(svc: PipelineServices, repo: str, row: Any) -> list[ResourceRef]:
    """The attached signatures and attestations that satisfied a requirement, one per
    attachment manifest: `host/repo@digest`, pinned by that digest (the manifest pins its
    layers). A verification inherited from a signed index or from the upstream image of
    a rebuild names that image's attachments."""
    document = row["verification"]
    if not document:
        return []
    inherited = document.get("inherited_from")
    if inherited:
        parent = await status.get(svc.registry.pool, repo, inherited)
        if parent is None or not parent["verification"]:
            return []
        document = parent["verification"]
    result = VerificationResult.from_json(document)
    used = {e for requirement in result.requirements for e in requirement.satisfied_by}
    host = registry_host(svc.config)
    found: dict[str, ResourceRef] = {}
    for evidence in result.evidence:
        attachment = evidence.details.get("attachment")
        if evidence.id not in used or not attachment or attachment in found:
            continue
        try:
            pinned = Digest.parse(attachment)
        except DigestError:
            continue
        found[attachment] = ResourceRef(
            f"{host}/{repo}@{pinned}", {pinned.algorithm: pinned.encoded}
        )
    return [found[k] for k in sorted(found)]

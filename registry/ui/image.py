"""One image: the verdict and why, with the evidence Zoll found, and everything needed to
check Zoll's word in the reader's own browser.

The page is assembled from the /api/v1 handlers (the image, its status, its attestations
with inclusion proofs) and the stored documents (verification result, hardening report,
SBOM, vulnerability findings, rebuild result); the attestations are fetched again by the
page's script (`attestations.json`, the API's answer) when the reader asks to verify.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from aiohttp import web

from attest.results import ResultSchemaError, VerificationResult
from policy.report import HardeningReport, ReportError
from registry.api import images as images_api
from registry.api import pipeline as pipeline_api
from registry.api.images import image_needs, image_ref
from registry.http.state import registry_of
from registry.pipeline import status
from registry.pipeline.services import services_of
from registry.ui.pages import page, render

_CRITERION = re.compile(r"^hardening criterion (\S+) ")
_REQUIREMENT = re.compile(r"^verification requirement (\S+) failed")
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "unknown": 4}


def _verification(row: Any) -> VerificationResult | None:
    try:
        return VerificationResult.from_json(row["verification"]) if row["verification"] else None
    except ResultSchemaError:
        return None


def _hardening(row: Any) -> HardeningReport | None:
    try:
        return HardeningReport.from_json(row["hardening"]) if row["hardening"] else None
    except ReportError:
        return None


def reasons_with_evidence(
    reasons: list[str], verification: VerificationResult | None, report: HardeningReport | None
) -> list[dict[str, Any]]:
    """Each reason of the verdict with what was found: the criterion's evidence lines,
    or the requirement's problems and the evidence they are about."""
    out: list[dict[str, Any]] = []
    for reason in reasons:
        evidence: list[str] = []
        criterion = _CRITERION.match(reason)
        requirement = _REQUIREMENT.match(reason)
        if criterion and report is not None:
            with contextlib.suppress(KeyError):
                found = report.result(criterion.group(1))
                out.append(
                    {
                        "text": f"{found.id} {found.title} ({found.severity}): not met",
                        "evidence": list(found.evidence),
                        "rule": found.rule,
                    }
                )
                continue
        elif requirement and verification is not None:
            try:
                req = verification.requirement(requirement.group(1))
            except KeyError:
                req = None
            for problem in req.problems if req else ():
                where = f" ({problem.evidence})" if problem.evidence else ""
                evidence.append(f"{problem.reason.value}: {problem.message}{where}")
        out.append({"text": reason, "evidence": evidence, "rule": None})
    return out


def why_trusted(
    verification: VerificationResult | None, report: HardeningReport | None, rebuild: Any
) -> list[str]:
    """What an admitted image's admission rests on, in the words of the evidence."""
    lines = []
    if verification is not None:
        for req in verification.requirements:
            if not req.passed:
                continue
            who = []
            for ev_id in req.satisfied_by:
                try:
                    ev = verification.evidence_by_id(ev_id)
                except KeyError:
                    continue
                if ev.signer is not None and ev.signer.identity:
                    who.append(f"{ev.signer.identity} ({ev.signer.issuer})")
                elif ev.signer is not None:
                    who.append(f"key {(ev.signer.keyid or ev.signer.kind)[:16]}")
            by = f" — signed by {', '.join(sorted(set(who)))}" if who else ""
            lines.append(f"{req.description}: passed{by}")
    if report is not None:
        counts = report.counts
        lines.append(
            f"hardening criteria: {counts['pass']} of {counts['pass'] + counts['fail']} "
            f"applicable criteria met ({counts['not_applicable']} not applicable)"
        )
    outcome = ((rebuild or {}).get("result") or {}).get("outcome")
    if outcome:
        lines.append(f"rebuild from source: {outcome}")
    return lines


def vulnerabilities(row: Any) -> list[dict[str, Any]] | None:
    found = row["vulnerabilities"]
    if found is None:
        return None
    return sorted(found, key=lambda v: (SEVERITY_ORDER.get(v.get("severity"), 9), v.get("id")))


def sbom_components(row: Any) -> list[dict[str, Any]]:
    sbom = row["sbom"] or {}
    return [
        {
            "name": c.get("name", ""),
            "version": c.get("version", ""),
            "type": c.get("type", ""),
            "purl": c.get("purl", ""),
            "licenses": ", ".join(
                (lic.get("license") or {}).get("id") or (lic.get("license") or {}).get("name") or ""
                for lic in c.get("licenses") or []
            ),
        }
        for c in sbom.get("components") or []
    ]


@page(image_needs)
async def image_page(request: web.Request) -> web.StreamResponse:
    detail = await images_api.get_image(request)
    name, digest = image_ref(request)
    row = await status.get(registry_of(request).pool, name, str(digest))
    state = await pipeline_api.image_status(request) if row is not None else None
    verification = _verification(row) if row is not None else None
    report = _hardening(row) if row is not None else None
    svc = services_of(request)
    attestations = await svc.ledger.for_subject(digest)
    waived = set(registry_of(request).config.namespace(name).waive)
    return await render(
        request,
        "image.html",
        title=f"{name}@{digest}",
        name=name,
        namespace=name.split("/", 1)[0],
        image=detail,
        judged=state,
        shown_state=(
            "pending"
            if state is not None and state.state == "quarantined" and state.fingerprint is None
            else state.state
            if state is not None
            else None
        ),
        reasons=reasons_with_evidence(state.reasons if state else [], verification, report),
        why=why_trusted(verification, report, row["rebuild"] if row else None),
        verification=verification,
        report=report,
        waived=waived,
        rebuild=(row["rebuild"] or {}).get("result") if row is not None else None,
        vulns=vulnerabilities(row) if row is not None else None,
        components=sbom_components(row) if row is not None else [],
        attestations=attestations,
        keys_url="/api/v1/keys",
        attestations_url=f"/ui/r/{name}@{digest}/attestations.json",
    )


@page(image_needs)
async def attestations_json(request: web.Request) -> web.StreamResponse:
    """The API's answer (envelopes, inclusion proofs, the signed checkpoint) for the
    page's verifier, with the page's own session instead of API credentials."""
    result = await pipeline_api.image_attestations(request)
    return web.Response(
        body=result.model_dump_json().encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )

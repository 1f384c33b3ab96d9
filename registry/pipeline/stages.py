"""The pipeline stages. Each is one durable job per image and idempotent: it reads what
earlier stages stored, writes its own result, records an event, and queues the next stage.

    verify  → trust policy over signatures and attestations (attest.verify_image)
    scan    → analyse layers, SBOM, vulnerabilities, hardening criteria (policy)
    attest  → sign a VSA, the hardening result and the SBOM; log them; attach them
    admit   → decide quarantined/admitted; log the decision

An index is verified itself (that is where multi-arch images are usually signed); its
children inherit a passing verification from it, are scanned one by one, and the index is
admitted when all of them are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from attest.artifacts import (
    ZOLL_KEYID_ANNOTATION,
    attestation_artifacts,
    cosign_tag,
)
from attest.results import VerificationResult
from attest.signing import envelope_statement
from attest.statements import (
    VSA_V1,
    CriterionOutcome,
    ResourceRef,
    hardening_result,
    statement,
    subject,
    vsa,
)
from attest.tlog.entries import admission_record
from attest.tlog.ledger import LoggedAttestation
from attest.tlog.tlogproof import TlogProof
from attest.trust_policy import QuorumRequirement
from policy import analyze_image, build_sbom, decide, evaluate
from policy.catalog import severity_rank
from policy.context import ImageContext
from policy.report import HardeningReport
from policy.sbom.cyclonedx import PREDICATE_TYPE as CYCLONEDX_BOM
from registry.content import RegistryReader, store_blobs, store_manifests
from registry.db import manifests as manifest_rows
from registry.federation.wakeups import wake
from registry.logs import get_logger
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import ContentNotFound
from registry.pipeline import status, supplier_sboms, workload
from registry.pipeline import vsa as vsa_parts
from registry.pipeline.jobs import Cancelled, JobQueue, RetryLater
from registry.pipeline.keys import STAGES, job_key
from registry.pipeline.services import PipelineServices
from registry.pipeline.vulndata import NOT_CHECKED, vuln_data

__all__ = ["STAGES", "cancel_deleted", "enqueue", "job_key", "run_stage"]
log = get_logger("zoll.pipeline")
DELETED = "the image was deleted"


async def cancel_deleted(jobs: JobQueue, repository: str, digest: str) -> int:
    """Cancel the queued stages of an image that was just deleted."""
    keys = [job_key(stage, repository, digest) for stage in STAGES]
    return await jobs.cancel_queued(keys, DELETED)


async def enqueue(
    svc: PipelineServices, stage: str, repository: str, digest: str, delay: float = 0
) -> None:
    await svc.jobs.enqueue(
        stage,
        job_key(stage, repository, digest),
        {"repository": repository, "digest": digest},
        delay=delay,
    )


async def run_stage(svc: PipelineServices, stage: str, repository: str, digest: str) -> str:
    """Run one stage; returns its outcome word. Raises RetryLater when inputs are not ready,
    Cancelled when the image was deleted before or while the stage ran (whatever the
    deletion made the stage trip over: a missing manifest, blob or row)."""
    row = await status.get(svc.registry.pool, repository, digest)
    if row is None:
        raise Cancelled(DELETED)
    handler = {
        "verify": _verify,
        "scan": _scan,
        "rebuild": _rebuild,
        "attest": _attest,
        "admit": _admit,
    }[stage]
    try:
        outcome, detail = await handler(svc, repository, digest, row)
    except (RetryLater, Cancelled):
        raise
    except Exception:
        if await status.get(svc.registry.pool, repository, digest) is None:
            raise Cancelled(DELETED) from None
        raise
    await status.event(svc.registry.pool, repository, digest, stage, outcome, detail)
    log.info("stage done", stage=stage, repository=repository, digest=digest, outcome=outcome)
    return outcome


async def _verify(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    pool = svc.registry.pool
    policy = svc.trust_policies.for_repository(repo) if svc.trust_policies else None
    if policy is None:
        await status.update(pool, repo, digest, verification=None, verification_passed=None)
        await enqueue(svc, "scan", repo, digest)
        return "no-policy", {"message": "no trust policy applies to this repository"}
    result = await svc.verify_image(
        RegistryReader(svc.registry, repo), Digest.parse(digest), policy
    )
    document = result.to_json()
    passed = result.passed
    if not passed and not result.errors and _self_in_quorum(svc, repo) is not None:
        # This node's own verdict is one of the quorum's votes: it is counted at admission.
        passed = all(r.passed for r in result.requirements if r.id != "quorum")
    inherited = None
    if not passed and row["kind"] == "image":
        # A platform image inherits its signed index's verification; Zoll's own rebuild
        # (`rebuild: prefer`) the verification of the upstream image it reproduces.
        sources = await status.parents(pool, repo, digest)
        rebuilt_from = (row["origin"] or {}).get("rebuilt_from")
        for parent in [*sources, *([rebuilt_from] if rebuilt_from else [])]:
            parent_row = await status.get(pool, repo, parent)
            if parent_row is not None and parent_row["verification_passed"]:
                passed, inherited = True, parent
                break
    if inherited:
        document["inherited_from"] = inherited
    await status.update(pool, repo, digest, verification=document, verification_passed=passed)
    if row["kind"] == "index" and result.passed:
        for child in await status.children(pool, repo, digest):
            await enqueue(svc, "verify", repo, child)
    await enqueue(svc, "scan", repo, digest)
    outcome = "passed" if passed else "failed"
    return outcome, {
        "policy": result.policy,
        "inherited_from": inherited,
        "requirements": {r.id: r.passed for r in result.requirements},
    }


async def _context(svc: PipelineServices, repo: str, digest: str, row: Any) -> ImageContext:
    """What the criteria know beyond the bytes: tags, supplier attestations, signatures.
    Zoll's own attestations are left out, so a re-evaluation cannot pass on Zoll's word."""
    image = await manifest_rows.image(svc.registry.pool, repo, Digest.parse(digest))
    tags = tuple(image["tags"]) if image is not None else ()
    kinds: set[str] = set()
    reader = RegistryReader(svc.registry, repo)
    for desc in await reader.referrers(Digest.parse(digest)):
        if ZOLL_KEYID_ANNOTATION in desc.annotations:
            continue
        if desc.artifact_type:
            kinds.add(desc.artifact_type)
        predicate = desc.annotations.get("dev.sigstore.bundle.predicateType")
        if predicate:
            kinds.add(predicate)
    documents = [row["verification"]] if row["verification"] else []
    inherited = documents[0].get("inherited_from") if documents else None
    if inherited:  # attestations about the signed index cover its platform images
        parent = await status.get(svc.registry.pool, repo, inherited)
        if parent is not None and parent["verification"]:
            documents.append(parent["verification"])
    for document in documents:
        result = VerificationResult.from_json(document)
        kinds.update(e.predicate_type for e in result.evidence if e.verified and e.predicate_type)
    return ImageContext(
        repository=repo,
        tags=tags,
        attestation_types=tuple(sorted(kinds)),
        signature_verified=row["verification_passed"],
    )


async def _scan(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    pool = svc.registry.pool
    rule = svc.config.namespace(repo)
    if row["kind"] == "chart":
        from registry.pipeline.charts import scan_chart

        outcome, detail = await scan_chart(svc, repo, digest, row)
        await enqueue(svc, "attest", repo, digest)
        return outcome, detail
    if row["kind"] == "index":
        children = [
            await status.get(pool, repo, c) for c in await status.children(pool, repo, digest)
        ]
        pending = [c["digest"] for c in children if c is not None and c["hardening_passed"] is None]
        if pending:
            raise RetryLater(f"children not scanned yet: {', '.join(pending)}", delay=2)
        results = {c["digest"]: c["hardening_passed"] for c in children if c is not None}
        passed = all(results.values())
        await status.update(
            pool, repo, digest, hardening={"children": results}, hardening_passed=passed
        )
        await enqueue(svc, "attest", repo, digest)
        return ("passed" if passed else "failed"), {"children": results}
    reader = RegistryReader(svc.registry, repo)
    pusher = await workload.pusher_of(pool, repo, digest)
    async with svc.workload.analysis(pusher, digest) as spent:
        analysis = await analyze_image(
            reader,
            Digest.parse(digest),
            workload.analysis_limits(svc.config.pipeline),
            cache=svc.layers,
        )
        spent.append((analysis.seconds, analysis.uncompressed_size))
    data = await svc.vulns.fingerprint()
    vulns = await svc.vulns.match(analysis.packages) if data.records else None
    context = await _context(svc, repo, digest, row)
    report = evaluate(analysis, context, svc.catalog(rule), vulns)
    decision = decide(report, svc.admission_rule(rule))
    sbom = build_sbom(analysis, name=repo)
    suppliers = await supplier_sboms.collect(reader, Digest.parse(digest), sbom)
    await status.update(
        pool,
        repo,
        digest,
        hardening=report.to_json(),
        hardening_passed=decision.allowed,
        sbom=sbom,
        supplier_sboms=suppliers,
        vulnerabilities=None if vulns is None else [v.to_json() for v in vulns],
    )
    await status.index_terms(
        pool,
        repo,
        digest,
        [p.name for p in analysis.packages],
        [i for v in vulns or () for i in (v.id, *v.aliases)],
    )
    rebuilds = rule.rebuild != "off" and not (row["origin"] or {}).get("rebuilt_from")
    await enqueue(svc, "rebuild" if rebuilds else "attest", repo, digest)
    return ("passed" if decision.allowed else "failed"), {
        "reason": decision.reason,
        "blocking": [r.id for r in decision.blocking],
        "packages": len(analysis.packages),
        "supplier_sboms": len(suppliers),
        "vulnerabilities": None if vulns is None else len(vulns),
        "warnings": [NOT_CHECKED] if vulns is None else [],
    }


async def _vsa(
    svc: PipelineServices, repo: str, digest: Digest, row: Any, now: datetime, passed: bool
) -> dict[str, Any]:
    """Zoll's verdict: PASSED exactly when the image is admitted under this node's whole
    policy (trust policy, hardening, rebuild rules), FAILED otherwise."""
    result = VerificationResult.from_json(row["verification"]) if row["verification"] else None
    levels = ["SLSA_BUILD_LEVEL_0"]
    if result is not None and row["verification_passed"] and passed:
        slsa = [r for r in result.requirements if r.id == "slsa" and r.level is not None]
        if slsa:
            levels = [f"SLSA_BUILD_LEVEL_{slsa[0].level}"]
    return vsa(
        image=f"{repo}",
        digest=digest,
        verifier=svc.verifier,
        time_verified=now,
        policy=vsa_parts.policy_ref(svc, result),
        result="PASSED" if passed else "FAILED",
        verified_levels=levels,
        input_attestations=await vsa_parts.input_attestations(svc, repo, row),
        resource_uri=vsa_parts.resource_uri(svc, repo, digest),
    )


def _hardening(
    svc: PipelineServices, repo: str, digest: Digest, report: HardeningReport, now: datetime
) -> dict[str, Any]:
    rule = svc.config.namespace(repo)
    catalog = svc.catalog(rule)
    statuses = {"pass": "passed", "fail": "failed", "not_applicable": "not_applicable"}
    outcomes = [
        CriterionOutcome(
            r.id,
            "waived" if r.status == "fail" and r.id in rule.waive else statuses[r.status],  # type: ignore[arg-type]
            r.title,
            r.severity,  # type: ignore[arg-type]
            "; ".join(r.evidence[:3]) or None,
        )
        for r in report.results
    ]
    required = sorted(
        r.id
        for r in report.results
        if severity_rank(r.severity) <= severity_rank(rule.fail_on) and r.id not in rule.waive
    )
    return hardening_result(
        image=repo,
        digest=digest,
        evaluator=svc.verifier,
        time_evaluated=now,
        catalog=ResourceRef(
            f"zoll:catalog/{catalog.name}", {"sha256": catalog.digest.split(":", 1)[1]}
        ),
        catalog_version=catalog.version,
        criteria=outcomes,
        required=required or None,
    )


async def _attach(
    svc: PipelineServices,
    repo: str,
    digest: Digest,
    logged: Sequence[LoggedAttestation],
    *,
    witnessed: bool = False,
) -> list[int]:
    """Attach signed and logged statements to the image both ways: one OCI referrer each
    (annotated with a C2SP tlog proof of its log entry), and one cosign `.att` manifest
    holding this key's latest statement of each type besides what others attached (built
    in memory, written once). With `witnessed`, the proofs lead to a checkpoint the
    witnesses have cosigned (waiting for them briefly). The blobs go in one batch, then
    all manifests in one transaction. Returns the log indexes."""
    if not logged:
        return []
    image = await manifest_rows.image(svc.registry.pool, repo, digest)
    if image is None:  # deleted while it was being signed: what was logged stays logged
        raise Cancelled(DELETED)
    subject_desc = Descriptor(image["media_type"], digest, int(image["size"]))
    try:
        existing: bytes | None = (
            await RegistryReader(svc.registry, repo).get_manifest(cosign_tag(digest))
        ).raw
    except ContentNotFound:
        existing = None
    proofs = await _proofs(svc, [item.entry.index for item in logged], witnessed)
    built = []
    for item in logged:
        artifacts = attestation_artifacts(
            item.attestation.envelope,
            subject_desc,
            svc.keyring.signer.public,
            existing_att=existing,
            log_entry=item.entry,
            proof=proofs.get(item.entry.index),
            replace=True,
        )
        built.append(artifacts)
        existing = artifacts.cosign.raw
    pushes = [a.referrer for a in built] + [built[-1].cosign]
    manifests = [(p, parse_manifest(p.raw, p.media_type)) for p in pushes]
    wanted = {d.digest for _, m in manifests for d in m.blob_references()}
    blobs = {
        b.descriptor.digest: b.data
        for a in built
        for push in (a.referrer, a.cosign)
        for b in push.blobs
        if b.descriptor.digest in wanted
    }
    await store_blobs(svc.registry, repo, list(blobs.values()))
    await store_manifests(
        svc.registry,
        repo,
        [(manifest, [push.tag] if push.tag else []) for push, manifest in manifests],
        external=False,
    )
    return [item.entry.index for item in logged]


async def _proofs(svc: PipelineServices, indexes: list[int], witnessed: bool) -> dict[int, str]:
    """A tlog proof (text) for each log index, all to one checkpoint covering them."""
    federation = svc.federation
    needed = max(indexes) + 1
    if federation is not None and witnessed:
        checkpoint = await federation.cosigning.witnessed(
            needed, await federation.peers(), svc.config.federation.witness_timeout
        )
    elif federation is not None:
        checkpoint = await federation.cosigning.latest()
    else:
        checkpoint = await svc.log.checkpoint()
    size = checkpoint.checkpoint.size
    if size < needed:  # appended meanwhile by another process: sign the newer head
        checkpoint = await svc.log.checkpoint()
        size = checkpoint.checkpoint.size
    out = {}
    for index in indexes:
        proof = await svc.log.inclusion_proof(index, size)
        out[index] = TlogProof(index, proof.hashes, checkpoint).to_text()
    return out


async def _rebuild(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    from registry.pipeline.rebuilds import run_rebuild  # buildah-driven; loaded when used

    outcome, detail = await run_rebuild(svc, repo, digest, row)
    await enqueue(svc, "attest", repo, digest)
    return outcome, detail


async def _attest(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    now = datetime.now(UTC)
    subject_digest = Digest.parse(digest)
    statements: dict[str, dict[str, Any]] = {}
    if row["kind"] in ("image", "chart") and row["hardening"]:
        report = HardeningReport.from_json(row["hardening"])
        statements["hardening"] = _hardening(svc, repo, subject_digest, report, now)
    if row["sbom"]:
        statements["sbom"] = statement([subject(repo, subject_digest)], CYCLONEDX_BOM, row["sbom"])
    if row["rebuild"] and row["rebuild"].get("statement"):
        statements["rebuild"] = row["rebuild"]["statement"]
    for name, new in list(statements.items()):
        if await _already_said(svc, repo, subject_digest, new):
            del statements[name]
    # Signed, recorded and logged together: one statement, one log commit.
    logged = await svc.ledger.sign_and_log_many(
        list(statements.values()), svc.keyring.signer, subject=subject_digest, repository=repo
    )
    # A rebuild statement is a vote in `says: reproduced` quorums: like the VSA, its proof
    # leads to a checkpoint the witnesses have cosigned.
    witnessed = "rebuild" in statements
    attached = await _attach(svc, repo, subject_digest, logged, witnessed=witnessed)
    indexes = dict(zip(statements, attached, strict=True))
    await enqueue(svc, "admit", repo, digest)
    return "signed", {"log_indexes": indexes}


_TIME_FIELDS = frozenset({"timeEvaluated", "timeVerified", "timeStarted", "timeFinished"})


def _timeless(predicate: Any) -> Any:
    if isinstance(predicate, dict):
        return {k: v for k, v in predicate.items() if k not in _TIME_FIELDS}
    return predicate


async def _already_said(
    svc: PipelineServices, repo: str, digest: Digest, new: dict[str, Any]
) -> bool:
    """Whether this key's latest statement of the same type says the same (but for when):
    a re-evaluation that changes nothing adds nothing to the log or the image."""
    stored = await svc.ledger.latest(
        digest, new["predicateType"], repo, svc.keyring.signer.public.keyid
    )
    if stored is None:
        return False
    old = envelope_statement(stored.envelope)
    return bool(_timeless(old.get("predicate")) == _timeless(new.get("predicate")))


def _self_in_quorum(svc: PipelineServices, repo: str) -> QuorumRequirement | None:
    """The repository's quorum, if this node is one of its nodes (its own verdict counts,
    and is only known at admission)."""
    policy = svc.trust_policies.for_repository(repo) if svc.trust_policies else None
    if policy is None or policy.quorum is None or svc.federation is None:
        return None
    return policy.quorum if svc.federation.identity.name in policy.quorum.nodes else None


def _quorum_reasons(
    svc: PipelineServices, repo: str, row: Any, *, others_passed: bool
) -> list[str]:
    """The quorum counted with this node's own word: for `passed`, yes when everything
    else passed; for `reproduced`, yes when its own rebuild reproduced the image."""
    result = VerificationResult.from_json(row["verification"])
    found = [r for r in result.requirements if r.id == "quorum"]
    if not found:
        return []
    req = found[0]
    quorum = _self_in_quorum(svc, repo)
    if quorum is None:
        if req.passed:
            return []
        why = "; ".join(p.message for p in req.problems[-1:])
        return [f"verification requirement quorum failed ({why})"]
    yes = set(req.nodes)
    if quorum.says == "reproduced":
        own = (row["rebuild"] or {}).get("result", {}).get("outcome") == "reproduced"
    else:
        own = others_passed
    if own and svc.federation is not None:
        yes.add(svc.federation.identity.name)
    if len(yes) >= quorum.k:
        return []
    said = ", ".join(sorted(yes)) or "none"
    return [f"quorum not met: {len(yes)} of {quorum.k} needed ({said} say {quorum.says})"]


async def _publish_verdict(
    svc: PipelineServices, repo: str, digest: str, row: Any, passed: bool
) -> int | None:
    """Sign, log and attach a VSA when this node's verdict on the image is new: none
    before, another result (a later FAILED revokes an earlier PASSED, for followers and
    for verifiers of the image's attachments alike), or another trust policy. Returns
    its log index, or None when the last VSA still says the same."""
    subject_digest = Digest.parse(digest)
    wanted = "PASSED" if passed else "FAILED"
    mine = await svc.ledger.latest(subject_digest, VSA_V1, repo, svc.keyring.signer.public.keyid)
    if mine is not None:
        last = envelope_statement(mine.envelope)["predicate"]
        policy_digest = (last.get("policy") or {}).get("digest", {}).get("sha256", "none")
        if last.get("verificationResult") == wanted and policy_digest == svc.trust_policy_sha256:
            return None
    statement = await _vsa(svc, repo, subject_digest, row, datetime.now(UTC), passed)
    logged = await svc.ledger.sign_and_log_many(
        [statement], svc.keyring.signer, subject=subject_digest, repository=repo
    )
    [index] = await _attach(svc, repo, subject_digest, logged, witnessed=True)
    return index


async def _admit(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    pool = svc.registry.pool
    rule = svc.config.namespace(repo)
    reasons: list[str] = []
    if rule.require_verification:
        if row["verification_passed"] is None:
            reasons.append("no trust policy verified this image")
        elif not row["verification_passed"]:
            result = VerificationResult.from_json(row["verification"])
            for req in result.requirements:
                if not req.passed and req.id != "quorum":
                    why = "; ".join(f"{p.reason.value}: {p.message}" for p in req.problems[:3])
                    reasons.append(f"verification requirement {req.id} failed ({why})")
    if row["kind"] == "index":
        children = [
            await status.get(pool, repo, c) for c in await status.children(pool, repo, digest)
        ]
        if any(
            c is not None and c["state"] == "quarantined" and c["hardening_passed"] is None
            for c in children
        ):
            raise RetryLater("children still in the pipeline", delay=2)
        for child in children:
            if child is not None and child["state"] != "admitted":
                reasons.append(f"platform image {child['digest']} is not admitted")
    if rule.rebuild == "require" and row["kind"] == "image":
        outcome = (row["rebuild"] or {}).get("result", {}).get("outcome")
        if outcome != "reproduced":
            reasons.append(f"not reproducible from source: rebuild {outcome or 'not run'}")
    judged = row["kind"] in ("image", "chart")
    if judged and rule.vuln_max_age_days is not None:
        stale = (await vuln_data(svc.vulns)).problem(rule.vuln_max_age_days)
        reasons.extend([stale] if stale else [])
    if judged and not row["hardening"]:
        reasons.append(f"{row['kind']} has not been checked against the hardening criteria")
    elif judged:
        decision = decide(HardeningReport.from_json(row["hardening"]), svc.admission_rule(rule))
        reasons.extend(
            f"hardening criterion {r.id} ({r.severity}) failed: {r.finding()}"
            for r in decision.blocking
        )
    if row["kind"] == "chart":
        from registry.pipeline.charts import closure_reasons

        reasons.extend(await closure_reasons(svc, repo, digest))
    if rule.require_verification and row["verification"]:
        reasons.extend(_quorum_reasons(svc, repo, row, others_passed=not reasons))
    state = "admitted" if not reasons else "quarantined"
    fingerprint = await svc.fingerprint(rule, repo)
    image = await manifest_rows.image(pool, repo, Digest.parse(digest))
    [logged] = await svc.log.append(
        [
            admission_record(
                subject_digest=digest,
                repository=repo,
                decision="admitted" if state == "admitted" else "denied",
                reasons=reasons,
                decided_at=datetime.now(UTC),
                policy=fingerprint,
                tags=[t for t in (image["tags"] if image else []) if not t.startswith("sha256-")],
            )
        ]
    )
    verdict = await _publish_verdict(svc, repo, digest, row, state == "admitted")
    if svc.federation is not None:  # followers learn of it from the tiles: publish soon
        await wake(pool, "publish")
    await status.update(pool, repo, digest, state=state, reasons=reasons, fingerprint=fingerprint)
    for parent in await status.parents(pool, repo, digest):
        await enqueue(svc, "admit", repo, parent)
    if row["kind"] != "chart" and row["state"] != state:
        from registry.pipeline.charts import charts_deploying

        for chart_repo, chart in await charts_deploying(pool, repo, digest, row["origin"]):
            await enqueue(svc, "admit", chart_repo, chart, delay=0.5)
    detail: dict[str, Any] = {"reasons": reasons, "log_index": logged.index}
    if verdict is not None:
        detail["vsa_log_index"] = verdict
    rebuilt_from = (row["origin"] or {}).get("rebuilt_from")
    if state == "admitted" and rebuilt_from and rule.rebuild == "prefer":
        from registry.pipeline.rebuilds import prefer_sovereign_copy

        detail["tags_moved"] = await prefer_sovereign_copy(svc, repo, digest, rebuilt_from)
    return state, detail

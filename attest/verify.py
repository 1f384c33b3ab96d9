"""The entry point: does an image's provenance hold under a trust policy?

    result = await verify_image(reader, digest, policy, TrustMaterial.public_good())

finds every signature and attestation attached to `digest` (both cosign layouts),
verifies each one, then evaluates the policy's requirements against the verified
evidence. The same inputs always give the same `VerificationResult`, offline.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from attest.bundle import BundleOutcome, verify_bundle
from attest.cosign import Attached, Layer, discover, read_layers
from attest.evidence import Checked, check_layer
from attest.identity import Signers
from attest.intoto import Statement
from attest.intoto_layout import verify_layout
from attest.results import (
    Evidence,
    Problem,
    Reason,
    RequirementResult,
    Signer,
    VerificationFailure,
    VerificationResult,
)
from attest.slsa import PROVENANCE_TYPES, evaluate, parse_provenance
from attest.statement_rules import Found, attestation_requirement, quorum_requirement
from attest.trust_policy import InTotoRequirement, TrustPolicy
from attest.trustroot import TrustMaterial
from registry.oci.digest import Digest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

__all__ = [
    "Attached",
    "BundleOutcome",
    "discover",
    "trusted_statements",
    "verify_artifact_bundle",
    "verify_image",
]

VERIFIED_KINDS = ("signature", "attestation", "bundle")


def _allowed(signer: Signer | None, names: tuple[str, ...]) -> bool:
    return signer is not None and (not names or bool(set(signer.matched) & set(names)))


def _signer_problem(ev: Evidence, names: tuple[str, ...]) -> Problem:
    signer = ev.signer
    who = (signer.identity or signer.keyid) if signer else "nobody"
    reason = Reason.UNTRUSTED_KEY if signer and signer.kind == "key" else Reason.IDENTITY_MISMATCH
    return Problem(ev.id, reason, f"signed by {who}, who is not one of {', '.join(names)}")


def _requirement(
    rid: str,
    description: str,
    candidates: Iterable[Checked],
    names: tuple[str, ...],
    missing: str,
) -> RequirementResult:
    satisfied: list[str] = []
    problems: list[Problem] = []
    seen = False
    for item in candidates:
        seen = True
        ev = item.evidence
        if not ev.verified:
            assert ev.reason is not None
            problems.append(Problem(ev.id, ev.reason, ev.message))
        elif not _allowed(ev.signer, names):
            problems.append(_signer_problem(ev, names))
        else:
            satisfied.append(ev.id)
    if not seen:
        problems.append(Problem(None, Reason.NO_EVIDENCE, missing))
    passed = bool(satisfied)
    return RequirementResult(
        rid, description, passed, tuple(satisfied), () if passed else tuple(problems)
    )


def _signature_requirement(
    policy: TrustPolicy, checked: list[Checked], subject: Digest
) -> RequirementResult:
    assert policy.signature is not None
    names = policy.signature.signers
    candidates = [c for c in checked if c.evidence.kind == "signature"]
    who = ", ".join(names) if names else "any policy signer"
    return _requirement(
        "signature",
        f"image signed by {who}",
        candidates,
        names,
        f"no signature attached to {subject} (cosign tag or referrers)",
    )


def _predicate_of(item: Checked) -> str | None:
    if item.statement is not None:
        return item.statement.predicate_type
    return item.evidence.predicate_type


def _attestation_candidates(checked: list[Checked], types: Iterable[str]) -> list[Checked]:
    wanted = set(types)
    out = []
    for item in checked:
        if item.evidence.kind != "attestation":
            continue
        predicate = _predicate_of(item)
        # An attestation that failed before its statement was read might be the one.
        if predicate in wanted or (predicate is None and not item.evidence.verified):
            out.append(item)
    return out


def _slsa_requirement(policy: TrustPolicy, checked: list[Checked]) -> RequirementResult:
    assert policy.slsa is not None
    req = policy.slsa
    satisfied: list[str] = []
    problems: list[Problem] = []
    candidates = _attestation_candidates(checked, PROVENANCE_TYPES)
    best = 0
    for item in candidates:
        ev = item.evidence
        if not ev.verified or item.statement is None:
            problems.append(Problem(ev.id, ev.reason or Reason.VERIFICATION_FAILED, ev.message))
            continue
        if not _allowed(ev.signer, req.signers):
            problems.append(_signer_problem(ev, req.signers))
            continue
        try:
            level = evaluate(parse_provenance(item.statement), req.policy)
        except VerificationFailure as exc:
            problems.append(Problem(ev.id, exc.reason, exc.message))
            continue
        except Exception as exc:  # fail closed: a parser bug never aborts the verification
            message = f"provenance cannot be read ({type(exc).__name__}: {exc})"
            problems.append(Problem(ev.id, Reason.PAYLOAD_INVALID, message))
            continue
        best = max(best, level)
        satisfied.append(ev.id)
    if not candidates:
        problems.append(Problem(None, Reason.NO_EVIDENCE, "no SLSA provenance attestation found"))
    passed = bool(satisfied)
    description = f"SLSA provenance from a trusted builder, level >= {req.policy.min_level}"
    if passed:
        description += f" (reached {best})"
    return RequirementResult(
        "slsa",
        description,
        passed,
        tuple(satisfied),
        () if passed else tuple(problems),
        best if passed else None,
    )


def _in_toto_evidence(req: InTotoRequirement, subject: Digest) -> Evidence:
    products = dict(req.products)
    if req.image_product:
        products[req.image_product] = subject.encoded
    try:
        outcome = verify_layout(req.layout, list(req.layout_keys), req.links, products)
    except VerificationFailure as exc:
        return Evidence(
            "in-toto:layout", "attestation", "in-toto-layout", False, exc.reason, exc.message
        )
    return Evidence(
        "in-toto:layout",
        "attestation",
        "in-toto-layout",
        True,
        signer=Signer(kind="key", keyid=outcome.layout_keyids[0], matched=outcome.layout_keyids),
        details={
            "steps": ",".join(outcome.steps),
            "layout": hashlib.sha256(req.layout).hexdigest(),
        },
    )


def _evaluate(
    policy: TrustPolicy, checked: list[Checked], subject: Digest, found: list[Found] | None = None
) -> tuple[list[RequirementResult], list[Evidence]]:
    found = found if found is not None else [Found(c, {}, b"") for c in checked]
    requirements: list[RequirementResult] = []
    extra: list[Evidence] = []
    if policy.signature is not None:
        requirements.append(_signature_requirement(policy, checked, subject))
    now = datetime.now(UTC)
    for att in policy.attestations:
        who = ", ".join(att.signers) if att.signers else "any policy signer"
        signed = _requirement(
            f"attestation:{att.predicate_type}",
            f"{att.predicate_type} attestation signed by {who}",
            _attestation_candidates(checked, [att.predicate_type]),
            att.signers,
            f"no {att.predicate_type} attestation found",
        )
        # Signed by whom it should be; then only each signer's latest statement counts,
        # and it must say what the policy asks.
        requirements.append(
            attestation_requirement(policy, att, found, now) if signed.passed else signed
        )
    if policy.quorum is not None:
        requirements.append(quorum_requirement(policy, policy.quorum, found, now))
    if policy.slsa is not None:
        requirements.append(_slsa_requirement(policy, checked))
    if policy.in_toto is not None:
        ev = _in_toto_evidence(policy.in_toto, subject)
        extra.append(ev)
        requirements.append(
            RequirementResult(
                "in-toto",
                "in-toto supply chain layout and links verify",
                ev.verified,
                (ev.id,) if ev.verified else (),
                ()
                if ev.verified
                else (Problem(ev.id, ev.reason or Reason.VERIFICATION_FAILED, ev.message),),
            )
        )
    return requirements, extra


def _check_all(
    layers: list[Layer], subject: Digest, signers: Signers, trust: TrustMaterial
) -> list[Checked]:
    return [check_layer(layer, subject, signers, trust) for layer in layers]


async def _checked_layers(
    reader: ContentReader, digest: Digest, signers: Signers, trust: TrustMaterial
) -> tuple[list[Layer], list[Checked]]:
    """Every signature and attestation layer attached to `digest`, each verified."""
    layers = []
    for item in await discover(reader, digest):
        if item.kind in VERIFIED_KINDS:
            layers.extend(await read_layers(reader, item))
    return layers, await asyncio.to_thread(_check_all, layers, digest, signers, trust)


async def trusted_statements(
    reader: ContentReader,
    digest: Digest,
    policy: TrustPolicy,
    trust: TrustMaterial,
    predicate_types: Iterable[str],
) -> list[Statement]:
    """The statements of these types about `digest` that a signer the policy knows has
    verifiably signed (e.g. the supplier's SLSA provenance a rebuild takes its recipe
    from). Nothing else about the policy is evaluated."""
    wanted = set(predicate_types)
    _, checked = await _checked_layers(reader, digest, policy.signers, trust)
    return [
        c.statement
        for c in checked
        if c.evidence.verified and c.statement is not None and c.statement.predicate_type in wanted
    ]


async def verify_image(
    reader: ContentReader, digest: Digest, policy: TrustPolicy, trust: TrustMaterial
) -> VerificationResult:
    """Verify everything attached to `digest` and evaluate `policy` on it."""
    errors: list[Problem] = []
    try:
        await reader.get_manifest(str(digest))
    except (ContentNotFound, ContentCorrupt) as exc:
        errors.append(Problem(None, Reason.CONTENT_MISSING, f"image {digest}: {exc}"))
    layers, checked = await _checked_layers(reader, digest, policy.signers, trust)
    found = [
        Found(
            c,
            {
                **layer.attached.annotations,
                **(layer.descriptor.annotations if layer.descriptor is not None else {}),
            },
            layer.content,
        )
        for layer, c in zip(layers, checked, strict=True)
    ]
    requirements, extra = await asyncio.to_thread(_evaluate, policy, checked, digest, found)
    evidence = tuple(c.evidence for c in checked) + tuple(extra)
    passed = not errors and all(r.passed for r in requirements)
    return VerificationResult(
        subject=str(digest),
        policy=policy.label,
        passed=passed,
        requirements=tuple(requirements),
        evidence=evidence,
        errors=tuple(errors),
    )


def verify_artifact_bundle(
    artifact: bytes, bundle: bytes, signers: Signers, trust: TrustMaterial
) -> Evidence:
    """Verify one bundle over one artifact (`zoll verify bundle`), as `Evidence`.

    For a DSSE bundle the statement's subject must be the artifact's SHA-256.
    """
    try:
        outcome = verify_bundle(bundle, artifact=artifact, signers=signers, trust=trust)
        predicate: str | None = None
        if outcome.payload is not None:
            statement = Statement.parse(outcome.payload, outcome.payload_type)
            statement.require_subject(Digest.of(artifact))
            predicate = statement.predicate_type
    except VerificationFailure as exc:
        return Evidence("bundle", "signature", "sigstore-bundle", False, exc.reason, exc.message)
    return Evidence(
        "bundle",
        "attestation" if predicate else "signature",
        outcome.format,
        True,
        signer=outcome.signer,
        predicate_type=predicate,
        tlog=outcome.tlog,
        details={"tlog_note": outcome.tlog_note} if outcome.tlog_note else {},
    )

"""Requirements on what verified statements *say*: content tests, age, the latest
statement per signer, and k-of-n quorums of Zoll nodes.

Works on the evidence `verify_image` collected from the image's attachments, offline.
A statement's log index counts only when its tlog proof (the `dev.zoll.tlog.proof`
annotation Zoll puts on its referrers) verifies against the signer's pinned log key;
the witnesses a quorum asks for are the cosignatures on that proof's checkpoint by the
*other* listed nodes' witness keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from attest.dsse import Envelope, EnvelopeError
from attest.evidence import Checked
from attest.results import Problem, Reason, RequirementResult
from attest.tlog.entries import attestation_record
from attest.tlog.tlogproof import TlogProof, TlogProofError, verify_tlog_proof
from attest.trust_policy import AttestationRequirement, QuorumRequirement, TrustPolicy
from attest.verdicts import (
    Candidate,
    content_problems,
    latest_per_signer,
    says,
    too_old,
    verdict_of,
)

PROOF_ANNOTATION = "dev.zoll.tlog.proof"
REBUILD_PREDICATE = "https://zoll.dev/attestations/rebuild/v1"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"


@dataclass(frozen=True)
class Found:
    """A verified attestation as it was attached: its evidence and its attachment's
    annotations and content (to rebuild the log entry a proof is about)."""

    checked: Checked
    annotations: Mapping[str, str]
    content: bytes


@dataclass(frozen=True)
class Stated:
    found: Found
    signer: str
    log_index: int | None
    witnesses: tuple[str, ...]
    proof_problem: str | None


def _envelope(content: bytes) -> Envelope | None:
    """The DSSE envelope of a cosign `.att` layer or of a sigstore bundle."""
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(document, dict) and isinstance(document.get("dsseEnvelope"), dict):
        document = document["dsseEnvelope"]
    try:
        return Envelope.from_json(document)
    except EnvelopeError:
        return None


def _statements(
    policy: TrustPolicy, found: Iterable[Found], predicate_type: str, names: Sequence[str]
) -> list[Stated]:
    """Verified statements of `predicate_type` by allowed signers, one per statement (a
    statement attached both as referrer and in `.att` keeps its proven index)."""
    by_payload: dict[str, Stated] = {}
    for item in found:
        ev, statement = item.checked.evidence, item.checked.statement
        if not ev.verified or statement is None or statement.predicate_type != predicate_type:
            continue
        matched = [n for n in (ev.signer.matched if ev.signer else ()) if not names or n in names]
        if not matched:
            continue
        signer = matched[0]
        index, witnesses, problem = _proof(policy, signer, item)
        envelope = _envelope(item.content)
        key = hashlib.sha256(envelope.payload).hexdigest() if envelope else ev.id
        known = by_payload.get(key)
        if known is None or (known.log_index is None and index is not None):
            by_payload[key] = Stated(item, signer, index, witnesses, problem)
    return list(by_payload.values())


def _proof(
    policy: TrustPolicy, signer: str, item: Found
) -> tuple[int | None, tuple[str, ...], str | None]:
    node = policy.nodes.get(signer)
    text = item.annotations.get(PROOF_ANNOTATION)
    if node is None or node.log is None:
        return None, (), None
    if text is None:
        return None, (), "no tlog proof attached"
    envelope = _envelope(item.content)
    if envelope is None:
        return None, (), "the attached statement is not a DSSE envelope"
    others = [
        keys.witness
        for name, keys in policy.nodes.items()
        if name != signer and keys.witness is not None
    ]
    try:
        proof = TlogProof.parse(text)
        verified = verify_tlog_proof(
            proof, attestation_record(envelope).leaf_hash(), [node.log], others
        )
    except (TlogProofError, ValueError) as exc:
        return None, (), f"tlog proof does not verify: {exc}"
    return verified.index, tuple(c.cosigner.name for c in verified.witnesses), None


def _candidates(stated: list[Stated]) -> list[Candidate]:
    out = []
    for s in stated:
        statement = s.found.checked.statement
        assert statement is not None
        verdict = verdict_of(
            {
                "predicateType": statement.predicate_type,
                "predicate": statement.predicate,
                "subject": [],
            }
        )
        out.append(Candidate(s.signer, s, verdict.time if verdict else None, s.log_index))
    return out


def attestation_requirement(
    policy: TrustPolicy, req: AttestationRequirement, found: list[Found], now: datetime
) -> RequirementResult:
    """Passes when some allowed signer's *latest* statement of the type meets `where`
    and `max_age`; an earlier statement of the same signer never counts."""
    who = ", ".join(req.signers) if req.signers else "any policy signer"
    description = f"{req.predicate_type} attestation signed by {who}"
    if req.where:
        description += " saying " + ", ".join(f"{k}={v}" for k, v in req.where.items())
    stated = _statements(policy, found, req.predicate_type, req.signers)
    satisfied: list[str] = []
    problems: list[Problem] = []
    for signer, latest in sorted(latest_per_signer(_candidates(stated)).items()):
        item: Stated = latest.item
        ev = item.found.checked.evidence
        statement = item.found.checked.statement
        assert statement is not None
        wrong = content_problems(statement.predicate, req.where)
        old = too_old(latest.time, req.max_age, now)
        if wrong:
            problems.append(
                Problem(ev.id, Reason.CONTENT_MISMATCH, f"{signer}'s latest: " + "; ".join(wrong))
            )
        elif old:
            problems.append(Problem(ev.id, Reason.STATEMENT_TOO_OLD, f"{signer}'s latest: {old}"))
        else:
            satisfied.append(ev.id)
    if not stated:
        problems.append(
            Problem(None, Reason.NO_EVIDENCE, f"no {req.predicate_type} attestation found")
        )
    passed = bool(satisfied)
    return RequirementResult(
        f"attestation:{req.predicate_type}",
        description,
        passed,
        tuple(satisfied),
        () if passed else tuple(problems),
    )


def quorum_requirement(
    policy: TrustPolicy, req: QuorumRequirement, found: list[Found], now: datetime
) -> RequirementResult:
    """Counts the listed nodes whose latest statement says yes (VSA PASSED, or rebuild
    reproduced), is recent enough, and is witnessed by enough of the other nodes."""
    predicate = VSA_PREDICATE if req.says == "passed" else REBUILD_PREDICATE
    field = "verificationResult" if req.says == "passed" else "outcome"
    stated = _statements(policy, found, predicate, req.nodes)
    yes: list[str] = []
    satisfied: list[str] = []
    problems: list[Problem] = []
    latest = latest_per_signer(_candidates(stated))
    for node in req.nodes:
        candidate = latest.get(node)
        if candidate is None:
            problems.append(Problem(None, Reason.NO_EVIDENCE, f"{node} said nothing"))
            continue
        item: Stated = candidate.item
        ev = item.found.checked.evidence
        statement = item.found.checked.statement
        assert statement is not None
        value = statement.predicate.get(field)
        old = too_old(candidate.time, req.max_age, now)
        if value not in says(req.says):
            problems.append(Problem(ev.id, Reason.CONTENT_MISMATCH, f"{node} says {value}"))
        elif old:
            problems.append(Problem(ev.id, Reason.STATEMENT_TOO_OLD, f"{node}: {old}"))
        elif req.witnesses and len(item.witnesses) < req.witnesses:
            why = item.proof_problem or (
                f"cosigned by {len(item.witnesses)} witness(es), {req.witnesses} needed"
            )
            problems.append(Problem(ev.id, Reason.NOT_WITNESSED, f"{node}: {why}"))
        else:
            yes.append(node)
            satisfied.append(ev.id)
    passed = len(yes) >= req.k
    description = f"at least {req.k} of {', '.join(req.nodes)} say {req.says}"
    if req.witnesses:
        description += f", witnessed by {req.witnesses}"
    if not passed:
        problems.append(
            Problem(
                None,
                Reason.QUORUM_NOT_MET,
                f"{len(yes)} of {req.k} needed: {', '.join(yes) or 'none'} said {req.says}",
            )
        )
    return RequirementResult(
        "quorum",
        description,
        passed,
        tuple(satisfied),
        () if passed else tuple(problems),
        nodes=tuple(yes),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)

"""Explicit, JSON-serialisable verification results with stable reason codes.

Verification never answers with a bare exception: every signature or attestation that
was looked at becomes an `Evidence` record (verified, or the `Reason` it was rejected
for), and every policy requirement becomes a `RequirementResult` naming the evidence
that satisfied it or why none did. The registry stores `VerificationResult.to_json()`
as is, so the schema (`SCHEMA`) only ever grows by optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

SCHEMA: Final = "https://zoll.dev/verification-result/v1"


class Reason(StrEnum):
    """Why a piece of evidence or a requirement failed; values are part of the schema."""

    # Input and transport
    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    TOO_DEEP = "too-deep"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    CONTENT_MISSING = "content-missing"
    CONTENT_CORRUPT = "content-corrupt"
    # Sigstore bundles and certificates
    BUNDLE_INVALID = "bundle-invalid"
    CERTIFICATE_INVALID = "certificate-invalid"
    CERTIFICATE_CHAIN_INVALID = "certificate-chain-invalid"
    CERTIFICATE_EXPIRED = "certificate-expired-at-signing"
    SCT_INVALID = "sct-invalid"
    TLOG_MISSING = "tlog-entry-missing"
    TLOG_PROOF_INVALID = "tlog-inclusion-proof-invalid"
    TLOG_PROMISE_INVALID = "tlog-inclusion-promise-invalid"
    TLOG_INCONSISTENT = "tlog-entry-inconsistent"
    TIMESTAMP_INVALID = "timestamp-invalid"
    # Signatures and signers
    SIGNATURE_INVALID = "signature-invalid"
    ARTIFACT_DIGEST_MISMATCH = "artifact-digest-mismatch"
    UNTRUSTED_KEY = "untrusted-key"
    IDENTITY_MISMATCH = "identity-mismatch"
    ISSUER_MISMATCH = "issuer-mismatch"
    CLAIM_MISMATCH = "claim-mismatch"
    NO_SIGNER_CONFIGURED = "no-signer-configured"
    # Payloads
    PAYLOAD_INVALID = "payload-invalid"
    AMBIGUOUS_PAYLOAD = "ambiguous-payload"
    """A signed payload with duplicate or case-variant keys: readers disagree on it."""
    SUBJECT_MISMATCH = "subject-mismatch"
    PREDICATE_TYPE_MISMATCH = "predicate-type-mismatch"
    # SLSA
    BUILDER_NOT_ALLOWED = "builder-not-allowed"
    SOURCE_MISMATCH = "source-mismatch"
    SLSA_LEVEL_TOO_LOW = "slsa-level-too-low"
    # in-toto layouts
    LAYOUT_SIGNATURE_INVALID = "layout-signature-invalid"
    LAYOUT_EXPIRED = "layout-expired"
    LAYOUT_INVALID = "layout-invalid"
    LINK_MISSING = "link-missing"
    LINK_THRESHOLD_NOT_MET = "link-threshold-not-met"
    ARTIFACT_RULE_VIOLATED = "artifact-rule-violated"
    PRODUCT_MISMATCH = "product-mismatch"
    # Requirements
    NO_EVIDENCE = "no-evidence"
    VERIFICATION_FAILED = "verification-failed"
    # Statements' content and federation
    CONTENT_MISMATCH = "statement-content-mismatch"
    STATEMENT_TOO_OLD = "statement-too-old"
    NOT_WITNESSED = "not-witnessed"
    QUORUM_NOT_MET = "quorum-not-met"


class VerificationFailure(Exception):
    """Raised inside the verifiers, always turned into a `Reason` before it leaves `attest`."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Signer:
    """Who produced a verified signature: a configured key, or a keyless identity."""

    kind: str
    """`key` or `keyless`."""
    keyid: str | None = None
    identity: str | None = None
    issuer: str | None = None
    claims: dict[str, str] = field(default_factory=dict)
    matched: tuple[str, ...] = ()
    """Names of the policy signers this signer satisfied."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "matched": list(self.matched)}
        for name in ("keyid", "identity", "issuer"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.claims:
            out["claims"] = dict(sorted(self.claims.items()))
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Signer:
        return cls(
            kind=obj["kind"],
            keyid=obj.get("keyid"),
            identity=obj.get("identity"),
            issuer=obj.get("issuer"),
            claims=dict(obj.get("claims", {})),
            matched=tuple(obj.get("matched", ())),
        )


@dataclass(frozen=True)
class TlogEntry:
    """Where a signature was logged (as far as it could be verified offline)."""

    log_index: int
    integrated_time: int | None = None
    log_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log_index": self.log_index}
        if self.integrated_time is not None:
            out["integrated_time"] = self.integrated_time
        if self.log_id is not None:
            out["log_id"] = self.log_id
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TlogEntry:
        return cls(obj["log_index"], obj.get("integrated_time"), obj.get("log_id"))


@dataclass(frozen=True)
class Evidence:
    """One signature or attestation found for the image and what checking it gave."""

    id: str
    """Stable within a result: `<scheme>:<manifest digest>/<layer index>`."""
    kind: str
    """`signature`, `attestation` or `sbom`."""
    format: str
    """e.g. `cosign-simplesigning`, `cosign-dsse`, `sigstore-bundle-v0.3`, `in-toto-layout`."""
    verified: bool
    reason: Reason | None = None
    message: str = ""
    signer: Signer | None = None
    predicate_type: str | None = None
    tlog: TlogEntry | None = None
    details: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "format": self.format,
            "verified": self.verified,
        }
        if self.reason is not None:
            out["reason"] = self.reason.value
        if self.message:
            out["message"] = self.message
        if self.signer is not None:
            out["signer"] = self.signer.to_json()
        if self.predicate_type is not None:
            out["predicate_type"] = self.predicate_type
        if self.tlog is not None:
            out["tlog"] = self.tlog.to_json()
        if self.details:
            out["details"] = dict(sorted(self.details.items()))
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Evidence:
        return cls(
            id=obj["id"],
            kind=obj["kind"],
            format=obj["format"],
            verified=obj["verified"],
            reason=Reason(obj["reason"]) if "reason" in obj else None,
            message=obj.get("message", ""),
            signer=Signer.from_json(obj["signer"]) if "signer" in obj else None,
            predicate_type=obj.get("predicate_type"),
            tlog=TlogEntry.from_json(obj["tlog"]) if "tlog" in obj else None,
            details=dict(obj.get("details", {})),
        )


@dataclass(frozen=True)
class Problem:
    """Why one piece of evidence did not satisfy one requirement."""

    evidence: str | None
    reason: Reason
    message: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason.value, "message": self.message}
        if self.evidence is not None:
            out["evidence"] = self.evidence
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Problem:
        return cls(obj.get("evidence"), Reason(obj["reason"]), obj["message"])


@dataclass(frozen=True)
class RequirementResult:
    """One requirement of a trust policy: passed, and by which evidence, or why not."""

    id: str
    description: str
    passed: bool
    satisfied_by: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()
    level: int | None = None
    """The SLSA build level reached, for the `slsa` requirement (a VSA states it)."""
    nodes: tuple[str, ...] = ()
    """For a quorum: the nodes whose latest statement says yes."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "passed": self.passed,
            "satisfied_by": list(self.satisfied_by),
            "problems": [p.to_json() for p in self.problems],
        }
        if self.level is not None:
            out["level"] = self.level
        if self.nodes:
            out["nodes"] = list(self.nodes)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RequirementResult:
        return cls(
            id=obj["id"],
            description=obj["description"],
            passed=obj["passed"],
            satisfied_by=tuple(obj.get("satisfied_by", ())),
            problems=tuple(Problem.from_json(p) for p in obj.get("problems", ())),
            level=obj.get("level"),
            nodes=tuple(obj.get("nodes", ())),
        )

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(p.reason for p in self.problems)


class ResultSchemaError(ValueError):
    """A stored result does not follow the schema this version reads."""


@dataclass(frozen=True)
class VerificationResult:
    """The whole answer for one image digest under one trust policy."""

    subject: str
    policy: str
    passed: bool
    requirements: tuple[RequirementResult, ...]
    evidence: tuple[Evidence, ...]
    errors: tuple[Problem, ...] = ()
    """Problems reading attached content that belong to no single requirement."""

    def requirement(self, requirement_id: str) -> RequirementResult:
        for req in self.requirements:
            if req.id == requirement_id:
                return req
        raise KeyError(requirement_id)

    def evidence_by_id(self, evidence_id: str) -> Evidence:
        for ev in self.evidence:
            if ev.id == evidence_id:
                return ev
        raise KeyError(evidence_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "subject": self.subject,
            "policy": self.policy,
            "passed": self.passed,
            "requirements": [r.to_json() for r in self.requirements],
            "evidence": [e.to_json() for e in self.evidence],
            "errors": [p.to_json() for p in self.errors],
        }

    @classmethod
    def from_json(cls, obj: object) -> VerificationResult:
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            raise ResultSchemaError(f"not a verification result of schema {SCHEMA}")
        try:
            return cls(
                subject=obj["subject"],
                policy=obj["policy"],
                passed=obj["passed"],
                requirements=tuple(RequirementResult.from_json(r) for r in obj["requirements"]),
                evidence=tuple(Evidence.from_json(e) for e in obj["evidence"]),
                errors=tuple(Problem.from_json(p) for p in obj.get("errors", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultSchemaError(f"malformed verification result: {exc}") from exc

"""In-toto Statement v1 builders for the predicates Zoll signs.

- SLSA Verification Summary Attestation v1: "its provenance verified".
- Zoll's hardening result v1: "it meets the hardening criteria" (schema in
  docs/schemas/hardening-result-v1.schema.json).
- Zoll's rebuild result v1: "it was rebuilt bit for bit" (schema in
  docs/schemas/rebuild-result-v1.schema.json).

The subject is always the image manifest (or index) digest, so cosign, Kyverno and
policy-controller bind the statement to exactly the image they admit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from attest.signing import STATEMENT_V1, StatementError, check_statement
from registry.oci.digest import Digest

VSA_V1: Final = "https://slsa.dev/verification_summary/v1"
PREDICATE_BASE: Final = "https://zoll.dev/attestations"
HARDENING_V1: Final = f"{PREDICATE_BASE}/hardening/v1"
REBUILD_V1: Final = f"{PREDICATE_BASE}/rebuild/v1"
PREDICATE_TYPES: Final = frozenset({VSA_V1, HARDENING_V1, REBUILD_V1})

Result = Literal["PASSED", "FAILED"]
CriterionStatus = Literal["passed", "failed", "not_applicable", "waived", "error"]
RebuildOutcome = Literal["reproduced", "differs", "failed"]
SLSA_LEVELS: Final = frozenset(
    {f"SLSA_BUILD_LEVEL_{n}" for n in range(4)} | {f"SLSA_SOURCE_LEVEL_{n}" for n in range(1, 5)}
)


def timestamp(when: datetime) -> str:
    """RFC 3339 in UTC with a Z, as in-toto and SLSA expect."""
    if when.tzinfo is None:
        raise StatementError("timestamps must be timezone-aware")
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def digest_set(digest: Digest) -> dict[str, str]:
    return {digest.algorithm: digest.encoded}


def subject(name: str, digest: Digest) -> dict[str, Any]:
    """An in-toto ResourceDescriptor for an image: repository name + manifest digest."""
    if not name:
        raise StatementError("subject name must not be empty")
    return {"name": name, "digest": digest_set(digest)}


def statement(
    subjects: Sequence[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    return check_statement(
        {
            "_type": STATEMENT_V1,
            "subject": list(subjects),
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


@dataclass(frozen=True)
class ResourceRef:
    """A URI with optional digests (policy, input attestation, source)."""

    uri: str
    digest: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri}
        if self.digest:
            out["digest"] = dict(self.digest)
        return out


@dataclass(frozen=True)
class Verifier:
    """Who verified: Zoll's node URI and the versions of the components that decided."""

    id: str
    version: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.version:
            out["version"] = dict(self.version)
        return out


def vsa(
    *,
    image: str,
    digest: Digest,
    verifier: Verifier,
    time_verified: datetime,
    policy: ResourceRef,
    result: Result,
    verified_levels: Sequence[str],
    input_attestations: Sequence[ResourceRef] = (),
    dependency_levels: Mapping[str, int] | None = None,
    resource_uri: str | None = None,
) -> dict[str, Any]:
    """A SLSA VSA v1 statement: Zoll verified `image@digest` against `policy`."""
    if result not in ("PASSED", "FAILED"):
        raise StatementError("verificationResult must be PASSED or FAILED")
    unknown = sorted(set(verified_levels) - SLSA_LEVELS)
    if unknown:
        raise StatementError(f"unknown SLSA levels {unknown}")
    if result == "FAILED" and any(level != "SLSA_BUILD_LEVEL_0" for level in verified_levels):
        raise StatementError("a FAILED verification cannot claim SLSA levels above 0")
    predicate: dict[str, Any] = {
        "verifier": verifier.to_json(),
        "timeVerified": timestamp(time_verified),
        "resourceUri": resource_uri or f"oci://{image}@{digest}",
        "policy": policy.to_json(),
        "inputAttestations": [a.to_json() for a in input_attestations],
        "verificationResult": result,
        "verifiedLevels": list(verified_levels),
        "slsaVersion": "1.0",
    }
    if dependency_levels:
        predicate["dependencyLevels"] = dict(dependency_levels)
    return statement([subject(image, digest)], VSA_V1, predicate)


@dataclass(frozen=True)
class CriterionOutcome:
    """One hardening criterion's result (HC-01 … in the criteria catalogue)."""

    id: str
    status: CriterionStatus
    title: str | None = None
    severity: Literal["critical", "high", "medium", "low", "info"] | None = None
    message: str | None = None
    sources: Sequence[str] = ()
    evidence: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        for key in ("title", "severity", "message"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.sources:
            out["sources"] = list(self.sources)
        if self.evidence is not None:
            out["evidence"] = dict(self.evidence)
        return out


def hardening_result(
    *,
    image: str,
    digest: Digest,
    evaluator: Verifier,
    time_evaluated: datetime,
    catalog: ResourceRef,
    catalog_version: str,
    criteria: Sequence[CriterionOutcome],
    required: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Zoll's hardening result: every criterion's status and the overall verdict.

    The verdict is computed, never passed in: PASSED iff every required criterion
    (all of them when `required` is None) passed, was waived or does not apply.
    """
    if not criteria:
        raise StatementError("a hardening result needs at least one criterion")
    ids = [c.id for c in criteria]
    if len(set(ids)) != len(ids):
        raise StatementError("criterion ids must be unique")
    wanted = set(ids) if required is None else set(required)
    missing = sorted(wanted - set(ids))
    if missing:
        raise StatementError(f"required criteria without a result: {missing}")
    ok = {"passed", "waived", "not_applicable"}
    result: Result = (
        "PASSED" if all(c.status in ok for c in criteria if c.id in wanted) else "FAILED"
    )
    counts = {
        s: sum(1 for c in criteria if c.status == s)
        for s in ("passed", "failed", "not_applicable", "waived", "error")
    }
    predicate = {
        "evaluator": evaluator.to_json(),
        "timeEvaluated": timestamp(time_evaluated),
        "resourceUri": f"oci://{image}@{digest}",
        "catalog": {**catalog.to_json(), "version": catalog_version},
        "result": result,
        "required": sorted(wanted),
        "summary": {
            "passed": counts["passed"],
            "failed": counts["failed"],
            "notApplicable": counts["not_applicable"],
            "waived": counts["waived"],
            "error": counts["error"],
        },
        "criteria": [c.to_json() for c in criteria],
    }
    return statement([subject(image, digest)], HARDENING_V1, predicate)


@dataclass(frozen=True)
class LayerComparison:
    index: int
    original: Digest | None
    rebuilt: Digest | None
    identical: bool
    differences: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "identical": self.identical}
        if self.original is not None:
            out["original"] = str(self.original)
        if self.rebuilt is not None:
            out["rebuilt"] = str(self.rebuilt)
        if self.differences:
            out["differences"] = list(self.differences)
        return out


@dataclass(frozen=True)
class ConfigComparison:
    """The image configs of original and rebuild: a config can differ when no layer does
    (a creation time, a history line), and the statement must say where."""

    original: Digest | None
    rebuilt: Digest | None
    identical: bool
    differences: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identical": self.identical}
        if self.original is not None:
            out["original"] = str(self.original)
        if self.rebuilt is not None:
            out["rebuilt"] = str(self.rebuilt)
        if self.differences:
            out["differences"] = list(self.differences)
        return out


def rebuild_result(
    *,
    image: str,
    digest: Digest,
    rebuilder: Verifier,
    started: datetime,
    finished: datetime,
    source: ResourceRef,
    build_type: str,
    rebuilt_digest: Digest | None,
    layers: Sequence[LayerComparison] = (),
    external_parameters: Mapping[str, Any] | None = None,
    error: str | None = None,
    config: ConfigComparison | None = None,
) -> dict[str, Any]:
    """Zoll's rebuild result: was `image@digest` reproduced from `source`?

    The outcome follows from the digests: `reproduced` only when the rebuilt manifest
    digest equals the original, `failed` when there is no rebuilt image.
    """
    if finished < started:
        raise StatementError("a rebuild cannot finish before it starts")
    outcome: RebuildOutcome
    if rebuilt_digest is None:
        if not error:
            raise StatementError("a failed rebuild needs an error message")
        outcome = "failed"
    else:
        outcome = "reproduced" if rebuilt_digest == digest else "differs"
    predicate: dict[str, Any] = {
        "rebuilder": rebuilder.to_json(),
        "timeStarted": timestamp(started),
        "timeFinished": timestamp(finished),
        "resourceUri": f"oci://{image}@{digest}",
        "source": source.to_json(),
        "buildType": build_type,
        "outcome": outcome,
        "original": {"digest": digest_set(digest)},
        "layers": [layer.to_json() for layer in layers],
    }
    if rebuilt_digest is not None:
        predicate["rebuilt"] = {"digest": digest_set(rebuilt_digest)}
    if external_parameters:
        predicate["externalParameters"] = dict(external_parameters)
    if error:
        predicate["error"] = error
    if config is not None:
        predicate["config"] = config.to_json()
    return statement([subject(image, digest)], REBUILD_V1, predicate)

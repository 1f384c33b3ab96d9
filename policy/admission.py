"""The admission decision the registry takes per namespace: enforce, warn or off.

Pure: a report (or None when the image has not been checked) and the namespace's rule
go in; allow/deny and the criteria to name in the OCI error come out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from policy.catalog import SEVERITIES, CatalogError
from policy.report import CriterionResult, HardeningReport
from registry.oci.errors import ErrorCode, RegistryError

Mode = Literal["enforce", "warn", "off"]


@dataclass(frozen=True, slots=True)
class AdmissionRule:
    """A namespace's rule: mode, the severity that blocks, and waived criteria."""

    mode: Mode = "enforce"
    fail_on: str = "high"
    """Failed criteria of this severity or worse deny admission."""
    waive: frozenset[str] = field(default_factory=frozenset)
    """Criterion ids whose failure never blocks (justified exceptions)."""

    def __post_init__(self) -> None:
        if self.mode not in ("enforce", "warn", "off"):
            raise CatalogError(f"admission mode must be enforce, warn or off, not {self.mode!r}")
        if self.fail_on not in SEVERITIES:
            raise CatalogError(f"fail_on must be one of {', '.join(SEVERITIES)}")


@dataclass(frozen=True, slots=True)
class AdmissionDecision:
    allowed: bool
    mode: Mode
    reason: str
    blocking: tuple[CriterionResult, ...] = ()
    """Failed criteria at or above `fail_on` (deny in enforce, warnings in warn)."""
    warnings: tuple[str, ...] = ()

    def error(self) -> RegistryError:
        """The OCI `DENIED` error naming the failed criteria (for a denied pull)."""
        detail: dict[str, Any] = {
            "criteria": [
                {
                    "id": r.id,
                    "severity": r.severity,
                    "rule": r.rule,
                    "evidence": list(r.evidence[:3]),
                }
                for r in self.blocking
            ]
        }
        return RegistryError(ErrorCode.DENIED, self.reason, detail)


def decide(report: HardeningReport | None, rule: AdmissionRule) -> AdmissionDecision:
    """Allow or deny one image in one namespace."""
    if rule.mode == "off":
        return AdmissionDecision(True, "off", "hardening admission is off for this namespace")
    if report is None:
        reason = "image has not been checked against the hardening criteria"
        if rule.mode == "enforce":
            return AdmissionDecision(False, "enforce", reason)
        return AdmissionDecision(True, "warn", reason, warnings=(reason,))
    blocking = tuple(r for r in report.failed(rule.fail_on) if r.id not in rule.waive)
    waived = tuple(r.id for r in report.failed(rule.fail_on) if r.id in rule.waive)
    notes = tuple(f"{cid} failed but is waived" for cid in waived)
    if not blocking:
        return AdmissionDecision(
            True, rule.mode, f"no {rule.fail_on}-or-worse criterion failed", warnings=notes
        )
    names = ", ".join(f"{r.id} ({r.title})" for r in blocking)
    reason = f"hardening criteria failed: {names}"
    if rule.mode == "warn":
        return AdmissionDecision(True, "warn", reason, blocking, (reason, *notes))
    return AdmissionDecision(False, "enforce", reason, blocking, notes)

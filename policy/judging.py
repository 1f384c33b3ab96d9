"""Judging a subject (an image, a chart) against a catalog: one result per criterion,
then the report. `policy.evaluate` and `policy.chart.evaluate` differ only in their checks
and inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar

from policy.catalog import Catalog, CatalogError
from policy.checks import Outcome
from policy.report import CriterionResult, HardeningReport


class _Analysed(Protocol):
    @property
    def manifest_digest(self) -> str: ...
    @property
    def analyzer_version(self) -> str: ...
    @property
    def complete(self) -> bool: ...


InputsT = TypeVar("InputsT")


def judge(
    catalog: Catalog,
    subject: Literal["image", "chart"],
    checks: Mapping[str, Callable[[InputsT, Mapping[str, Any]], Outcome]],
    inputs: InputsT,
) -> list[CriterionResult]:
    """One result per criterion of `catalog` for `subject` ("image", "chart"), in catalog
    order: the check named by each criterion, or not applicable when it is disabled."""
    results = []
    for criterion in catalog.for_subject(subject):
        if not criterion.enabled:
            status: str = "not_applicable"
            evidence: tuple[str, ...] = (
                f"disabled by override {', '.join(catalog.overrides) or '(base)'}",
            )
        else:
            check = checks.get(criterion.check)
            if check is None:
                raise CatalogError(f"criterion {criterion.id}: no check named {criterion.check!r}")
            outcome = check(inputs, criterion.params)
            status, evidence = outcome.status, outcome.evidence
        results.append(
            CriterionResult(
                criterion.id,
                criterion.title,
                criterion.rule,
                criterion.severity,
                status,  # type: ignore[arg-type]
                evidence,
            )
        )
    return results


def report(
    analysis: _Analysed,
    subject_name: str | None,
    catalog: Catalog,
    results: Sequence[CriterionResult],
    now: datetime | None = None,
) -> HardeningReport:
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return HardeningReport(
        subject_digest=analysis.manifest_digest,
        subject_name=subject_name,
        catalog_name=catalog.name,
        catalog_version=catalog.version,
        catalog_digest=catalog.digest,
        catalog_overrides=catalog.overrides,
        analyzer_version=analysis.analyzer_version,
        analysis_complete=analysis.complete,
        evaluated_at=stamp,
        results=tuple(results),
    )

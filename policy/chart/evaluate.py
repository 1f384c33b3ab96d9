"""Judge an analysed chart against the catalog's chart criteria → `HardeningReport`.

The report has the same shape as an image's (and is signed the same way), so admission
(`policy.admission.decide`), waivers and severities work on charts unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from policy.catalog import Catalog, CatalogError
from policy.chart.analysis import ChartAnalysis
from policy.chart.checks import CHART_CHECKS, ChartContext, ChartInputs
from policy.report import CriterionResult, HardeningReport


def evaluate_chart(
    analysis: ChartAnalysis,
    context: ChartContext | None,
    catalog: Catalog,
    *,
    now: datetime | None = None,
) -> HardeningReport:
    """One result per chart criterion of `catalog`, in catalog order."""
    inputs = ChartInputs(analysis, context or ChartContext())
    results = []
    status: str
    evidence: tuple[str, ...]
    for criterion in catalog.for_subject("chart"):
        if not criterion.enabled:
            status, evidence = (
                "not_applicable",
                (f"disabled by override {', '.join(catalog.overrides) or '(base)'}",),
            )
        else:
            check = CHART_CHECKS.get(criterion.check)
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
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return HardeningReport(
        subject_digest=analysis.manifest_digest,
        subject_name=inputs.context.repository,
        catalog_name=catalog.name,
        catalog_version=catalog.version,
        catalog_digest=catalog.digest,
        catalog_overrides=catalog.overrides,
        analyzer_version=analysis.analyzer_version,
        analysis_complete=analysis.complete,
        evaluated_at=stamp,
        results=tuple(results),
    )

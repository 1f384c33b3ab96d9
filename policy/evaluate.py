"""Judge an analysed image against a catalog: `evaluate(...) -> HardeningReport`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from policy.analyzer.model import ImageAnalysis
from policy.catalog import Catalog, CatalogError
from policy.checks import CHECKS, Inputs
from policy.context import ImageContext
from policy.packages import VulnFinding
from policy.report import CriterionResult, HardeningReport


def evaluate(
    analysis: ImageAnalysis,
    context: ImageContext | None,
    catalog: Catalog,
    vulnerabilities: Sequence[VulnFinding] | None,
    *,
    now: datetime | None = None,
) -> HardeningReport:
    """One result per criterion of `catalog`, in catalog order.

    `context` None means nothing beyond the image bytes is known; `vulnerabilities`
    None means no vulnerability data (the vulnerability criterion is then n/a).
    """
    inputs = Inputs(analysis, context or ImageContext(), vulnerabilities)
    results = []
    for criterion in catalog.for_subject("image"):
        if not criterion.enabled:
            results.append(
                CriterionResult(
                    criterion.id,
                    criterion.title,
                    criterion.rule,
                    criterion.severity,
                    "not_applicable",
                    (f"disabled by override {', '.join(catalog.overrides) or '(base)'}",),
                )
            )
            continue
        check = CHECKS.get(criterion.check)
        if check is None:
            raise CatalogError(f"criterion {criterion.id}: no check named {criterion.check!r}")
        outcome = check(inputs, criterion.params)
        results.append(
            CriterionResult(
                criterion.id,
                criterion.title,
                criterion.rule,
                criterion.severity,
                outcome.status,
                outcome.evidence,
            )
        )
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return HardeningReport(
        subject_digest=analysis.manifest_digest,
        subject_name=context.repository if context else None,
        catalog_name=catalog.name,
        catalog_version=catalog.version,
        catalog_digest=catalog.digest,
        catalog_overrides=catalog.overrides,
        analyzer_version=analysis.analyzer_version,
        analysis_complete=analysis.complete,
        evaluated_at=stamp,
        results=tuple(results),
    )

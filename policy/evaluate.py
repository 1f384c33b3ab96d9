"""Judge an analysed image against a catalog: `evaluate(...) -> HardeningReport`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from policy.analyzer.model import ImageAnalysis
from policy.catalog import Catalog
from policy.checks import CHECKS, Inputs
from policy.context import ImageContext
from policy.judging import judge, report
from policy.packages import VulnFinding
from policy.report import HardeningReport


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
    results = judge(catalog, "image", CHECKS, inputs)
    return report(analysis, context.repository if context else None, catalog, results, now)

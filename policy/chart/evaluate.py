"""Judge an analysed chart against the catalog's chart criteria → `HardeningReport`.

The report has the same shape as an image's (and is signed the same way), so admission
(`policy.admission.decide`), waivers and severities work on charts unchanged.
"""

from __future__ import annotations

from datetime import datetime

from policy.catalog import Catalog
from policy.chart.analysis import ChartAnalysis
from policy.chart.checks import CHART_CHECKS, ChartContext, ChartInputs
from policy.judging import judge, report
from policy.report import HardeningReport


def evaluate_chart(
    analysis: ChartAnalysis,
    context: ChartContext | None,
    catalog: Catalog,
    *,
    now: datetime | None = None,
) -> HardeningReport:
    """One result per chart criterion of `catalog`, in catalog order."""
    inputs = ChartInputs(analysis, context or ChartContext())
    results = judge(catalog, "chart", CHART_CHECKS, inputs)
    return report(analysis, inputs.context.repository, catalog, results, now)

"""Helm charts as goods: unpack under limits, render with Helm's engine, list workloads and
images, judge them against the catalog's chart criteria, and describe them in an SBOM.

- `analyze_chart(reader, manifest_digest, values, limits) -> ChartAnalysis`
- `evaluate_chart(analysis, ChartContext(...), catalog) -> HardeningReport`
- `chart_sbom(analysis, name=...) -> dict` (CycloneDX 1.6)
"""

from policy.chart.analysis import (
    CHART_ANALYZER_VERSION,
    ChartAnalysis,
    ChartAnalysisError,
    ChartImage,
    analyze_chart,
)
from policy.chart.checks import ChartContext
from policy.chart.evaluate import evaluate_chart
from policy.chart.limits import ChartLimits
from policy.chart.sbom import chart_sbom

__all__ = [
    "CHART_ANALYZER_VERSION",
    "ChartAnalysis",
    "ChartAnalysisError",
    "ChartContext",
    "ChartImage",
    "ChartLimits",
    "analyze_chart",
    "chart_sbom",
    "evaluate_chart",
]

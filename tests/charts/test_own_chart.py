"""Zoll's own Helm chart, judged by Zoll as it judges the charts it mirrors: rendered by
Helm's engine with the values an operator must give, every chart criterion met."""

from __future__ import annotations

from pathlib import Path

from policy.catalog import load_catalog
from policy.chart import ChartContext, analyze_chart, evaluate_chart
from registry.oci.reader import OCILayoutReader
from tests.charts.layout import chart_layout
from tests.support.charts import Chart, tgz
from tests.support.paths import REPO

CHART = REPO / "deploy" / "helm" / "zoll"
DIGEST = "sha256:" + "5e" * 32


def packaged() -> bytes:
    """The chart folder as `helm package` lays it out: every file under `zoll/`."""
    return tgz(
        {
            f"zoll/{path.relative_to(CHART).as_posix()}": path.read_bytes()
            for path in sorted(CHART.rglob("*"))
            if path.is_file()
        }
    )


async def test_zolls_own_chart_meets_the_chart_criteria(tmp_path: Path) -> None:
    digest = chart_layout(tmp_path / "layout", Chart("zoll"), packaged())
    values = {
        "image": {"repository": "zoll.example/zoll/zoll", "digest": DIGEST},
        "ingress": {"enabled": True, "host": "zoll.example"},
    }
    analysis = await analyze_chart(OCILayoutReader(tmp_path / "layout"), digest, values)
    assert analysis.complete, (analysis.render_error, analysis.findings)
    assert [w.kind for w in analysis.workloads] == ["Deployment"]
    report = evaluate_chart(
        analysis,
        ChartContext(repository="zoll/charts/zoll", registry_names=("zoll.example",)),
        load_catalog(),
    )
    failed = {r.id: r.evidence for r in report.results if r.status == "fail"}
    assert failed == {}
    assert [i.reference for i in analysis.images] == [f"zoll.example/zoll/zoll:0.1.0@{DIGEST}"]

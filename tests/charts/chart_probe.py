"""Analyse one chart layout in a fresh process; report the verdict and the peak RSS.

Run as `python -m tests.charts.chart_probe <layout> '<limits json>'`. The peak is VmHWM
of this process (see tests/policy/hostile_probe.py), so it measures the analysis alone.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from policy.catalog import load_catalog
from policy.chart import ChartContext, ChartLimits, analyze_chart, evaluate_chart
from registry.oci.reader import OCILayoutReader
from registry.processes import high_water_kib


async def main(layout: Path, limits: ChartLimits) -> dict[str, object]:
    reader = OCILayoutReader(layout)
    fetched = await reader.get_manifest("latest")
    baseline = high_water_kib()
    started = time.monotonic()
    analysis = await analyze_chart(reader, fetched.digest, None, limits)
    report = evaluate_chart(analysis, ChartContext(registry_names=("zoll.test",)), load_catalog())
    return {
        "complete": analysis.complete,
        "findings": [f.to_json() for f in analysis.findings],
        "render_error": analysis.render_error,
        "uncompressed": analysis.uncompressed_size,
        "seconds": time.monotonic() - started,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": high_water_kib(),
        "hc47": report.result("HC-47").status,
        "hc47_evidence": list(report.result("HC-47").evidence),
    }


if __name__ == "__main__":
    result = asyncio.run(main(Path(sys.argv[1]), ChartLimits.from_json(json.loads(sys.argv[2]))))
    print(json.dumps(result))

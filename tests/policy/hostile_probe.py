"""Analyse one OCI layout in a fresh process and report findings, peak RSS and time.

Run as `python -m tests.policy.hostile_probe <layout> '<limits json>'`. The peak is
VmHWM of /proc/self/status: the high-water mark of this process's own memory map, which
(unlike `ru_maxrss`) does not inherit the parent's peak across fork and exec.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from policy import AnalysisLimits, analyze_image, evaluate, load_catalog
from registry.oci.reader import OCILayoutReader
from registry.processes import high_water_kib


async def main(layout: Path, limits: AnalysisLimits) -> dict[str, object]:
    reader = OCILayoutReader(layout)
    fetched = await reader.get_manifest("latest")
    baseline = high_water_kib()
    started = time.monotonic()
    analysis = await analyze_image(reader, fetched.digest, limits)
    seconds = time.monotonic() - started
    report = evaluate(analysis, None, load_catalog(), None)
    return {
        "complete": analysis.complete,
        "findings": [f.to_json() for f in analysis.findings],
        "entries": sum(layer.entries for layer in analysis.layers),
        "uncompressed": analysis.uncompressed_size,
        "files": analysis.tree.files,
        "seconds": seconds,
        "baseline_rss_kib": baseline,
        "peak_rss_kib": high_water_kib(),
        "hc35": report.result("HC-35").status,
        "hc35_evidence": list(report.result("HC-35").evidence),
    }


if __name__ == "__main__":
    result = asyncio.run(main(Path(sys.argv[1]), AnalysisLimits.from_json(json.loads(sys.argv[2]))))
    print(json.dumps(result))

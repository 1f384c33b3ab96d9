"""Render one unpacked chart with Helm's own template engine, in a child process.

Run as `python -m policy.chart.helm_worker <chart folder>` with a JSON request on stdin
(`values`, `name`, `namespace`, `memory_bytes`); prints `{"manifests": {path: text}}` or
`{"error": "..."}`. The engine is Helm's Go SDK through the `helm-python-sdk` bindings:
offline, no cluster (`lookup` returns nothing). It runs here, not in the service, because
templates are code: a hostile one may loop or allocate without end, and only a process of
its own can be bounded (address space set before the engine loads) and killed.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def _bound(memory_bytes: int) -> None:
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def render(folder: str, request: dict[str, Any]) -> dict[str, Any]:
    try:
        import helm_python as helm
    except (ImportError, OSError) as exc:  # no wheel for this platform, library unloadable
        return {"error": f"the Helm template engine is not available: {exc}", "engine": None}
    engine = f"helm {helm.helm_sdk_version()} (helm-python-sdk {helm.helm_c_version()})"
    try:
        with helm.Chart.load(folder) as chart:
            manifests = chart.render(
                request.get("values") or {},
                name=request.get("name") or chart.name,
                namespace=request.get("namespace") or "default",
                is_install=True,
            )
            return {"manifests": manifests, "engine": engine}
    except helm.HelmError as exc:
        return {"error": str(exc), "engine": engine}


def main() -> int:
    request = json.loads(sys.stdin.read() or "{}")
    _bound(int(request.get("memory_bytes", 0)))
    result = render(sys.argv[1], request)
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

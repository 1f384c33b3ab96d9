"""Operations endpoints: liveness, readiness (database + storage), Prometheus metrics."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from registry.http.access import PUBLIC, registry_wide, requires
from registry.http.state import registry_of
from registry.pipeline import gauges
from registry.storage.base import StorageError


@requires(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@requires(PUBLIC)
async def readyz(request: web.Request) -> web.Response:
    reg = registry_of(request)
    checks: dict[str, str] = {}
    try:
        await reg.pool.fetchval("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports every failure, never raises
        checks["database"] = f"failed: {type(exc).__name__}"
    try:
        await reg.driver.stat("readyz-probe")
        checks["storage"] = "ok"
    except (StorageError, OSError) as exc:
        checks["storage"] = f"failed: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


@requires(registry_wide("metrics"))  # open with auth.public_metrics
async def metrics(request: web.Request) -> web.Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collector = CollectorRegistry()
        multiprocess.MultiProcessCollector(collector)  # type: ignore[no-untyped-call]
        body = generate_latest(collector)
    else:
        body = generate_latest()
    body += await gauges.exposition(registry_of(request).pool)  # the queue, mirror sets
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

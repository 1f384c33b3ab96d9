"""Operations endpoints: liveness, readiness (database + storage), Prometheus metrics."""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from policy.vuln import VulnStore
from registry.http.access import PUBLIC, registry_wide, requires
from registry.http.state import Registry, registry_of
from registry.metrics import VULN_AGE, VULN_RECORDS
from registry.pipeline.vulndata import VulnData, vuln_data
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
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if checks["database"] == "ok":  # not a readiness check: Zoll works without the data
        data = await _vuln_data(reg)
        body["vulnerability_data"] = data.to_json()
        body["warnings"] = data.warnings(reg.config.namespaces)
    return web.json_response(body, status=200 if ready else 503)


async def _vuln_data(reg: Registry) -> VulnData:
    data = await vuln_data(VulnStore(reg.pool))
    VULN_RECORDS.set(data.records)
    VULN_AGE.set(data.age_seconds())
    return data


@requires(registry_wide("metrics"))  # open with auth.public_metrics
async def metrics(request: web.Request) -> web.Response:
    await _vuln_data(registry_of(request))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collector = CollectorRegistry()
        multiprocess.MultiProcessCollector(collector)  # type: ignore[no-untyped-call]
        body = generate_latest(collector)
    else:
        body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

"""Operations endpoints: liveness, readiness (database, storage, and under `zoll serve` its
workers and embedded backends), Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from policy.vuln import VulnStore
from registry import supervision
from registry.http.access import PUBLIC, registry_wide, requires
from registry.http.state import Registry, registry_of
from registry.metrics import VULN_AGE, VULN_RECORDS
from registry.pipeline import gauges
from registry.pipeline.vulndata import VulnData, vuln_data


@requires(PUBLIC)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database(reg: Registry) -> str:
    """Answering is not enough: a standby answers too (a DSN that leads to one, or to the
    old primary during a failover), and every write there fails."""
    try:
        async with asyncio.timeout(reg.config.storage.probe_timeout):
            read_only = await reg.pool.fetchval(
                "SELECT current_setting('transaction_read_only') = 'on'"
            )
    except TimeoutError:
        return f"failed: no answer within {reg.config.storage.probe_timeout:g} s"
    except Exception as exc:  # readiness reports every failure, never raises
        return f"failed: {type(exc).__name__}"
    if read_only:
        return "failed: read-only (a standby, not the primary)"
    return "ok"


@requires(PUBLIC)
async def readyz(request: web.Request) -> web.Response:
    """Each backend is asked at once with a short deadline, so a stalled one is reported
    within `storage.probe_timeout` seconds instead of hanging the probe."""
    reg = registry_of(request)
    database, storage = await asyncio.gather(_database(reg), reg.driver.probe())
    checks = {"database": database, "storage": storage}
    supervisor = supervision.of_parent(reg.config.data_dir)
    if supervisor is not None:  # under `zoll serve`: its workers and embedded backends
        checks.update(supervisor.checks())
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
    body += await gauges.exposition(registry_of(request).pool)  # the queue, mirror sets
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

"""Metrics read from PostgreSQL when /metrics is scraped: they describe the shared queue
and the mirror sets, not one worker process, so every worker answers the same.

    zoll_jobs{kind, state}                  queued, retrying (queued after a failure), running
    zoll_jobs_waiting_seconds{kind}         how long the oldest job due has waited for a worker
    zoll_mirror_entries{set, state}         resolving, retrying, copying, judging, done, failed
    zoll_mirror_images{set, state}          wanted (resolved so far), ended (judged or failed)
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from registry.mirror import progress
from registry.mirror.store import load_set

ENTRY_STATES = ("resolving", "retrying", "copying", "judging", "done", "failed")


class _Snapshot(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def exposition(pool: asyncpg.Pool) -> bytes:
    """The queue and mirror gauges in the Prometheus text format."""
    jobs = GaugeMetricFamily(
        "zoll_jobs", "Jobs queued, retrying or running", labels=["kind", "state"]
    )
    waiting = GaugeMetricFamily(
        "zoll_jobs_waiting_seconds",
        "Seconds the oldest job that is due has waited for a worker (0: none waits)",
        labels=["kind"],
    )
    for row in await pool.fetch(
        """SELECT kind,
                  CASE WHEN state = 'queued' AND attempts > 0 THEN 'retrying' ELSE state END AS s,
                  count(*) AS n
           FROM jobs WHERE state IN ('queued', 'running') GROUP BY 1, 2 ORDER BY 1, 2"""
    ):
        jobs.add_metric([row["kind"], row["s"]], row["n"])
    for row in await pool.fetch(
        """SELECT kind, coalesce(extract(epoch FROM now() - min(run_after)), 0) AS waited
           FROM jobs WHERE state = 'queued' AND run_after <= now() GROUP BY 1 ORDER BY 1"""
    ):
        waiting.add_metric([row["kind"]], float(row["waited"]))
    entries = GaugeMetricFamily(
        "zoll_mirror_entries", "Mirror entries by state", labels=["set", "state"]
    )
    images = GaugeMetricFamily(
        "zoll_mirror_images",
        "Images of a mirror set: wanted (its entries resolved to), ended (judged or failed)",
        labels=["set", "state"],
    )
    for name in await pool.fetch("SELECT name FROM mirror_sets ORDER BY name"):
        try:
            mirror_set = await load_set(pool, name["name"])
        except KeyError:
            continue  # removed meanwhile
        report = await progress.set_report(pool, mirror_set)
        for state in ENTRY_STATES:
            count = sum(1 for e in report["entries"] if e["state"] == state)
            entries.add_metric([mirror_set.name, state], count)
        images.add_metric([mirror_set.name, "wanted"], report["wanted"])
        images.add_metric([mirror_set.name, "ended"], report["ended"])
    collected = CollectorRegistry(auto_describe=False)
    collected.register(_Snapshot([jobs, waiting, entries, images]))
    return generate_latest(collected)

"""Prometheus metrics. With several worker processes they aggregate through
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by `zoll serve`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "zoll_http_requests_total",
    "HTTP requests by method, route and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "zoll_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BLOB_BYTES_RECEIVED = Counter("zoll_blob_bytes_received_total", "Blob bytes accepted by uploads")
BLOBS_PUBLISHED = Counter("zoll_blobs_published_total", "Blobs verified and published")
DIGEST_MISMATCHES = Counter("zoll_upload_digest_mismatches_total", "Uploads refused: wrong digest")
GC_DELETED = Counter("zoll_gc_deleted_total", "Objects removed by garbage collection", ["kind"])
GC_RUNS = Counter("zoll_gc_runs_total", "Garbage collection runs")
UPLOADS_EXPIRED = Counter("zoll_uploads_expired_total", "Upload sessions expired")
BUDGET_BYTES = Gauge(
    "zoll_upload_buffer_bytes", "Upload bytes held in memory", multiprocess_mode="livesum"
)
JOB_OUTCOMES = Counter(
    "zoll_job_outcomes_total",
    "Pipeline and mirror jobs by kind and how each run ended: done, retried (failed, tried "
    "again later), failed (for good), cancelled (its image was deleted), postponed",
    ["kind", "outcome"],
)

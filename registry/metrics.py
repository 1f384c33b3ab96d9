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
VULN_RECORDS = Gauge(
    "zoll_vulnerability_data_records",
    "OSV records loaded (0: known vulnerabilities are not checked)",
    multiprocess_mode="livemax",
)
VULN_AGE = Gauge(
    "zoll_vulnerability_data_age_seconds",
    "Seconds since the last successful OSV import (+Inf: never, or no records)",
    multiprocess_mode="livemax",
)
BUDGET_BYTES = Gauge(
    "zoll_upload_buffer_bytes", "Upload bytes held in memory", multiprocess_mode="livesum"
)
FEDERATION_COSIGNED = Counter(
    "zoll_federation_cosignatures_total", "Checkpoints this node cosigned as witness", ["peer"]
)
FEDERATION_FORKS = Counter(
    "zoll_federation_forks_total", "Forks (split views, rewritten logs) detected", ["peer"]
)
FEDERATION_LAG_ENTRIES = Gauge(
    "zoll_federation_lag_entries",
    "Entries of a followed peer's log not yet read",
    ["peer"],
    multiprocess_mode="max",
)
FEDERATION_LAG_SECONDS = Gauge(
    "zoll_federation_lag_seconds",
    "Seconds since the followed peer's log was last read up to its checkpoint",
    ["peer"],
    multiprocess_mode="max",
)
FEDERATION_WITNESSES = Gauge(
    "zoll_federation_checkpoint_cosignatures",
    "Witness cosignatures on this node's latest cosigned checkpoint",
    multiprocess_mode="max",
)
CONNECTIONS_CLOSED = Counter(
    "zoll_http_connections_closed_total",
    "Connections refused or cut: header_timeout, idle_timeout, per_address, max_connections",
    ["reason"],
)
JOB_OUTCOMES = Counter(
    "zoll_job_outcomes_total",
    "Pipeline and mirror jobs by kind and how each run ended: done, retried (failed, tried "
    "again later), failed (for good), cancelled (its image was deleted), postponed",
    ["kind", "outcome"],
)

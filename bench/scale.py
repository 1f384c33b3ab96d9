"""Zoll at scale: fill a registry directly through its own storage driver and database
layers to a multiple of a small base, then measure what must not grow with it.

    python -m bench scale [--scales 1,10,100] [--storage filesystem|s3] [--rounds 1000]
                          [--parts listings,verifiers,gc]

At 1× the registry holds 100 repositories, 1,000 image manifests, 10,000 blobs, 10
referrers on one subject, 10,000 transparency-log entries, 10,000 audit events and
1,000 judged images; 100× is the size of issue 24. Filling goes through the driver
(`put`, no fsync on the filesystem) and COPY into the service's tables; the log's
subtrees come from its own `CompactRange`, the audit chain from its own `event_hash`,
and both are checked with the service's own verifiers before anything is measured. The
tables are then vacuumed (as autovacuum would have by then), and the started service is
left to publish the log's tiles before any measurement.

Measured at each scale, against a `zoll serve` on the filled database:
- `/v2/_catalog`, tag listing and referrers listing (whole pages of 50 after a random
  `last`; referrers: the first 10), `/api/v1` image status and image listing, inclusion
  and consistency proofs: p50/p99, and the database blocks each request touched
  (PostgreSQL's own counters: the load-free measure of O(page), where time also carries
  the machine's load and where the pages came from);
- `zoll log verify` (a consistency proof between two signed checkpoints) and
  `zoll audit verify`, full and incremental from the last verified head, as the CLI;
- online GC in a process of its own with the driver's calls counted, and the p99 of
  whole pushes (two blobs and a manifest) while it runs against the p99 when idle.

Prints one table per scale and the growth table (value at each scale and the ratio of
the largest to the smallest); paste it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from attest.tlog.compact import CompactRange
from attest.tlog.entries import admission_record
from attest.tlog.hashing import EMPTY_ROOT, leaf_hash
from bench.registry import ZOLL, Server, await_serving
from registry.audit.chain import GENESIS, event_hash
from registry.config import Config, load_config
from registry.db.repositories import fold_counts
from registry.embedded.ports import free_port
from registry.embedded.seaweedfs import EmbeddedSeaweed
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.processes import high_water_kib
from registry.storage.filesystem import FilesystemDriver

ORIGIN = "bench.zoll.example/scale"
BIG = "scale/big"
"""The repository with the many tags and the referrers."""
LAYERS = 8
"""Blobs per image manifest besides its config."""
BIG_ALIASES = 10
"""Tags on each manifest of the big repository (versions, their aliases)."""
OLD = datetime.now(UTC) - timedelta(days=2)
"""Filled content is this old, so GC's grace period does not protect it."""
PAGE = 50
"""Items per listed page: whole after any start the bench picks, at 1× too (100
repositories, 100 images in the big repository)."""
REFERRER_PAGE = 10
"""Referrers per listed page (the subject has 10 at 1×)."""
PUSH_INTERVAL = 0.1
"""Seconds from one measured push to the next (10 pushes/s at most)."""
IDLE_PUSHES = 300
"""Pushes measured before GC: the p99 of 100 was their slowest, 37–118 ms between runs."""
GRACE = 3600.0
"""GC's grace period in the bench: pushes during GC are younger, filled garbage older."""


@dataclass(frozen=True)
class Shape:
    """What a registry at `scale`× the base holds."""

    scale: int

    @property
    def repositories(self) -> int:
        return 100 * self.scale

    @property
    def manifests(self) -> int:
        return 1_000 * self.scale

    @property
    def blobs(self) -> int:
        return 10_000 * self.scale

    @property
    def referenced_blobs(self) -> int:
        return self.manifests * (LAYERS + 1)

    @property
    def big_tags(self) -> int:
        return self.manifests // 10 * BIG_ALIASES

    @property
    def referrers(self) -> int:
        return 10 * self.scale

    @property
    def log_entries(self) -> int:
        return 10_000 * self.scale

    @property
    def audit_events(self) -> int:
        return 10_000 * self.scale

    def repo(self, j: int) -> str:
        return BIG if j == 0 else f"scale/r{j:06d}"

    def repo_of_manifest(self, m: int) -> int:
        """Every tenth manifest is in the big repository, the others spread over the rest."""
        return 0 if m % 10 == 0 else 1 + m % (self.repositories - 1)

    def big_manifests(self) -> range:
        return range(0, self.manifests, 10)

    @staticmethod
    def untagged(m: int) -> bool:
        """Every tenth manifest lost its tag: GC collects it and its blobs."""
        return m % 10 == 9 and m >= 10


def blob_bytes(scale: int, i: int) -> bytes:
    return b"zoll scale bench %d %d\n" % (scale, i)


# -- filling ------------------------------------------------------------------------


def chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


async def store_blobs(
    shape: Shape, put: Callable[[Digest, bytes], Awaitable[str]], concurrency: int
) -> tuple[list[str], list[str], float]:
    """Every blob's bytes through the driver; (digests, storage keys, blobs/s)."""
    digests: list[str] = []
    keys: list[str] = [""] * shape.blobs
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, digest: Digest, data: bytes) -> None:
        async with gate:
            keys[i] = await put(digest, data)

    start = time.perf_counter()
    for part in chunks(shape.blobs, 20_000):
        tasks = []
        for i in part:
            data = blob_bytes(shape.scale, i)
            digest = Digest("sha256", hashlib.sha256(data).hexdigest())
            digests.append(str(digest))
            tasks.append(one(i, digest, data))
        await asyncio.gather(*tasks)
        done = part.stop
        rate = done / (time.perf_counter() - start)
        if done % 100_000 == 0 or done == shape.blobs:
            print(f"    {done} blobs stored ({rate:.0f}/s)", flush=True)
    return digests, keys, shape.blobs / (time.perf_counter() - start)


def image_manifest(digests: list[str], m: int) -> bytes:
    base = m * (LAYERS + 1)
    size = len(b"zoll scale bench ") + 3  # sizes are not checked by anything measured
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": digests[base], "size": size},
        "layers": [
            {"mediaType": mt.OCI_LAYER_GZIP, "digest": digests[base + k], "size": size}
            for k in range(1, LAYERS + 1)
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def referrer_manifest(subject: str, config: str, n: int) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": "application/vnd.zoll.bench.note",
        "config": {"mediaType": mt.OCI_EMPTY, "digest": config, "size": 2},
        "layers": [{"mediaType": mt.OCI_EMPTY, "digest": config, "size": 2}],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": subject, "size": 0},
        "annotations": {"n": str(n)},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


MANIFEST_COLUMNS = [
    "repository_id",
    "digest",
    "media_type",
    "artifact_type",
    "subject_digest",
    "content",
    "size",
    "created_at",
]
REFERENCE_COLUMNS = ["repository_id", "manifest_digest", "blob_digest"]
TAG_COLUMNS = ["repository_id", "name", "manifest_digest", "updated_at"]


async def copy(conn: asyncpg.Connection, table: str, columns: list[str], rows: Any) -> None:
    await conn.copy_records_to_table(table, records=rows, columns=columns)


async def fill_database(
    pool: asyncpg.Pool, shape: Shape, digests: list[str], keys: list[str]
) -> dict[str, str]:
    """Rows for everything; returns the digest of each image manifest by index."""
    empty = b"{}"
    empty_digest = "sha256:" + hashlib.sha256(empty).hexdigest()
    manifest_digests: dict[int, str] = {}
    async with pool.acquire() as conn:
        await copy(
            conn,
            "repositories",
            ["id", "name", "created_at"],
            [(j + 1, shape.repo(j), OLD) for j in range(shape.repositories)],
        )
        await conn.execute(
            "SELECT setval('repositories_id_seq', (SELECT max(id) FROM repositories))"
        )
        for part in chunks(shape.blobs, 100_000):
            await copy(
                conn,
                "blobs",
                ["digest", "size", "storage_key", "created_at"],
                [(digests[i], len(blob_bytes(shape.scale, i)), keys[i], OLD) for i in part],
            )
        await copy(
            conn,
            "blobs",
            ["digest", "size", "storage_key", "created_at"],
            [(empty_digest, 2, f"blobs/sha256/{empty_digest[7:9]}/{empty_digest[7:]}", OLD)],
        )
        # Each manifest's blobs are linked in its repository; the blobs past the
        # referenced ones are linked to a repository but used by no manifest (garbage).
        for part in chunks(shape.blobs, 100_000):
            await copy(
                conn,
                "repository_blobs",
                ["repository_id", "digest", "linked_at"],
                [
                    (
                        shape.repo_of_manifest(min(i // (LAYERS + 1), shape.manifests - 1)) + 1
                        if i < shape.referenced_blobs
                        else i % shape.repositories + 1,
                        digests[i],
                        OLD,
                    )
                    for i in part
                ],
            )
        await copy(
            conn,
            "repository_blobs",
            ["repository_id", "digest", "linked_at"],
            [(1, empty_digest, OLD)],
        )
        for part in chunks(shape.manifests, 20_000):
            rows, refs, tags, status = [], [], [], []
            for m in part:
                raw = image_manifest(digests, m)
                digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                manifest_digests[m] = digest
                repo_id = shape.repo_of_manifest(m) + 1
                rows.append((repo_id, digest, mt.OCI_MANIFEST, None, None, raw, len(raw), OLD))
                base = m * (LAYERS + 1)
                refs.extend((repo_id, digest, digests[base + k]) for k in range(LAYERS + 1))
                if not shape.untagged(m):
                    tags.append((repo_id, f"v{m}", digest, OLD))
                status.append(
                    (repo_id, digest, "image", "admitted" if m % 3 else "quarantined", OLD)
                )
            await copy(
                conn,
                "manifests",
                MANIFEST_COLUMNS,
                rows,
            )
            await copy(conn, "manifest_blobs", REFERENCE_COLUMNS, refs)
            await copy(conn, "tags", TAG_COLUMNS, tags)
            await copy(
                conn,
                "image_status",
                ["repository_id", "digest", "kind", "state", "updated_at"],
                status,
            )
            await copy(
                conn,
                "pipeline_events",
                ["repository_id", "digest", "stage", "outcome", "at"],
                [
                    (r, d, stage, "passed", OLD)
                    for r, d, *_ in status
                    for stage in ("verify", "scan")
                ],
            )
        subject = manifest_digests[0]
        await copy(
            conn,
            "tags",
            TAG_COLUMNS,
            [
                (1, f"t{m:07d}-{k}", manifest_digests[m], OLD)
                for m in shape.big_manifests()
                for k in range(BIG_ALIASES)
            ],
        )
        refs_rows, ref_blobs = [], []
        for n in range(shape.referrers):
            raw = referrer_manifest(subject, empty_digest, n)
            digest = "sha256:" + hashlib.sha256(raw).hexdigest()
            refs_rows.append(
                (
                    1,
                    digest,
                    mt.OCI_MANIFEST,
                    "application/vnd.zoll.bench.note",
                    subject,
                    raw,
                    len(raw),
                    OLD + timedelta(seconds=n),
                )
            )
            ref_blobs.append((1, digest, empty_digest))
        await copy(
            conn,
            "manifests",
            MANIFEST_COLUMNS,
            refs_rows,
        )
        await copy(conn, "manifest_blobs", REFERENCE_COLUMNS, ref_blobs)
    return {str(k): v for k, v in manifest_digests.items()}


async def fill_log(pool: asyncpg.Pool, shape: Shape, manifests: dict[str, str]) -> None:
    """Admission entries about the judged images, with the subtrees the store keeps."""
    tree = CompactRange(0, [])
    async with pool.acquire() as conn:
        log_id = await conn.fetchval(
            "INSERT INTO tlog_logs (origin, root) VALUES ($1, $2) RETURNING id", ORIGIN, EMPTY_ROOT
        )
        for part in chunks(shape.log_entries, 50_000):
            leaves, nodes = [], []
            for k in part:
                m = k % shape.manifests
                repo = shape.repo(shape.repo_of_manifest(m))
                record = admission_record(
                    subject_digest=manifests[str(m)],
                    repository=repo,
                    decision="admitted",
                    reasons=["hardening criteria met", "provenance verified"],
                    decided_at=OLD,
                )
                data = record.leaf_data()
                hashed = leaf_hash(data)
                nodes.extend((log_id, n.level, n.index, h) for n, h in tree.append(hashed))
                leaves.append((log_id, k, hashed, record.kind, data, repo, manifests[str(m)], OLD))
            await copy(
                conn,
                "tlog_leaves",
                [
                    "log_id",
                    "idx",
                    "leaf_hash",
                    "kind",
                    "body",
                    "subject_repository",
                    "subject_digest",
                    "integrated_at",
                ],
                leaves,
            )
            await copy(conn, "tlog_nodes", ["log_id", "level", "idx", "hash"], nodes)
        await conn.execute(
            "UPDATE tlog_logs SET size = $2, root = $3 WHERE id = $1",
            log_id,
            tree.size,
            tree.root(),
        )


async def fill_audit(pool: asyncpg.Pool, count: int, start: int = 0, prev: bytes = GENESIS) -> None:
    """A hash chain of `count` events after seq `start`, as `record_all` would write it."""
    at = OLD
    async with pool.acquire() as conn:
        for part in chunks(count, 50_000):
            rows = []
            for k in part:
                seq = start + k + 1
                detail = json.dumps(
                    {"media_type": mt.OCI_MANIFEST, "size": k},
                    sort_keys=True,
                    separators=(",", ":"),
                )
                repo = f"scale/r{k % 1000:06d}"
                digest = event_hash(
                    prev,
                    seq,
                    at,
                    "bench",
                    "robot",
                    "manifest.push",
                    repo,
                    f"sha256:{k:064x}",
                    None,
                    None,
                    detail,
                )
                rows.append(
                    (
                        seq,
                        at,
                        "bench",
                        "robot",
                        "manifest.push",
                        repo,
                        f"sha256:{k:064x}",
                        None,
                        None,
                        detail,
                        prev,
                        digest,
                    )
                )
                prev = digest
            await copy(
                conn,
                "audit_events",
                [
                    "seq",
                    "at",
                    "actor",
                    "actor_kind",
                    "action",
                    "repository",
                    "target",
                    "source",
                    "request_id",
                    "detail",
                    "prev_hash",
                    "hash",
                ],
                rows,
            )
        await conn.execute("UPDATE audit_head SET seq = $1, hash = $2", start + count, prev)


# -- the service -------------------------------------------------------------------


def service_env(work: Path, dsn: str, storage: str, s3: EmbeddedSeaweed | None) -> dict[str, str]:
    env = {
        **os.environ,
        "ZOLL_DATABASE__DSN": dsn,
        "ZOLL_LOG__LEVEL": "warning",
        "ZOLL_AUTH__ENABLED": "false",
        "ZOLL_GC__ENABLED": "false",  # the bench runs it, once, in a process of its own
        "ZOLL_ATTEST__LOG_ORIGIN": ORIGIN,
        "ZOLL_DATA_DIR": str(work / "zoll"),
        "ZOLL_STORAGE__DRIVER": storage,
        "ZOLL_STORAGE__FILESYSTEM__ROOT": str(work / "blobs"),
    }
    if s3 is not None:
        env.update(
            {
                "ZOLL_STORAGE__S3__ENDPOINT": s3.endpoint,
                "ZOLL_STORAGE__S3__ACCESS_KEY": s3.access_key,
                "ZOLL_STORAGE__S3__SECRET_KEY": s3.secret_key,
                "ZOLL_STORAGE__S3__BUCKET": "zoll",
                "ZOLL_STORAGE__S3__PREFIX": f"{work.name}/",
            }
        )
    return env


def bench_config(env: dict[str, str]) -> Config:
    return load_config(environ={k: v for k, v in env.items() if k.startswith("ZOLL_")})


def start_zoll(env: dict[str, str]) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [ZOLL, "serve", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    await_serving(proc)
    return Server("zoll", f"http://127.0.0.1:{port}", proc)


# -- measuring -----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def timed_gets(
    http: aiohttp.ClientSession, urls: list[str], check: Callable[[Any], None] | None = None
) -> list[float]:
    """Milliseconds per GET, one at a time (latency, not throughput)."""
    out = []
    for url in urls:
        start = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: {resp.status} {body[:300]!r}")
        out.append((time.perf_counter() - start) * 1000)
        if check is not None:
            check(json.loads(body))
    return out


async def push_once(http: aiohttp.ClientSession, base: str, i: int) -> float:
    """A whole small push (config, layer, manifest): milliseconds."""
    start = time.perf_counter()
    config = json.dumps({"bench": "scale", "n": i}).encode()
    layer = os.urandom(4096)
    descs = []
    for data, media in ((config, mt.OCI_CONFIG), (layer, mt.OCI_LAYER_GZIP)):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        async with http.post(
            f"{base}/v2/scale/pushes/blobs/uploads/?digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"blob push: {resp.status} {await resp.text()}")
        descs.append({"mediaType": media, "digest": digest, "size": len(data)})
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": descs[0], "layers": descs[1:]}
    ).encode()
    async with http.put(
        f"{base}/v2/scale/pushes/manifests/p{i}",
        data=manifest,
        headers={"Content-Type": mt.OCI_MANIFEST},
    ) as resp:
        if resp.status != 201:
            raise RuntimeError(f"manifest push: {resp.status} {await resp.text()}")
    return (time.perf_counter() - start) * 1000


async def run_cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Seconds a `zoll` command takes (start-up included), and what it printed."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        ZOLL, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"zoll {' '.join(args)} failed: {out.decode(errors='replace')[-2000:]}")
    return seconds, out.decode(errors="replace")


@dataclass
class Result:
    scale: int
    storage: str
    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def pick(rng: random.Random, n: int, k: int) -> list[int]:
    return [rng.randrange(n) for _ in range(k)]


STATS_FLUSH = 11.0
"""Seconds for PostgreSQL's backends to publish their counters once idle: a backend that
published less than a second ago waits PGSTAT_IDLE_INTERVAL (10 s) for the next."""


async def db_blocks(pool: asyncpg.Pool) -> tuple[int, int]:
    """Buffer hits and reads of the bench database so far, once the counters are out."""
    await asyncio.sleep(STATS_FLUSH)
    row = await pool.fetchrow(
        "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()"
    )
    assert row is not None
    return int(row["blks_hit"]), int(row["blks_read"])


async def listings(
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    base: str,
    shape: Shape,
    manifests: dict[str, str],
    rounds: int,
    out: Result,
) -> None:
    rng = random.Random(shape.scale)
    big = list(shape.big_manifests())
    subject = manifests["0"]
    # Every listing starts where at least a whole page follows: at 1× the big repository
    # holds only 100 images and the registry 100 repositories, so a random start gave
    # half-full pages there and full ones beyond (a growth that was the bench's).
    tag_names = sorted(f"t{m:07d}-{k}" for m in big for k in range(BIG_ALIASES))[:-PAGE]
    image_digests = sorted(manifests[str(m)] for m in big)[:-PAGE]

    def page_of(limit: int) -> Callable[[Any], None]:
        def check(doc: Any) -> None:
            items = next(v for v in doc.values() if isinstance(v, list))
            if len(items) != limit:
                raise RuntimeError(f"a page of {len(items)} items, asked for {limit}")

        return check

    cases: dict[str, tuple[list[str], Callable[[Any], None] | None]] = {
        "catalog": (
            [
                f"{base}/v2/_catalog?n={PAGE}&last={shape.repo(j)}"
                for j in pick(rng, shape.repositories - PAGE - 1, rounds)
            ],
            page_of(PAGE),
        ),
        "tags": (
            [
                f"{base}/v2/{BIG}/tags/list?n={PAGE}&last={rng.choice(tag_names)}"
                for _ in range(rounds)
            ],
            page_of(PAGE),
        ),
        # 10 referrers at 1× (1,000 at 100×): the first page of 10 is whole at every scale.
        "referrers": (
            [f"{base}/v2/{BIG}/referrers/{subject}?n={REFERRER_PAGE}"] * rounds,
            page_of(REFERRER_PAGE),
        ),
        "image status": (
            [
                f"{base}/api/v1/images/{shape.repo(shape.repo_of_manifest(m))}@{manifests[str(m)]}/status"
                for m in pick(rng, shape.manifests, rounds)
            ],
            None,
        ),
        "image listing": (
            [
                f"{base}/api/v1/repositories/{BIG}/images?limit={PAGE}&after={rng.choice(image_digests)}"
                for _ in range(rounds)
            ],
            page_of(PAGE),
        ),
        "repository listing": (
            [
                f"{base}/api/v1/repositories?limit={PAGE}&after={shape.repo(j)}"
                for j in pick(rng, shape.repositories - PAGE - 1, rounds)
            ],
            page_of(PAGE),
        ),
        # The first page holds the big repository, whose tags and images are counted.
        "repository listing, first page": (
            [f"{base}/api/v1/repositories?limit={PAGE}"] * rounds,
            page_of(PAGE),
        ),
        "inclusion proof": (
            [
                f"{base}/api/v1/log/proof/inclusion?index={k}"
                for k in pick(rng, shape.log_entries, rounds)
            ],
            None,
        ),
        "consistency proof": (
            [
                f"{base}/api/v1/log/proof/consistency?old={k + 1}"
                for k in pick(rng, shape.log_entries, rounds)
            ],
            None,
        ),
    }
    for name, (urls, check) in cases.items():
        await timed_gets(http, urls[:5], check)  # warm the connection and caches
        hit0, read0 = await db_blocks(pool)
        ms = await timed_gets(http, urls, check)
        hit1, read1 = await db_blocks(pool)
        # Pages touched per request: the scale-free measure of O(page) (time also
        # carries where the pages came from, and the machine's load).
        blocks = (hit1 - hit0 + read1 - read0) / len(urls)
        out.values[f"{name} p50 ms"] = pct(ms, 0.5)
        out.values[f"{name} p99 ms"] = pct(ms, 0.99)
        out.values[f"{name} db blocks/request"] = blocks
        out.values[f"{name} db blocks read/request"] = (read1 - read0) / len(urls)
        print(
            f"    {name:<22} p50 {pct(ms, 0.5):8.2f} ms   p99 {pct(ms, 0.99):8.2f} ms"
            f"   {blocks:8.1f} db blocks ({(read1 - read0) / len(urls):.1f} read)",
            flush=True,
        )
    async with http.get(f"{base}/v2/{BIG}/referrers/{subject}?n=100") as resp:
        out.notes["referrers in first page"] = len((await resp.json())["manifests"])


async def verifiers(
    http: aiohttp.ClientSession,
    base: str,
    env: dict[str, str],
    pool: asyncpg.Pool,
    shape: Shape,
    work: Path,
    out: Result,
) -> None:
    """`zoll log verify` between the checkpoint before and after 1,000 appends, and
    `zoll audit verify` in full and from the last verified head after 1,000 events."""
    from attest.keys import PrivateKey
    from attest.tlog.store import TransparencyLog

    async with http.get(f"{base}/api/v1/log/checkpoint") as resp:
        (work / "old.checkpoint").write_text(await resp.text())
    async with http.get(f"{base}/api/v1/keys") as resp:
        (work / "keys.json").write_text(await resp.text())
    log = TransparencyLog(pool, PrivateKey.generate(), ORIGIN)
    for part in chunks(1000, 500):
        await log.append(
            [
                admission_record(
                    subject_digest=f"sha256:{k:064x}",
                    repository="scale/more",
                    decision="admitted",
                    reasons=["bench"],
                    decided_at=datetime.now(UTC),
                )
                for k in part
            ]
        )
    async with http.get(f"{base}/api/v1/log/proof/consistency?old={shape.log_entries}") as resp:
        (work / "proof.json").write_text(await resp.text())
    seconds, _ = await run_cli(
        env,
        "log",
        "verify",
        "--checkpoint",
        str(work / "old.checkpoint"),
        "--proof",
        str(work / "proof.json"),
        "--key",
        str(work / "keys.json"),
        "--origin",
        ORIGIN,
    )
    out.values["zoll log verify s"] = seconds
    print(f"    zoll log verify        {seconds:8.2f} s", flush=True)

    seconds, text = await run_cli(env, "audit", "verify", "--full")
    out.values["zoll audit verify (full) s"] = seconds
    print(f"    zoll audit verify --full {seconds:6.2f} s  {text.strip()[:80]}", flush=True)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT seq, hash FROM audit_head")
    await fill_audit(pool, 1000, int(row["seq"]), bytes(row["hash"]))
    seconds, text = await run_cli(env, "audit", "verify")
    out.values["zoll audit verify (incremental) s"] = seconds
    # The same without the CLI's start-up: what grows, if anything, is the verification.
    from registry import audit

    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT seq, hash FROM audit_head")
        await fill_audit(pool, 1000, int(row["seq"]), bytes(row["hash"]))
        start = time.perf_counter()
        report = await audit.verify_chain(conn, since=await audit.verified_head(conn))
        out.values["audit verify +1000 in-process ms"] = (time.perf_counter() - start) * 1000
        assert report.ok and report.events == 1000, report.to_json()
    print(f"    zoll audit verify (+1000) {seconds:5.2f} s  {text.strip()[:80]}", flush=True)


# -- garbage collection ------------------------------------------------------------


class CountingDriver:
    """The registry's driver with every call counted: by driver method, by S3 operation
    when the driver sends them through one `call` method, and objects listed."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.listed = 0
        s3 = getattr(getattr(inner, "inner", None), "call", None)
        if s3 is not None:
            s3_driver = inner.inner

            async def counted(operation: Any, **kwargs: Any) -> Any:
                # the driver passes the client's coroutine: count it by its method's name
                self.calls[f"s3 {getattr(operation, '__qualname__', operation)}"] += 1
                return await s3(operation, **kwargs)

            s3_driver.call = counted

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name in ("list_blobs", "list_uploads"):

            async def listing(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                self.calls[name] += 1
                async for item in target(*args, **kwargs):
                    self.listed += 1
                    yield item

            return listing
        if callable(target) and not name.startswith("_"):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return target(*args, **kwargs)

            return counted
        return target


async def gc_child(deep: bool) -> None:
    """Run one collection on the service's configuration; print a JSON report. Its peak
    memory is VmHWM, this process's own: `ru_maxrss` carries the bench's peak across the
    fork (the filled digests, 445 MiB at 100×), which is not GC's."""
    from registry.gc import collect
    from registry.service import close_registry, open_registry

    registry = await open_registry(bench_config(dict(os.environ)), run_migrations=False)
    counting = CountingDriver(registry.driver)
    registry.driver = counting  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        report = await collect(registry, grace=GRACE, deep=deep)
        seconds = time.perf_counter() - start
    finally:
        await close_registry(registry)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "report": report.to_json(),
                "calls": dict(counting.calls),
                "listed": counting.listed,
                "max_rss_mib": high_water_kib() / 1024,
            }
        )
    )


async def garbage_collection(
    http: aiohttp.ClientSession, base: str, env: dict[str, str], storage: str, out: Result
) -> None:
    """The routine collection (what runs every gc.interval), then a deep pass (what
    also lists the whole store, every gc.deep_sweep_interval), each with pushes going on."""

    async def paced(i: int) -> float:
        """One push, then a pause to PUSH_INTERVAL: a steady load, the same idle and
        during GC, that does not itself grow a long-running GC's work."""
        ms = await push_once(http, base, i)
        await asyncio.sleep(max(0.0, PUSH_INTERVAL - ms / 1000))
        return ms

    async def collection(
        deep: bool, first_push: int, starts: list[float] | None = None
    ) -> tuple[dict[str, Any], list[float]]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.scale", "--gc-child", *(["--deep"] if deep else []),
            env=env, stdout=subprocess.PIPE,
        )  # fmt: skip
        waiting = asyncio.ensure_future(child.communicate())
        during: list[float] = []
        while not waiting.done():
            if starts is not None:
                starts.append(time.time())
            during.append(await paced(first_push + len(during)))
        raw, _ = await waiting
        if child.returncode != 0:
            raise RuntimeError("the GC process failed")
        found: dict[str, Any] = json.loads(raw.decode().strip().splitlines()[-1])
        return found, during

    idle = [await paced(i) for i in range(5)]
    idle = [await paced(i) for i in range(IDLE_PUSHES)]
    starts: list[float] = []
    found, during = await collection(False, 1000, starts)
    # idle again after GC: the baseline then spans the same stretch of the machine's life
    idle += [await paced(i) for i in range(100_000, 100_000 + IDLE_PUSHES)]
    report, calls = found["report"], found["calls"]
    collected = max(1, report["blobs"] + report["orphaned_objects"])
    driver_calls = sum(v for k, v in calls.items() if not k.startswith("s3 "))
    out.values["GC s"] = found["seconds"]
    out.values["GC blobs collected"] = report["blobs"]
    out.values["GC driver calls/blob"] = driver_calls / collected
    if storage == "s3":
        out.values["GC S3 requests/blob"] = s3_requests(calls, found["listed"]) / collected
    out.values["GC peak RSS MiB"] = found["max_rss_mib"]
    out.values["push p99 idle ms"] = pct(idle, 0.99)
    out.values["push p99 during GC ms"] = pct(during, 0.99)
    out.values["push p50 idle ms"] = pct(idle, 0.5)
    out.values["push p50 during GC ms"] = pct(during, 0.5)
    out.values["GC rested s"] = report["rested"]
    out.notes["pushes during GC"] = len(during)
    out.notes["gc"] = found
    out.notes["slowest pushes by GC phase"] = slow_by_phase(found["report"], starts, during)
    print(
        f"    GC {found['seconds']:.1f} s: {report['manifests']} manifests, "
        f"{report['links']} links, {report['blobs']} blobs, "
        f"{report['orphaned_objects']} orphans; calls {calls}, "
        f"listed {found['listed']}, peak RSS {found['max_rss_mib']:.0f} MiB",
        flush=True,
    )
    print(
        f"    push p99 idle {pct(idle, 0.99):.1f} ms, during GC {pct(during, 0.99):.1f} ms "
        f"({len(during)} pushes)",
        flush=True,
    )
    print(f"    by sweep: {out.notes['slowest pushes by GC phase']}", flush=True)
    deep, during_deep = await collection(True, 200_000)
    out.values["deep pass s"] = deep["report"]["seconds"].get("deep", math.nan)
    out.values["deep GC objects listed"] = deep["listed"]
    out.values["push p99 during deep GC ms"] = pct(during_deep, 0.99)
    out.notes["gc deep"] = deep
    print(
        f"    deep GC {deep['seconds']:.1f} s (listing pass {out.values['deep pass s']:.1f} s,"
        f" {deep['listed']} objects listed); push p99 during it "
        f"{pct(during_deep, 0.99):.1f} ms ({len(during_deep)} pushes)",
        flush=True,
    )


def slow_by_phase(
    report: dict[str, Any], starts: list[float], during: list[float]
) -> dict[str, Any]:
    """Which sweep was running when the slowest 1 % of the pushes started, and each
    sweep's push p99: the report's `seconds`, in the order the sweeps ran, laid end to end
    from its start (a push before the lock was taken counts to the first)."""
    start = datetime.fromisoformat(report["started"]).timestamp()
    ends = []
    for phase, seconds in report["seconds"].items():
        start += seconds
        ends.append((start, phase))

    def phase_of(t: float) -> str:
        return next((phase for end, phase in ends if t < end), "after")

    phases = [phase_of(t) for t in starts]
    slowest = sorted(range(len(during)), key=lambda i: during[i])[-max(1, len(during) // 100) :]
    return {
        "slowest 1%": dict(Counter(phases[i] for i in slowest)),
        "p99 ms": {
            phase: pct([ms for ms, p in zip(during, phases, strict=True) if p == phase], 0.99)
            for phase in dict.fromkeys(phases)
        },
        "pushes": dict(Counter(phases)),
    }


def s3_requests(calls: dict[str, int], listed: int) -> int:
    """S3 requests of one collection: those sent through the driver's `call`, and the
    listing pages, which go through the paginator (1,000 keys a page)."""
    sent = sum(v for k, v in calls.items() if k.startswith("s3 "))
    return sent + calls.get("list_blobs", 0) * max(1, math.ceil(listed / 1000))


# -- one scale ---------------------------------------------------------------------


PARTS = ("listings", "verifiers", "gc")


async def tiles_published(pool: asyncpg.Pool, shape: Shape, out: Result) -> None:
    """Wait until the started service has published the filled log as tiles, as a running
    registry would have: a first start on a log without tiles writes them all in the
    background, and measuring meanwhile measured that (seen in pg_stat_activity)."""
    start = time.perf_counter()
    while True:
        size = await pool.fetchval("SELECT max(size) FROM tlog_tiles")
        if size is not None and size >= shape.log_entries:
            break
        if time.perf_counter() - start > 3600:
            raise RuntimeError(f"log tiles not published after an hour (size {size})")
        await asyncio.sleep(0.5)
    out.values["tile backfill s"] = time.perf_counter() - start
    print(f"    log tiles published in {out.values['tile backfill s']:.1f} s", flush=True)


async def one_scale(
    scale: int,
    storage: str,
    dsn_admin: str,
    root: Path,
    s3: EmbeddedSeaweed | None,
    rounds: int,
    parts: tuple[str, ...] = PARTS,
) -> Result:
    from registry.service import close_registry, open_registry
    from tests.support.postgres import fresh_database

    shape = Shape(scale)
    work = root / f"x{scale}"
    work.mkdir()
    dsn = await fresh_database(dsn_admin)
    env = service_env(work, dsn, storage, s3)
    out = Result(scale, storage)
    print(
        f"== {scale}× on {storage}: {shape.repositories} repositories, "
        f"{shape.manifests} manifests, {shape.blobs} blobs, {shape.referrers} referrers, "
        f"{shape.log_entries} log entries, "
        f"{shape.audit_events} audit events",
        flush=True,
    )
    registry = await open_registry(bench_config(env))
    try:
        start = time.perf_counter()
        if storage == "filesystem":
            # The service's driver without fsync: the fill is not what is measured.
            fill_driver = FilesystemDriver(work / "blobs", fsync=False)
            await fill_driver.start()
            put = fill_driver.put
        else:
            put = registry.driver.put
        digests, keys, rate = await store_blobs(shape, put, 64 if storage == "s3" else 16)
        out.values["fill blobs/s"] = rate
        t = time.perf_counter()
        manifests = await fill_database(registry.pool, shape, digests, keys)
        del digests, keys
        await fill_log(registry.pool, shape, manifests)
        await fill_audit(registry.pool, shape.audit_events)
        # The fill's deltas of repository counts, folded as the workers would within
        # seconds of starting (and before VACUUM, which then clears their dead rows).
        await fold_counts(registry.pool)
        async with registry.pool.acquire() as conn:
            # As autovacuum would have by now: statistics, and the visibility map that lets
            # index-only scans skip the heap (measuring while it runs would be noise).
            await conn.execute("VACUUM (ANALYZE)")
        print(
            f"    filled in {time.perf_counter() - start:.0f} s "
            f"(rows {time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    finally:
        await close_registry(registry)
    import asyncpg as _pg

    pool = await _pg.create_pool(dsn, min_size=1, max_size=2)
    serve = start_zoll(env)
    try:
        await tiles_published(pool, shape, out)
        async with aiohttp.ClientSession() as http:
            if "listings" in parts:
                await listings(http, pool, serve.base, shape, manifests, rounds, out)
            if "verifiers" in parts:
                await verifiers(http, serve.base, env, pool, shape, work, out)
            if "gc" in parts:
                await garbage_collection(http, serve.base, env, storage, out)
    finally:
        serve.stop()
        await pool.close()
    return out


# -- reporting ---------------------------------------------------------------------


def growth_table(results: list[Result]) -> str:
    first, last = results[0], results[-1]
    head = (
        "| measure | "
        + " | ".join(f"{r.scale}×" for r in results)
        + f" | {last.scale}×/{first.scale}× |"
    )
    lines = [head, "|" + " --- |" * (len(results) + 2)]
    for key in first.values:
        cells = [f"{r.values.get(key, math.nan):.4g}" for r in results]
        a, b = first.values.get(key, math.nan), last.values.get(key, math.nan)
        ratio = b / a if a else math.nan
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    from tests.support.postgres import running_postgres

    scales = [int(s) for s in args.scales.split(",")]
    parts = tuple(p for p in args.parts.split(",") if p)
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {PARTS}")
    root = Path(tempfile.mkdtemp(prefix="zoll-scale-", dir=args.workdir))
    s3: EmbeddedSeaweed | None = None
    results = []
    try:
        if args.storage == "s3":
            s3 = EmbeddedSeaweed(root / "seaweed")
            s3.start()
        with running_postgres() as dsn:
            for scale in scales:
                results.append(
                    await one_scale(scale, args.storage, dsn, root, s3, args.rounds, parts)
                )
                print(growth_table(results), flush=True)
                if args.json:
                    Path(args.json).write_text(
                        json.dumps(
                            [
                                {
                                    "scale": r.scale,
                                    "storage": r.storage,
                                    "values": r.values,
                                    "notes": r.notes,
                                }
                                for r in results
                            ],
                            indent=1,
                            default=str,
                        )
                    )
                shutil.rmtree(root / f"x{scale}", ignore_errors=True)
    finally:
        if s3 is not None:
            s3.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nscale growth on {args.storage} (machine: 2 CPUs shared with other sessions)")
    print(growth_table(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scales", default="1,10,100", help="multiples of the base (1,10,100)")
    parser.add_argument("--storage", choices=("filesystem", "s3"), default="filesystem")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="what to measure (listings,verifiers,gc)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1000,
        help="requests per listing measured (p99: the 10th slowest)",
    )
    parser.add_argument("--workdir", help="where to keep the data (default: the temp folder)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--gc-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deep", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    # A stopped bench still stops the servers it started (the context managers run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if parsed.gc_child:
        asyncio.run(gc_child(deep=parsed.deep))
    else:
        asyncio.run(main(parsed))

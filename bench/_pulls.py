"""Pulls measured the way operators pull: Zoll and distribution up side by side, measured
in interleaved rounds (used by `bench/registry.py`).

Single pulls on this shared 2-CPU VM swing by ±40 %, so one pull per side says little. Both
servers run at the same time, hold the same content, and every round measures each side
once, the order alternating from round to round (Zoll first, then distribution first, …);
the tables give the median over the rounds and the spread (min–max of the per-round
figures), and the ratio of the medians. Per round and side:

- one 1 GiB blob with curl (MB/s);
- a rollout pulling one layer: `--clients` (64) concurrent clients each GET the same
  `--layer-mib` (100) MiB blob once: aggregate MB/s and the p99 latency of the transfers;
- a rollout pulling many small layers: the same number of clients GET `--small-blobs`
  (6,400) distinct 10–100 KiB blobs, each once: req/s, MB/s and p99.

The concurrent client is `curl --parallel` (libcurl's multi interface in one C thread,
reusing keep-alive connections, bodies to /dev/null): it costs far less CPU than a Python
client would on this 2-CPU machine, and costs the same for both sides. `-L` follows
distribution's (and with `--s3-redirect`, Zoll's) redirects to S3, so latencies include
them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp

SMALL_MIN, SMALL_MAX = 10 << 10, 100 << 10


def small_blob(index: int) -> bytes:
    """The `index`-th small blob, the same bytes for every server and run."""
    rng = random.Random(index)
    return rng.randbytes(rng.randint(SMALL_MIN, SMALL_MAX))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _push_small(base: str, repo: str, count: int, parallel: int = 16) -> list[str]:
    """Push `count` small blobs with POST + PUT (the flow both servers take)."""
    digests: list[str] = [""] * count
    queue = iter(range(count))

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        data = small_blob(index)
        digest = _digest(data)
        async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as resp:
            assert resp.status == 202, await resp.text()
            location = resp.headers["Location"]
        if not location.startswith("http"):
            location = base + location
        sep = "&" if "?" in location else "?"
        async with session.put(
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 201, await resp.text()
        digests[index] = digest

    async def worker(session: aiohttp.ClientSession) -> None:
        for index in queue:
            await one(session, index)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(parallel)))
    return digests


def push_small_blobs(base: str, repo: str, count: int) -> list[str]:
    return asyncio.run(_push_small(base, repo, count))


@dataclass
class Batch:
    """One concurrent run: wall time, bytes and per-transfer latencies."""

    seconds: float
    bytes: int
    latencies: list[float]

    @property
    def mb_s(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def req_s(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def curl_parallel(urls: list[str], clients: int) -> Batch:
    """GET every URL once with `clients` transfers in flight (libcurl multi, one thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".curl") as config:
        for url in urls:
            config.write(f'url = "{url}"\noutput = "/dev/null"\n')
        config.flush()
        started = time.perf_counter()
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "-L",
                "--fail",
                "--parallel",
                "--parallel-immediate",
                "--parallel-max",
                str(clients),
                "-w",
                "%{http_code} %{size_download} %{time_total}\\n",
                "-K",
                config.name,
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
    lines = out.stdout.split()
    assert out.returncode == 0 and len(lines) == 3 * len(urls), (out.returncode, out.stderr)
    codes, sizes, times = lines[0::3], lines[1::3], lines[2::3]
    assert all(c == "200" for c in codes), sorted(set(codes))
    return Batch(seconds, sum(int(s) for s in sizes), [float(t) for t in times])


@dataclass
class Side:
    """One server's seeded content for the pull rounds."""

    name: str
    base: str
    repo: str
    big: str
    layer: str
    small: list[str]
    results: dict[str, list[float]] = field(default_factory=dict)

    def url(self, digest: str) -> str:
        return f"{self.base}/v2/{self.repo}/blobs/{digest}"

    def record(self, key: str, value: float) -> None:
        self.results.setdefault(key, []).append(value)


def _measures(
    clients: int, big_mib: int
) -> Iterator[tuple[str, Callable[[Side], dict[str, float]]]]:
    def single(side: Side) -> dict[str, float]:
        started = time.perf_counter()
        batch = curl_parallel([side.url(side.big)], 1)
        seconds = time.perf_counter() - started
        assert batch.bytes == big_mib << 20
        return {f"pull {big_mib} MiB, 1 client MB/s": batch.bytes / 1e6 / seconds}

    def one_layer(side: Side) -> dict[str, float]:
        batch = curl_parallel([side.url(side.layer)] * clients, clients)
        return {
            f"{clients} clients × same layer MB/s": batch.mb_s,
            f"{clients} clients × same layer p99 ms": batch.p99_ms,
        }

    def small(side: Side) -> dict[str, float]:
        batch = curl_parallel([side.url(d) for d in side.small], clients)
        return {
            f"{clients} clients × small blobs req/s": batch.req_s,
            f"{clients} clients × small blobs MB/s": batch.mb_s,
            f"{clients} clients × small blobs p99 ms": batch.p99_ms,
        }

    yield "single", single
    yield "layer", one_layer
    yield "small", small


def interleaved_rounds(
    ours: Side,
    peer: Side,
    rounds: int,
    clients: int,
    big_mib: int,
    log: Callable[[str], None],
    others: Sequence[Side] = (),
) -> None:
    """Each measure, each round: both sides one after the other, who goes first alternating.
    `others` (references, such as distribution redirecting to S3 beside distribution
    proxying) join the rotation: each round starts one side later, every other round in
    reverse, so every side takes every place."""
    measures = list(_measures(clients, big_mib))
    sides = [ours, peer, *others]
    for n in range(rounds):
        if others:
            turned = sides[n % len(sides) :] + sides[: n % len(sides)]
            order: Sequence[Side] = turned if n % 2 == 0 else turned[::-1]
        else:
            order = (ours, peer) if n % 2 == 0 else (peer, ours)
        for _name, measure in measures:
            for side in order:
                for key, value in measure(side).items():
                    side.record(key, value)
        log(
            f"round {n + 1}/{rounds}, Zoll / distribution: "
            + ", ".join(
                f"{ours.results[key][-1]:,.0f} / {peer.results[key][-1]:,.0f} {key}"
                for key in ours.results
                if not key.endswith(" ms")
            )
        )


def _lower_is_better(key: str) -> bool:
    return key.endswith(" ms")


def table(ours: Side, peer: Side, others: Sequence[Side] = ()) -> str:
    """Median and min–max per side, ratio of medians (>1× is better for Zoll; for
    latencies the ratio is inverted so it reads the same way); `others` get a median and
    a ratio column each after the peer's."""
    rows = [
        f"| measure | {peer.name} median (min–max) | Zoll median (min–max) "
        f"| Zoll / {peer.name} |" + "".join(f" {o.name} | Zoll / {o.name} |" for o in others),
        "| --- | ---: | ---: | ---: |" + " ---: | ---: |" * len(others),
    ]

    def ratio(key: str, mine: float, theirs: float) -> str:
        value = theirs / mine if _lower_is_better(key) else mine / theirs
        return f"{value:.2f}×{' (dist./Zoll)' if _lower_is_better(key) else ''}"

    for key, values in ours.results.items():
        theirs = peer.results[key]
        mine, peers = statistics.median(values), statistics.median(theirs)
        rows.append(
            f"| {key} | {peers:,.1f} ({min(theirs):,.1f}–{max(theirs):,.1f}) "
            f"| {mine:,.1f} ({min(values):,.1f}–{max(values):,.1f}) | {ratio(key, mine, peers)} |"
            + "".join(
                f" {statistics.median(o.results[key]):,.1f} "
                f"| {ratio(key, mine, statistics.median(o.results[key]))} |"
                for o in others
            )
        )
    return "\n".join(rows)

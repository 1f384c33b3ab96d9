"""Benchmark: OSV import throughput and memory, and matching, against simple peers.

Run: `python -m bench.vuln_import [--records 100000]`. It writes a Debian-sized
synthetic `all.zip`, imports it into an embedded PostgreSQL, and prints side by side:
- import records/s and peak RSS growth vs. the peer "json.load every record into a
  list" (what a naive importer holds in memory),
- re-import (idempotent, nothing changes) records/s,
- matching this machine's installed dpkg packages: store vs. offline streaming,
- dpkg version comparison: ours (in-process) vs. `dpkg --compare-versions`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import asyncpg
import pgserver

from policy.packages import Package
from policy.vuln import VulnStore, import_osv, match_offline
from policy.vuln.versions import dpkg
from registry.db.migrate import migrate


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def installed(limit: int = 2000) -> list[Package]:
    out = []
    for block in Path("/var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields and "Version" in fields:
            name, version = fields["Package"], fields["Version"]
            source = fields.get("Source", "").split(" ")[0] or None
            out.append(
                Package("Debian", name, version, f"pkg:deb/debian/{name}@{version}", "12", source)
            )
    return out[:limit]


def write_export(path: Path, count: int, packages: list[Package]) -> None:
    rng = random.Random(7)
    names = [p.advisory_name for p in packages] + [f"synthetic-{i}" for i in range(5000)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            rid = f"DEBIAN-CVE-2099-{i:06d}"
            record = {
                "id": rid,
                "modified": "2024-05-01T00:00:00Z",
                "upstream": [rid.removeprefix("DEBIAN-")],
                "details": "Synthetic advisory for benchmarking. " * rng.randint(1, 20),
                "affected": [
                    {
                        "package": {"ecosystem": f"Debian:{rel}", "name": rng.choice(names)},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [
                                    {"introduced": "0"},
                                    {"fixed": f"{rng.randint(0, 9)}.{i}-1"},
                                ],
                            }
                        ],
                    }
                    for rel in ("11", "12", "13")
                ],
            }
            zf.writestr(f"{rid}.json", json.dumps(record))


def naive_peer(path: Path) -> tuple[float, float]:
    """Peer: decode every record into one list (no DB), as a naive importer would."""
    before, start = rss_mib(), time.perf_counter()
    with zipfile.ZipFile(path) as zf:
        records = [json.loads(zf.read(name)) for name in zf.namelist()]
    elapsed = time.perf_counter() - start
    assert records
    return len(records) / elapsed, rss_mib() - before


async def run(count: int) -> None:
    packages = installed()
    with tempfile.TemporaryDirectory(prefix="zoll-bench-") as folder:
        export = Path(folder) / "all.zip"
        write_export(export, count, packages)
        size = export.stat().st_size / 2**20
        print(f"export: {count} records, {size:.1f} MiB zip")
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="stop")
        try:
            pool = await asyncpg.create_pool(server.get_uri(), min_size=1, max_size=2)
            async with pool.acquire() as conn:
                await migrate(conn)  # type: ignore[arg-type]
            before = rss_mib()
            summary = await import_osv(pool, export)
            grew = rss_mib() - before
            rate = summary.seen / summary.seconds
            again = await import_osv(pool, export)
            assert not again.changed
            store = VulnStore(pool)
            t0 = time.perf_counter()
            stored = await store.match(packages)
            t_store = time.perf_counter() - t0
            t0 = time.perf_counter()
            offline = await match_offline(packages, export)
            t_offline = time.perf_counter() - t0
            assert {(f.id, f.package.name) for f in stored} == {
                (f.id, f.package.name) for f in offline
            }
            await pool.close()
        finally:
            server.cleanup()
        peer_rate, peer_grew = naive_peer(export)

    print(f"import:    {rate:9.0f} records/s, peak RSS +{grew:7.1f} MiB")
    print(f"peer load: {peer_rate:9.0f} records/s, peak RSS +{peer_grew:7.1f} MiB (json.load all)")
    print(f"  ratio memory peer/ours: {peer_grew / max(grew, 0.1):.1f}x")
    print(f"re-import: {again.seen / again.seconds:9.0f} records/s (no changes)")
    print(
        f"match {len(packages)} packages: store {t_store * 1000:.0f} ms, offline stream"
        f" {t_offline * 1000:.0f} ms ({len(stored)} findings), ratio {t_offline / t_store:.1f}x"
    )
    versions = [p.version for p in packages][:300]
    pairs = list(zip(versions, reversed(versions), strict=True))
    t0 = time.perf_counter()
    for a, b in pairs:
        dpkg.compare(a, b)
    ours = (time.perf_counter() - t0) / len(pairs)
    t0 = time.perf_counter()
    for a, b in pairs[:100]:
        subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False)
    theirs = (time.perf_counter() - t0) / 100
    print(
        f"dpkg compare: ours {ours * 1e6:.1f} µs, dpkg CLI {theirs * 1e6:.0f} µs,"
        f" ratio {theirs / ours:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    asyncio.run(run(parser.parse_args().records))


if __name__ == "__main__":
    main()

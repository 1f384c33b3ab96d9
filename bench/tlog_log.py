"""Transparency log: appends and proofs, Zoll side by side with simpler peers, on a real
embedded PostgreSQL.

    PYTHONPATH=. .venv/bin/python bench/tlog_log.py [APPENDS] [TREE_SIZE]

1. APPENDS concurrent single-entry appends (the pipeline's pattern): Zoll's group commit,
   the same code with one transaction per append, and a textbook peer (lock the table,
   insert max(idx)+1, no tree). Prints entries/s and ratios.
2. Inclusion proofs in a tree of TREE_SIZE entries: Zoll reads O(log n) stored subtree
   hashes; the peer (a log without stored subtrees) reads every leaf hash and computes
   the path. Prints ms per proof and the ratio.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime

import asyncpg

from attest.keys import PrivateKey
from attest.tlog.entries import LogRecord, admission_record
from attest.tlog.hashing import leaf_hash, node_hash
from attest.tlog.store import TransparencyLog
from registry.oci.digest import Digest
from tests.support.postgres import fresh_database, running_postgres


def record(n: int) -> LogRecord:
    return admission_record(
        subject_digest=str(Digest.of(n.to_bytes(8, "big"))),
        repository="opendesk/nextcloud",
        decision="admitted",
        reasons=["hardening criteria met", "provenance verified"],
        decided_at=datetime.now(UTC),
    )


async def peer_append(pool: asyncpg.Pool, rec: LogRecord) -> int:
    data = rec.leaf_data()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE peer_leaves IN EXCLUSIVE MODE")
        index: int = await conn.fetchval(
            "INSERT INTO peer_leaves (idx, leaf_hash, body) "
            "SELECT coalesce(max(idx) + 1, 0), $1, $2 FROM peer_leaves RETURNING idx",
            leaf_hash(data),
            data,
        )
    return index


def peer_path(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 9162 PATH over all leaf hashes, as a log without stored subtrees must."""

    def mth(h: list[bytes]) -> bytes:
        while len(h) > 1:
            h = [node_hash(h[i], h[i + 1]) if i + 1 < len(h) else h[i] for i in range(0, len(h), 2)]
        return h[0]

    out: list[bytes] = []
    lo, hi = 0, len(hashes)
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m - lo < k:
            out.append(mth(hashes[lo + k : hi]))
            hi = lo + k
        else:
            out.append(mth(hashes[lo : lo + k]))
            lo += k
    return list(reversed(out))


async def appends(dsn: str, n: int) -> None:
    key = PrivateKey.generate()
    rows = []
    for label, batch in (("zoll, group commit", 512), ("zoll, 1 txn/append", 1)):
        db = await fresh_database(dsn)
        async with asyncpg.create_pool(db, min_size=4, max_size=4) as pool:
            log = TransparencyLog(pool, key, "bench.zoll.example/log", max_batch=batch)
            start = time.perf_counter()
            await asyncio.gather(*(log.append([record(i)]) for i in range(n)))
            rows.append((label, n / (time.perf_counter() - start)))
            assert await log.check() == n
    db = await fresh_database(dsn)
    async with asyncpg.create_pool(db, min_size=4, max_size=4) as pool:
        await pool.execute(
            "CREATE TABLE peer_leaves (idx bigint PRIMARY KEY, leaf_hash bytea, body bytea)"
        )
        start = time.perf_counter()
        indexes = await asyncio.gather(*(peer_append(pool, record(i)) for i in range(n)))
        rows.append(("peer: lock + max(idx)+1", n / (time.perf_counter() - start)))
        assert sorted(indexes) == list(range(n))
    peer_rate = rows[-1][1]
    print(f"{n} concurrent appends{'':<14}{'entries/s':>12}{'vs peer':>10}")
    for label, rate in rows:
        print(f"  {label:<32}{rate:>12.0f}{rate / peer_rate:>10.2f}")


async def proofs(dsn: str, size: int, rounds: int = 20) -> None:
    db = await fresh_database(dsn)
    async with asyncpg.create_pool(db, min_size=2, max_size=2) as pool:
        log = TransparencyLog(pool, PrivateKey.generate(), "bench.zoll.example/log")
        for start in range(0, size, 512):
            await log.append([record(i) for i in range(start, min(size, start + 512))])
        picks = random.Random(1).sample(range(size), rounds)
        t0 = time.perf_counter()
        ours = [await log.inclusion_proof(i, size) for i in picks]
        zoll_ms = (time.perf_counter() - t0) / rounds * 1000
        t0 = time.perf_counter()
        for i, proof in zip(picks, ours, strict=True):
            async with pool.acquire() as conn:
                rows = await conn.fetch("SELECT leaf_hash FROM tlog_leaves ORDER BY idx")
            assert peer_path(i, [bytes(r["leaf_hash"]) for r in rows]) == list(proof.hashes)
        peer_ms = (time.perf_counter() - t0) / rounds * 1000
    print(f"inclusion proof, tree of {size}{'':<6}{'ms/proof':>12}{'vs peer':>10}")
    print(f"  {'zoll, stored subtrees':<32}{zoll_ms:>12.2f}{zoll_ms / peer_ms:>10.3f}")
    print(f"  {'peer: read all leaves':<32}{peer_ms:>12.2f}{1:>10.3f}")


async def main(n: int, size: int) -> None:
    with running_postgres() as dsn:
        await appends(dsn, n)
        await proofs(dsn, size)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 2000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 50_000,
        )
    )

"""The version of the vulnerability data: content hash plus the time it last changed.

Results record it; when it changes, images are re-evaluated. The hash covers every
OSV record (id and content hash, tombstones included) and every VEX document, so it
depends only on the data, not on how many imports it took to get there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A plain connection or one borrowed from a pool."""

EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class DataFingerprint:
    digest: str
    """`sha256:<hex>` over all records and VEX documents."""
    changed_at: datetime | None
    """When an import last changed the data (None: nothing imported yet)."""
    records: int
    vex_documents: int

    def __str__(self) -> str:
        stamp = self.changed_at.isoformat() if self.changed_at else "never"
        return f"{self.digest}@{stamp}"


async def compute(conn: Conn) -> tuple[str, int, int]:
    """Hash the whole store, streamed in id order (run inside a transaction)."""
    hasher = hashlib.sha256()
    records = documents = 0
    async for row in conn.cursor(
        "SELECT id, content_hash FROM vuln_records ORDER BY id", prefetch=10_000
    ):
        hasher.update(b"osv\0" + row["id"].encode() + b"\0" + bytes(row["content_hash"]) + b"\n")
        records += 1
    async for row in conn.cursor(
        "SELECT document_key, content_hash FROM vex_documents ORDER BY document_key"
    ):
        hasher.update(
            b"vex\0" + row["document_key"].encode() + b"\0" + row["content_hash"].encode()
        )
        documents += 1
    if not records and not documents:
        return EMPTY, 0, 0
    return "sha256:" + hasher.hexdigest(), records, documents


async def refresh(conn: Conn, import_id: int) -> DataFingerprint:
    """Recompute after an import that changed data and store it as the current state."""
    digest, records, documents = await compute(conn)
    row = await conn.fetchrow(
        """INSERT INTO vuln_state
               (singleton, fingerprint, changed_at, import_id, records, vex_documents)
           VALUES (true, $1, now(), $2, $3, $4)
           ON CONFLICT (singleton) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
               changed_at = now(), import_id = EXCLUDED.import_id,
               records = EXCLUDED.records, vex_documents = EXCLUDED.vex_documents
           RETURNING changed_at""",
        digest,
        import_id,
        records,
        documents,
    )
    assert row is not None
    return DataFingerprint(digest, row["changed_at"], records, documents)


async def current(conn: Conn) -> DataFingerprint:
    row = await conn.fetchrow(
        "SELECT fingerprint, changed_at, records, vex_documents FROM vuln_state"
    )
    if row is None:
        return DataFingerprint(EMPTY, None, 0, 0)
    return DataFingerprint(
        row["fingerprint"], row["changed_at"], row["records"], row["vex_documents"]
    )

"""The PostgreSQL store for OSV records and VEX statements, and matching against it.

Imports stream an export batch by batch (reading and parsing in a worker thread),
upsert by id with "newer `modified` wins", keep withdrawn records as tombstones and
keep an (ecosystem, package name) index for matching. Re-importing the same data
changes nothing, not even the fingerprint. Imports are serialised by an advisory
lock so the fingerprint always describes a consistent state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from policy.packages import Package, VulnFinding
from policy.vuln import fingerprint as fp
from policy.vuln.fingerprint import Conn, DataFingerprint
from policy.vuln.matching import match_advisories
from policy.vuln.osv import Advisory, normalize_name, parse_advisory
from policy.vuln.source import Limits, Record, Rejected, batches, count_entries
from policy.vuln.vex import VexDocument, VexStatement, apply_vex, load_vex

_IMPORT_LOCK = 0x5A6F_7600  # "Zov" + 0: serialises vulnerability data imports
_MAX_REJECTED_KEPT = 100


@contextlib.asynccontextmanager
async def _import_lock(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """One import at a time across processes. Zoll's pools do not reset connections on
    release, so a lock that cannot be released (a cancelled import) ends the session."""
    async with pool.acquire() as conn:
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _IMPORT_LOCK)
            yield conn
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", _IMPORT_LOCK)
            except BaseException:
                conn.terminate()
                raise


@dataclass(slots=True)
class ImportProgress:
    """Counters after each batch, for progress displays."""

    total: int | None
    seen: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    withdrawn: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class ImportSummary:
    import_id: int
    source: str
    seen: int
    inserted: int
    updated: int
    unchanged: int
    """Same id, same `modified`: nothing to do."""
    stale: int
    """Older `modified` than the stored copy: the stored copy stays."""
    withdrawn: int
    """Records that became (or arrived as) withdrawn in this import."""
    rejected: int
    rejected_examples: tuple[Rejected, ...]
    fingerprint: DataFingerprint
    changed: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "source": self.source,
            "seen": self.seen,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "withdrawn": self.withdrawn,
            "rejected": self.rejected,
            "rejected_examples": [
                {"source": r.source, "reason": r.reason} for r in self.rejected_examples
            ],
            "fingerprint": self.fingerprint.digest,
            "fingerprint_changed_at": self.fingerprint.changed_at,
            "changed": self.changed,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class VexImportSummary:
    import_id: int
    document: str
    format: str
    statements: int
    changed: bool
    fingerprint: DataFingerprint


ProgressCallback = Callable[[ImportProgress], None]

_UPSERT = """
INSERT INTO vuln_records (id, modified, withdrawn, content_hash, record, import_id)
SELECT t.id, t.modified, t.withdrawn, t.content_hash, t.record::jsonb, $6
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bytea[], $5::text[])
     AS t(id, modified, withdrawn, content_hash, record)
ON CONFLICT (id) DO UPDATE SET
    modified = EXCLUDED.modified, withdrawn = EXCLUDED.withdrawn,
    content_hash = EXCLUDED.content_hash, record = EXCLUDED.record,
    import_id = EXCLUDED.import_id, updated_at = now()
WHERE EXCLUDED.modified > vuln_records.modified
RETURNING id, (xmax = 0) AS inserted
"""

_INDEX = """
INSERT INTO vuln_affected (ecosystem, name, release, record_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT DO NOTHING
"""


def _newest_per_id(records: list[Record]) -> list[Record]:
    """Within one batch keep one copy per id (newest `modified`): one upsert per row."""
    best: dict[str, Record] = {}
    for record in records:
        current = best.get(record.advisory.id)
        if current is None or record.advisory.modified > current.advisory.modified:
            best[record.advisory.id] = record
    return list(best.values())


async def _write_batch(
    conn: Conn, records: list[Record], import_id: int, counts: ImportProgress
) -> None:
    unique = _newest_per_id(records)
    counts.stale += len(records) - len(unique)
    async with conn.transaction():
        ids = [r.advisory.id for r in unique]
        existing = {
            row["id"]: row["modified"]
            for row in await conn.fetch(
                "SELECT id, modified FROM vuln_records WHERE id = ANY($1::text[])", ids
            )
        }
        rows = await conn.fetch(
            _UPSERT,
            ids,
            [r.advisory.modified for r in unique],
            [r.advisory.withdrawn for r in unique],
            [r.content_hash for r in unique],
            [r.canonical for r in unique],
            import_id,
        )
        changed = {row["id"]: row["inserted"] for row in rows}
        for record in unique:
            rid = record.advisory.id
            if rid in changed:
                if changed[rid]:
                    counts.inserted += 1
                else:
                    counts.updated += 1
                if record.advisory.withdrawn is not None:
                    counts.withdrawn += 1
            elif record.advisory.modified < existing.get(rid, record.advisory.modified):
                counts.stale += 1
            else:
                counts.unchanged += 1
        if not changed:
            return
        await conn.execute(
            "DELETE FROM vuln_affected WHERE record_id = ANY($1::text[])", list(changed)
        )
        cols: tuple[list[str], list[str], list[str], list[str]] = ([], [], [], [])
        for record in unique:
            advisory = record.advisory
            if advisory.id not in changed or advisory.withdrawn is not None:
                continue
            for affected in advisory.affected:
                cols[0].append(affected.ecosystem)
                cols[1].append(affected.key_name)
                cols[2].append(affected.release or "")
                cols[3].append(advisory.id)
        if cols[0]:
            await conn.execute(_INDEX, *cols)


async def import_osv(
    pool: asyncpg.Pool,
    path: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    *,
    limits: Limits | None = None,
    batch_size: int = 500,
) -> ImportSummary:
    """Import an OSV export (directory tree, zip or one JSON file), streaming.

    Bad records are counted and described in the summary, not fatal; a missing path,
    an unreadable archive or a zip bomb raises (`SourceError`, `ArchiveLimitError`).
    """
    started = time.monotonic()
    total = await asyncio.to_thread(count_entries, path)
    counts = ImportProgress(total=total)
    rejected: list[Rejected] = []
    async with _import_lock(pool) as conn:
        import_id = await conn.fetchval(
            "INSERT INTO vuln_imports (kind, source) VALUES ('osv', $1) RETURNING id",
            str(path),
        )
        error: str | None = None
        try:
            async for batch in batches(path, limits, batch_size):
                records = [item for item in batch if isinstance(item, Record)]
                for item in batch:
                    if isinstance(item, Rejected):
                        counts.rejected += 1
                        if len(rejected) < _MAX_REJECTED_KEPT:
                            rejected.append(item)
                counts.seen += len(batch)
                if records:
                    await _write_batch(conn, records, import_id, counts)
                if progress is not None:
                    progress(counts)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            # Even an interrupted import may have changed data: the fingerprint must say so.
            changed = bool(counts.inserted or counts.updated)
            current = await _finish_run(conn, import_id, counts, changed, error)
    return ImportSummary(
        import_id=import_id,
        source=str(path),
        seen=counts.seen,
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        stale=counts.stale,
        withdrawn=counts.withdrawn,
        rejected=counts.rejected,
        rejected_examples=tuple(rejected),
        fingerprint=current,
        changed=changed,
        seconds=time.monotonic() - started,
    )


async def _finish_run(
    conn: Conn, import_id: int, counts: ImportProgress, changed: bool, error: str | None
) -> DataFingerprint:
    async with conn.transaction():
        current = await (fp.refresh(conn, import_id) if changed else fp.current(conn))
        await conn.execute(
            """UPDATE vuln_imports SET finished_at = now(), seen = $2, inserted = $3,
                   updated = $4, unchanged = $5, stale = $6, withdrawn = $7,
                   rejected = $8, fingerprint = $9, error = $10 WHERE id = $1""",
            import_id,
            counts.seen,
            counts.inserted,
            counts.updated,
            counts.unchanged,
            counts.stale,
            counts.withdrawn,
            counts.rejected,
            current.digest,
            error,
        )
    return current


async def import_vex(pool: asyncpg.Pool, path: str | os.PathLike[str]) -> VexImportSummary:
    """Import one CSAF 2.0 VEX or OpenVEX document; a newer copy replaces an older one.

    Raises `VexFormatError` for anything that is not a usable VEX document.
    """
    document: VexDocument = await asyncio.to_thread(load_vex, os.fspath(path))
    async with _import_lock(pool) as conn, conn.transaction():
        import_id = await conn.fetchval(
            "INSERT INTO vuln_imports (kind, source) VALUES ('vex', $1) RETURNING id",
            str(path),
        )
        stored = await conn.fetchrow(
            "SELECT content_hash, issued_at FROM vex_documents WHERE document_key = $1",
            document.id,
        )
        older = (
            stored is not None
            and stored["issued_at"] is not None
            and document.timestamp is not None
            and document.timestamp < stored["issued_at"]
        )
        changed = not older and (stored is None or stored["content_hash"] != document.content_hash)
        if changed:
            await _replace_document(conn, document, import_id)
            current = await fp.refresh(conn, import_id)
        else:
            current = await fp.current(conn)
        await conn.execute(
            """UPDATE vuln_imports SET finished_at = now(), seen = $2,
                       inserted = $3, unchanged = $4, fingerprint = $5 WHERE id = $1""",
            import_id,
            len(document.statements),
            len(document.statements) if changed else 0,
            0 if changed else len(document.statements),
            current.digest,
        )
    return VexImportSummary(
        import_id, document.id, document.format, len(document.statements), changed, current
    )


async def _replace_document(conn: Conn, document: VexDocument, import_id: int) -> None:
    await conn.execute("DELETE FROM vex_documents WHERE document_key = $1", document.id)
    await conn.execute(
        """INSERT INTO vex_documents (document_key, format, content_hash, issued_at, import_id)
           VALUES ($1, $2, $3, $4, $5)""",
        document.id,
        document.format,
        document.content_hash,
        document.timestamp,
        import_id,
    )
    await conn.executemany(
        """INSERT INTO vex_statements (document_key, seq, vuln_id, aliases, ids_upper, products,
               status, justification, stated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (
                document.id,
                seq,
                s.vulnerability,
                list(s.aliases),
                [i.upper() for i in s.ids],
                list(s.products),
                s.status,
                s.justification,
                s.timestamp,
            )
            for seq, s in enumerate(document.statements)
        ],
    )


def _parse_stored(texts: list[str]) -> list[Advisory]:
    return [parse_advisory(json.loads(text), "store") for text in texts]


class VulnStore:
    """Match packages against the imported data; report the data's fingerprint."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def match(self, packages: Sequence[Package]) -> list[VulnFinding]:
        """Findings for `packages`, VEX statements applied, in a stable order."""
        if not packages:
            return []
        keys = sorted(
            {(p.ecosystem, normalize_name(p.ecosystem, p.advisory_name)) for p in packages}
        )
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT r.record::text AS record FROM vuln_records r
                   WHERE r.withdrawn IS NULL AND r.id IN (
                       SELECT a.record_id FROM vuln_affected a
                       JOIN unnest($1::text[], $2::text[]) AS k(ecosystem, name)
                         ON a.ecosystem = k.ecosystem AND a.name = k.name)
                   ORDER BY r.id""",
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
            advisories = await asyncio.to_thread(_parse_stored, [r["record"] for r in rows])
            findings = match_advisories(advisories, packages)
            if not findings:
                return []
            ids = sorted({i.upper() for f in findings for i in (f.id, *f.aliases)})
            vex_rows = await conn.fetch(
                """SELECT s.* FROM vex_statements s JOIN vex_documents d USING (document_key)
                   WHERE s.ids_upper && $1::text[]
                   ORDER BY d.imported_at, s.document_key, s.seq""",
                ids,
            )
        statements = [
            VexStatement(
                vulnerability=row["vuln_id"],
                aliases=tuple(row["aliases"]),
                products=tuple(row["products"]),
                status=row["status"],
                justification=row["justification"],
                timestamp=row["stated_at"],
                document=row["document_key"],
            )
            for row in vex_rows
        ]
        return apply_vex(findings, statements)

    async def fingerprint(self) -> DataFingerprint:
        """The current data version; record it with results, re-evaluate when it changes."""
        async with self.pool.acquire() as conn:
            return await fp.current(conn)

    async def last_import(self) -> datetime | None:
        """When the last OSV import finished without error: how current the data is (an
        import that changed nothing still proves it was current then)."""
        async with self.pool.acquire() as conn:
            found: datetime | None = await conn.fetchval(
                """SELECT max(finished_at) FROM vuln_imports
                   WHERE kind = 'osv' AND error IS NULL AND finished_at IS NOT NULL"""
            )
        return found

    async def recent_imports(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest import runs, newest first (for `zoll vulndb status`)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id, kind, source, started_at, finished_at, seen, inserted, updated,
                          unchanged, stale, withdrawn, rejected, fingerprint, error
                   FROM vuln_imports ORDER BY id DESC LIMIT $1""",
                limit,
            )
        return [dict(row) for row in rows]

    async def counts(self) -> dict[str, int]:
        """Records (live and withdrawn) and VEX statements in the store."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM vuln_records WHERE withdrawn IS NULL) AS live,
                          (SELECT count(*) FROM vuln_records WHERE withdrawn IS NOT NULL)
                              AS withdrawn,
                          (SELECT count(*) FROM vex_statements) AS vex_statements"""
            )
        assert row is not None
        return {k: int(v) for k, v in row.items()}

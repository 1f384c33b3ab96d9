"""Zoll's attestations in PostgreSQL, and their path into the log.

Sign → `record` (row status 'signed') → `log` (leaf + row 'logged' in one transaction).
A crash after `record` leaves a 'signed' row that `TransparencyLog.repair()` appends at
the next start; publish an attestation with a log index only from a LoggedAttestation.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from attest.dsse import Envelope
from attest.signing import Signer, envelope_statement, sign_statement
from attest.tlog.entries import LogEntry, attestation_record
from attest.tlog.store import EntryNotFound, TransparencyLog
from registry.oci.digest import Digest

_COLUMNS = (
    "id, subject_digest, repository, predicate_type, keyid, envelope, status, log_index, created_at"
)


@dataclass(frozen=True)
class StoredAttestation:
    id: int
    subject_digest: Digest
    repository: str
    predicate_type: str
    keyid: str
    envelope: Envelope
    status: str
    log_index: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> StoredAttestation:
        return cls(
            row["id"],
            Digest.parse(row["subject_digest"]),
            row["repository"],
            row["predicate_type"],
            row["keyid"],
            Envelope.from_bytes(bytes(row["envelope"])),
            row["status"],
            row["log_index"],
            row["created_at"],
        )


@dataclass(frozen=True)
class LoggedAttestation:
    attestation: StoredAttestation
    entry: LogEntry


class AttestationLedger:
    def __init__(self, log: TransparencyLog) -> None:
        self.log = log
        self.pool = log.pool

    async def record(
        self, envelope: Envelope, *, subject: Digest, repository: str
    ) -> StoredAttestation:
        """Store a signed envelope (idempotent: the same envelope is stored once)."""
        [stored] = await self.record_many([envelope], subject=subject, repository=repository)
        return stored

    async def record_many(
        self, envelopes: Sequence[Envelope], *, subject: Digest, repository: str
    ) -> list[StoredAttestation]:
        """Store signed envelopes about one subject in one statement, each once."""
        raws = [e.to_bytes() for e in envelopes]
        unique: dict[bytes, tuple[Envelope, dict[str, Any]]] = {}
        for envelope, raw in zip(envelopes, raws, strict=True):
            statement: dict[str, Any] = envelope_statement(envelope)
            if not any(
                s["digest"].get(subject.algorithm) == subject.encoded for s in statement["subject"]
            ):
                raise ValueError(f"the statement does not name {subject} as a subject")
            if not envelope.signatures:
                raise ValueError("the envelope is not signed")
            unique[raw] = (envelope, statement)
        rows = await self.pool.fetch(
            f"""INSERT INTO attestations
                  (subject_digest, repository, predicate_type, keyid, envelope, envelope_sha256)
                SELECT $1, $2, p, k, e, s
                FROM unnest($3::text[], $4::text[], $5::bytea[], $6::text[]) AS a(p, k, e, s)
                ON CONFLICT (envelope_sha256)
                  DO UPDATE SET envelope_sha256 = EXCLUDED.envelope_sha256
                RETURNING {_COLUMNS}""",  # noqa: S608 - fixed column list
            str(subject),
            repository,
            [statement["predicateType"] for _, statement in unique.values()],
            [envelope.signatures[0].keyid for envelope, _ in unique.values()],
            list(unique),
            [hashlib.sha256(raw).hexdigest() for raw in unique],
        )
        stored = {bytes(row["envelope"]): StoredAttestation.from_row(row) for row in rows}
        return [stored[raw] for raw in raws]

    async def log_attestation(self, stored: StoredAttestation) -> LoggedAttestation:
        """Append a recorded attestation (a no-op returning the entry if already logged)."""
        [logged] = await self.log_attestations([stored])
        return logged

    async def log_attestations(
        self, stored: Sequence[StoredAttestation]
    ) -> list[LoggedAttestation]:
        """Append recorded attestations in one log commit (those logged already keep their
        entries)."""
        entries = await self.log.append([attestation_record(s.envelope, s.id) for s in stored])
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM attestations WHERE id = ANY($1::bigint[])",  # noqa: S608
            [s.id for s in stored],
        )
        fresh = {row["id"]: StoredAttestation.from_row(row) for row in rows}
        return [LoggedAttestation(fresh[s.id], e) for s, e in zip(stored, entries, strict=True)]

    async def sign_and_log(
        self, statement: dict[str, Any], signer: Signer, *, subject: Digest, repository: str
    ) -> LoggedAttestation:
        """The whole path for the pipeline: sign, record, log."""
        [logged] = await self.sign_and_log_many(
            [statement], signer, subject=subject, repository=repository
        )
        return logged

    async def sign_and_log_many(
        self,
        statements: Sequence[dict[str, Any]],
        signer: Signer,
        *,
        subject: Digest,
        repository: str,
    ) -> list[LoggedAttestation]:
        """Statements about one image signed, recorded and logged together: one statement
        records them, one log commit appends them."""
        envelopes = await asyncio.to_thread(lambda: [sign_statement(s, signer) for s in statements])
        stored = await self.record_many(envelopes, subject=subject, repository=repository)
        return await self.log_attestations(stored)

    async def get(self, attestation_id: int) -> StoredAttestation:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM attestations WHERE id = $1",  # noqa: S608
                attestation_id,
            )
        if row is None:
            raise EntryNotFound(f"no attestation {attestation_id}")
        return StoredAttestation.from_row(row)

    async def for_subject(
        self, subject: Digest, predicate_type: str | None = None
    ) -> list[StoredAttestation]:
        """Logged attestations about an image, newest first (what may be published)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS} FROM attestations
                    WHERE subject_digest = $1 AND status = 'logged'
                      AND ($2::text IS NULL OR predicate_type = $2)
                    ORDER BY id DESC""",  # noqa: S608
                str(subject),
                predicate_type,
            )
        return [StoredAttestation.from_row(r) for r in rows]

    async def latest(
        self, subject: Digest, predicate_type: str, repository: str, keyid: str
    ) -> StoredAttestation | None:
        """The newest logged attestation of one type a key made about an image in one
        repository (one row, however long the image's history)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"""SELECT {_COLUMNS} FROM attestations
                    WHERE subject_digest = $1 AND status = 'logged' AND predicate_type = $2
                      AND repository = $3 AND keyid = $4
                    ORDER BY id DESC LIMIT 1""",  # noqa: S608
                str(subject),
                predicate_type,
                repository,
                keyid,
            )
        return None if row is None else StoredAttestation.from_row(row)

    async def pending(self) -> list[StoredAttestation]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM attestations WHERE status = 'signed' ORDER BY id"  # noqa: S608
            )
        return [StoredAttestation.from_row(r) for r in rows]

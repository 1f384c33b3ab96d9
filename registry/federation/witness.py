"""The witness this node runs for its peers' logs (c2sp.org/tlog-witness `add-checkpoint`).

The check of the old size and the write of the new state happen in one transaction that
holds the log's row lock, and the cosignature is made only after that commit: a witness
that crashes in between has persisted a state it never cosigned, which is safe; the
reverse (a cosignature for a state it could forget) cannot happen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from attest.keys import PrivateKey
from attest.tlog.cosignature import cosign
from attest.tlog.witnessing import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    Cosigned,
    SizeConflict,
    WitnessRefusal,
    check_add_checkpoint,
)
from registry import metrics
from registry.db.pool import Conn
from registry.federation.peers import Peer
from registry.logs import get_logger

log = get_logger("zoll.federation")


@dataclass(frozen=True)
class WitnessAnswer:
    status: int
    body: str
    content_type: str = "text/plain"


async def add_checkpoint(
    pool: asyncpg.Pool, peers: Sequence[Peer], name: str, key: PrivateKey, body: bytes
) -> WitnessAnswer:
    """Answer one add-checkpoint request as the protocol says (status and body)."""
    try:
        request = AddCheckpoint.parse(body)
        origin = request.checkpoint.checkpoint.origin
        logs = [p for p in peers if p.log_origin == origin]
        if not logs:
            raise WitnessRefusal(404, f"this witness does not know the log {origin!r}")
        await _check_and_store(pool, request, logs[0])
    except WitnessRefusal as refusal:
        if isinstance(refusal, SizeConflict):
            return WitnessAnswer(409, f"{refusal.size}\n", SIZE_CONTENT_TYPE)
        return WitnessAnswer(refusal.status, refusal.message + "\n")
    line = await asyncio.to_thread(cosign, request.checkpoint.note.text, name, key)
    metrics.FEDERATION_COSIGNED.labels(logs[0].name).inc()
    return WitnessAnswer(200, line.line())


async def _check_and_store(pool: asyncpg.Pool, request: AddCheckpoint, peer: Peer) -> None:
    checkpoint = request.checkpoint.checkpoint
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('witness:' || $1))", peer.log_origin
        )
        row = await conn.fetchrow(
            "SELECT size, root, checkpoint FROM witness_state WHERE origin = $1", peer.log_origin
        )
        known = Cosigned(row["size"], bytes(row["root"])) if row is not None else None
        refusal: WitnessRefusal | None = None
        try:
            check_add_checkpoint(request, [peer.log_verifier], known)
        except WitnessRefusal as exc:
            refusal = exc
        if refusal is not None:
            if refusal.evidence and row is not None:  # kept: this transaction commits
                await record_fork(
                    conn,
                    peer.log_origin,
                    peer.name,
                    "witness-refused",
                    row["checkpoint"],
                    request.checkpoint.to_text(),
                    {"reason": refusal.message, "oldSize": request.old_size},
                )
        else:
            await conn.execute(
                """INSERT INTO witness_state (origin, size, root, checkpoint)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (origin) DO UPDATE SET size = EXCLUDED.size,
                       root = EXCLUDED.root, checkpoint = EXCLUDED.checkpoint,
                       updated_at = now()""",
                peer.log_origin,
                checkpoint.size,
                checkpoint.root,
                request.checkpoint.to_text(),
            )
    if refusal is not None:
        raise refusal


async def record_fork(
    conn: Conn | asyncpg.Pool,
    origin: str,
    peer: str | None,
    kind: str,
    known: str,
    offending: str,
    detail: dict[str, object],
) -> None:
    """Keep the evidence, stop following the peer, and raise the alarm (log + metric)."""
    inserted = await conn.fetchval(
        """INSERT INTO federation_forks (origin, peer, kind, known_checkpoint,
               offending_checkpoint, detail)
           SELECT $1, $2, $3, $4, $5, $6
           WHERE NOT EXISTS (SELECT 1 FROM federation_forks
                             WHERE origin = $1 AND offending_checkpoint = $5)
           RETURNING id""",
        origin,
        peer,
        kind,
        known,
        offending,
        detail,
    )
    if inserted is None:
        return  # the same evidence again (a log retrying): kept once, alarmed once
    if peer is not None:
        await conn.execute(
            """INSERT INTO federation_follow (peer, state, last_error) VALUES ($1, 'forked', $2)
               ON CONFLICT (peer) DO UPDATE SET state = 'forked', last_error = $2,
                   updated_at = now()""",
            peer,
            f"{kind}: {detail.get('reason', '')}",
        )
    metrics.FEDERATION_FORKS.labels(peer or origin).inc()
    log.error("log fork detected", origin=origin, peer=peer, kind=kind, detail=detail)

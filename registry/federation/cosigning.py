"""Collecting witness cosignatures for this node's own log.

Each round sends the latest checkpoint to every peer that witnesses for us, with a
consistency proof from the size that peer cosigned last (a 409 tells us its size and we
try again once). Returned cosignatures are verified with the peer's pinned witness key
and stored; the checkpoint is then served with them, and attestations published after it
carry a tlog proof whose checkpoint has them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import aiohttp
import asyncpg

from attest.tlog.checkpoint import SignedCheckpoint
from attest.tlog.cosignature import cosignatures
from attest.tlog.note import Note, NoteError
from attest.tlog.store import TransparencyLog
from attest.tlog.witnessing import AddCheckpoint
from registry import metrics
from registry.federation.peers import Peer
from registry.logs import get_logger

log = get_logger("zoll.federation")
WITNESS_PATH: Final = "/witness/add-checkpoint"


class WitnessUnavailable(RuntimeError):
    """A witness did not cosign; the message says what it answered."""


class Cosigning:
    def __init__(
        self,
        log: TransparencyLog,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        timeout: float,
    ) -> None:
        self.log = log
        self.pool = pool
        self.session = session
        self.timeout = timeout
        self._round = asyncio.Lock()
        self.publish: Callable[[SignedCheckpoint], Awaitable[object]] | None = None
        """Publishes a checkpoint and the tiles under it (registry/federation/tiles.py).
        Called before the witnesses are asked — a witness that follows this log is woken
        by the request and reads the tiles at once — and again with the cosignatures."""

    async def _log_id(self) -> int:
        return await self.log.log_id()

    async def collect(self, peers: Sequence[Peer]) -> SignedCheckpoint:
        """Ask every witnessing peer to cosign the latest checkpoint; return it with all
        the cosignatures it has. Errors are stored per witness, never raised."""
        async with self._round:
            signed = await self.log.checkpoint()
            before = await self.with_cosignatures(signed)
            if self.publish is not None:
                await self.publish(before)
            witnesses = [p for p in peers if p.witness]
            await asyncio.gather(*(self._ask_quietly(p, signed) for p in witnesses))
            cosigned = await self.with_cosignatures(signed)
            metrics.FEDERATION_WITNESSES.set(len(cosigned.note.signatures) - 1)
            if self.publish is not None and cosigned.note.signatures != before.note.signatures:
                await self.publish(cosigned)
            return cosigned

    async def _ask_quietly(self, peer: Peer, signed: SignedCheckpoint) -> None:
        log_id = await self._log_id()
        try:
            await self._ask(peer, signed, log_id)
        except (WitnessUnavailable, aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await self.pool.execute(
                """INSERT INTO tlog_witnesses (log_id, witness, last_error) VALUES ($1, $2, $3)
                   ON CONFLICT (log_id, witness) DO UPDATE SET last_error = $3,
                       updated_at = now()""",
                log_id,
                peer.name,
                error[:500],
            )
            log.warning("witness did not cosign", witness=peer.name, error=error)

    async def _ask(self, peer: Peer, signed: SignedCheckpoint, log_id: int) -> None:
        size = signed.checkpoint.size
        old = await self.pool.fetchval(
            "SELECT size FROM tlog_witnesses WHERE log_id = $1 AND witness = $2", log_id, peer.name
        )
        old = old or 0
        have = await self.pool.fetchval(
            "SELECT 1 FROM tlog_cosignatures WHERE log_id = $1 AND size = $2 AND witness = $3",
            log_id,
            size,
            peer.cosigner.name,
        )
        if old == size and have:
            return
        for _ in range(2):
            if old > size:
                raise WitnessUnavailable(
                    f"{peer.name} cosigned size {old} of this log, larger than its {size}: "
                    "the log lost entries it had published"
                )
            proof = () if old in (0, size) else (await self.log.consistency_proof(old, size)).hashes
            body = AddCheckpoint(old, tuple(proof), signed).to_bytes()
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with self.session.post(
                peer.url + WITNESS_PATH, data=body, timeout=timeout
            ) as resp:
                text = await resp.text(errors="replace")
            if resp.status == 409 and text.strip().isdigit():
                old = int(text.strip())
                continue
            if resp.status != 200:
                raise WitnessUnavailable(f"{resp.status}: {text.strip()[:300]}")
            await self._store(peer, signed, text, log_id)
            return
        raise WitnessUnavailable(f"{peer.name} keeps answering 409 (size {old})")

    async def _store(self, peer: Peer, signed: SignedCheckpoint, lines: str, log_id: int) -> None:
        try:
            note = Note.parse(signed.note.text + "\n" + lines)
        except NoteError as exc:
            raise WitnessUnavailable(f"unreadable cosignature: {exc}") from exc
        found = cosignatures(note, [peer.cosigner])
        if not found:
            raise WitnessUnavailable("the answer holds no valid cosignature by its pinned key")
        line = next(
            s for s in note.signatures if peer.cosigner.verify(note.text, s) is not None
        ).line()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO tlog_cosignatures (log_id, size, witness, line, cosigned_at)
                   VALUES ($1, $2, $3, $4, to_timestamp($5))
                   ON CONFLICT (log_id, size, witness) DO NOTHING""",
                log_id,
                signed.checkpoint.size,
                peer.cosigner.name,
                line,
                float(found[0].timestamp),
            )
            await conn.execute(
                """INSERT INTO tlog_witnesses (log_id, witness, size) VALUES ($1, $2, $3)
                   ON CONFLICT (log_id, witness) DO UPDATE SET size = $3, last_error = NULL,
                       updated_at = now()""",
                log_id,
                peer.name,
                signed.checkpoint.size,
            )

    async def with_cosignatures(self, signed: SignedCheckpoint) -> SignedCheckpoint:
        """`signed` with the cosignature lines stored for its size."""
        rows = await self.pool.fetch(
            "SELECT line FROM tlog_cosignatures WHERE log_id = $1 AND size = $2 ORDER BY witness",
            await self._log_id(),
            signed.checkpoint.size,
        )
        if not rows:
            return signed
        text = signed.to_text() + "".join(r["line"] for r in rows)
        return SignedCheckpoint.parse(text)

    async def latest(self) -> SignedCheckpoint:
        """The latest checkpoint, with the cosignatures it has so far."""
        return await self.with_cosignatures(await self.log.checkpoint())

    async def witnessed(
        self, min_size: int, peers: Sequence[Peer], wait: float
    ) -> SignedCheckpoint:
        """A checkpoint covering `min_size` entries with as many cosignatures as the
        witnesses give within `wait` seconds: the newest already cosigned one if it
        covers them, else one collection round now."""
        log_id = await self._log_id()
        witnesses = [p for p in peers if p.witness]
        row = await self.pool.fetchrow(
            """SELECT size, count(*) AS n FROM tlog_cosignatures
               WHERE log_id = $1 AND size >= $2 GROUP BY size ORDER BY n DESC, size DESC
               LIMIT 1""",
            log_id,
            min_size,
        )
        if row is not None and (row["n"] >= len(witnesses) or not witnesses):
            signed = await self.log.checkpoint_at(row["size"])
            if signed is not None:
                return await self.with_cosignatures(signed)
        if not witnesses:
            return await self.log.checkpoint()
        started = time.monotonic()
        try:
            return await asyncio.wait_for(self.collect(peers), wait)
        except TimeoutError:
            log.warning("witnesses too slow", waited=round(time.monotonic() - started, 2))
            return await self.latest()

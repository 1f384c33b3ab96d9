"""The transparency log in PostgreSQL: concurrent appends, proofs, checkpoints, repair.

Appends from one process are group-committed: whoever holds the process's lock commits
everything queued so far in one transaction, so 1,000 concurrent callers cost a few
transactions, not 1,000. Across processes the row lock on `tlog_logs` orders them.
Proofs read only the O(log n) subtree hashes they need (see `attest.tlog.proofs`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from attest.dsse import Envelope
from attest.signing import Signer
from attest.tlog.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from attest.tlog.compact import CompactRange, frontier_ids
from attest.tlog.entries import LogEntry, LogRecord, attestation_record
from attest.tlog.hashing import EMPTY_ROOT
from attest.tlog.note import NoteVerifier
from attest.tlog.proofs import (
    ConsistencyProof,
    InclusionProof,
    NodeID,
    Plan,
    ProofError,
    fold,
    needed_nodes,
    plan_consistency,
    plan_inclusion,
    resolve,
)

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
_HEAD: Final = "SELECT size, root FROM tlog_logs WHERE id = $1"
_HEAD_FOR_UPDATE: Final = _HEAD + " FOR UPDATE"
MAX_BATCH: Final = 512
"""Records per append transaction; bounds transaction size and memory."""
CACHED_LEVEL: Final = 8
"""Subtrees of 2**8 leaves and more are kept in memory once read: every proof needs a few
of the same high subtrees, so proofs read the same number of rows (the low levels) at any
log size instead of one more per doubling. A complete subtree never changes."""
CACHED_NODES: Final = 32_768
"""About 3 MiB: every cached level of a log of 8,000,000 entries. They are read at the
first proof, highest levels first (random proofs would otherwise miss the many nodes at
level 8 for a long time); beyond that the least recently used go, and the highest levels,
which every proof reads, stay."""


class LogError(RuntimeError):
    """The log cannot do what was asked (unknown index, size beyond the tree, …)."""


class EntryNotFound(LogError):
    pass


class LogCorrupt(LogError):
    """Stored state contradicts itself; the log refuses to extend or repair it."""


@dataclass
class _Waiter:
    records: list[LogRecord]
    future: asyncio.Future[list[LogEntry]]


@dataclass(frozen=True)
class RepairReport:
    size: int
    relinked: int
    appended: int
    checkpoint: SignedCheckpoint


@dataclass
class _Head:
    log_id: int
    size: int
    root: bytes


class TransparencyLog:
    """An append-only Merkle log named `origin`, signed by `signer`."""

    def __init__(
        self, pool: asyncpg.Pool, signer: Signer, origin: str, *, max_batch: int = MAX_BATCH
    ) -> None:
        if any(c.isspace() or c == "+" for c in origin) or not origin:
            raise LogError(f"log origin {origin!r} must be non-empty, without spaces or '+'")
        self.pool = pool
        self.signer = signer
        self.origin = origin
        self.max_batch = max_batch
        self._queue: list[_Waiter] = []
        self._lock = asyncio.Lock()
        self._log_id: int | None = None
        self._subtrees: OrderedDict[NodeID, bytes] = OrderedDict()
        self._warmed = False

    @property
    def verifier(self) -> NoteVerifier:
        """The note key that verifies this log's checkpoints (publish it)."""
        return NoteVerifier.for_key(self.origin, self.signer.public)

    async def _id(self, conn: Conn) -> int:
        if self._log_id is None:
            await conn.execute(
                "INSERT INTO tlog_logs (origin, root) VALUES ($1, $2) "
                "ON CONFLICT (origin) DO NOTHING",
                self.origin,
                EMPTY_ROOT,
            )
            self._log_id = await conn.fetchval(
                "SELECT id FROM tlog_logs WHERE origin = $1", self.origin
            )
        assert self._log_id is not None
        return self._log_id

    async def log_id(self) -> int:
        """This log's row id (tables that refer to the log use it)."""
        async with self.pool.acquire() as conn:
            return await self._id(conn)

    async def _head(self, conn: Conn, *, lock: bool = False) -> _Head:
        log_id = await self._id(conn)
        query = _HEAD_FOR_UPDATE if lock else _HEAD
        row = await conn.fetchrow(query, log_id)
        if row is None:
            raise LogCorrupt(f"log {self.origin} vanished from tlog_logs")
        return _Head(log_id, row["size"], bytes(row["root"]))

    async def size(self) -> int:
        async with self.pool.acquire() as conn:
            return (await self._head(conn)).size

    # -- appending -------------------------------------------------------------------

    async def append(self, records: Sequence[LogRecord]) -> list[LogEntry]:
        """Append records in order; return their entries (with indexes), all or nothing.

        Appending an attestation that is already logged returns its existing entry.
        """
        if not records:
            return []
        waiter = _Waiter(list(records), asyncio.get_running_loop().create_future())
        self._queue.append(waiter)
        try:
            while not waiter.future.done():
                async with self._lock:
                    if waiter.future.done():
                        break
                    batch = self._take_batch()
                    try:
                        results = await self._commit(batch)
                    except BaseException as exc:
                        error = LogError(
                            f"append to {self.origin} failed, nothing written: {exc!r}"
                        )
                        for w in batch:
                            if w is not waiter and not w.future.done():
                                w.future.set_exception(error)
                        if isinstance(exc, Exception) and not isinstance(exc, LogError):
                            raise error from exc
                        raise
                    for w, result in zip(batch, results, strict=True):
                        if not w.future.done():
                            w.future.set_result(result)
        except BaseException:
            # Not committed and the caller is told so: it must not be appended later.
            if waiter in self._queue:
                self._queue.remove(waiter)
            raise
        return await waiter.future

    def _take_batch(self) -> list[_Waiter]:
        batch: list[_Waiter] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].records) <= self.max_batch):
            waiter = self._queue.pop(0)
            batch.append(waiter)
            count += len(waiter.records)
        return batch

    async def _commit(self, batch: list[_Waiter]) -> list[list[LogEntry]]:
        records = [r for w in batch for r in w.records]
        async with self.pool.acquire() as conn:
            await self._id(conn)  # create the log row outside the transaction that may fail
            async with conn.transaction():
                head = await self._head(conn, lock=True)
                entries = await self._append_locked(conn, head, records)
        out, pos = [], 0
        for w in batch:
            out.append(entries[pos : pos + len(w.records)])
            pos += len(w.records)
        return out

    async def _append_locked(
        self, conn: Conn, head: _Head, records: list[LogRecord]
    ) -> list[LogEntry]:
        attestation_ids = [r.attestation_id for r in records if r.attestation_id is not None]
        known: dict[int, LogEntry] = {}
        if attestation_ids:
            rows = await conn.fetch(
                "SELECT idx, leaf_hash, body, attestation_id, integrated_at FROM tlog_leaves "
                "WHERE log_id = $1 AND attestation_id = ANY($2::bigint[])",
                head.log_id,
                attestation_ids,
            )
            known = {r["attestation_id"]: self._entry(r) for r in rows}
        frontier = await self._nodes(conn, head.log_id, set(frontier_ids(head.size)))
        tree = CompactRange(head.size, [(n, frontier[n]) for n in frontier_ids(head.size)])
        if tree.root() != head.root:
            raise LogCorrupt(
                f"stored subtrees of {self.origin} do not fold to its root at {head.size}"
            )
        leaves: list[tuple[int, bytes, str, bytes, int | None, str | None, str | None]] = []
        nodes: list[tuple[NodeID, bytes]] = []
        entries = []
        for record in records:
            if record.attestation_id is not None and record.attestation_id in known:
                entries.append(known[record.attestation_id])
                continue
            data = record.leaf_data()
            index = tree.size
            entry = LogEntry(
                self.origin, index, record.body, _leaf(data), None, record.attestation_id
            )
            nodes.extend(tree.append(entry.leaf_hash))
            about = record.subject
            leaves.append(
                (
                    index,
                    entry.leaf_hash,
                    record.kind,
                    data,
                    record.attestation_id,
                    about[0] if about else None,
                    about[1] if about else None,
                )
            )
            entries.append(entry)
            if record.attestation_id is not None:
                known[record.attestation_id] = entry
        if not leaves:
            return entries
        now: datetime = await conn.fetchval(
            """INSERT INTO tlog_leaves (log_id, idx, leaf_hash, kind, body, attestation_id,
                                        subject_repository, subject_digest)
               SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::bytea[],
                                        $6::bigint[], $7::text[], $8::text[])
               RETURNING integrated_at""",
            head.log_id,
            *map(list, zip(*leaves, strict=True)),
        )
        if nodes:
            await conn.execute(
                """INSERT INTO tlog_nodes (log_id, level, idx, hash)
                   SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])""",
                head.log_id,
                [n.level for n, _ in nodes],
                [n.index for n, _ in nodes],
                [h for _, h in nodes],
            )
        await conn.execute(
            "UPDATE tlog_logs SET size = $2, root = $3, updated_at = now() WHERE id = $1",
            head.log_id,
            tree.size,
            tree.root(),
        )
        logged = [(i, a) for i, _, _, _, a, _, _ in leaves if a is not None]
        if logged:
            updated = await conn.execute(
                """UPDATE attestations a SET status = 'logged', log_id = $1, log_index = u.idx,
                          logged_at = now()
                   FROM unnest($2::bigint[], $3::bigint[]) AS u(idx, id)
                   WHERE a.id = u.id AND a.status = 'signed'""",
                head.log_id,
                [i for i, _ in logged],
                [a for _, a in logged],
            )
            if updated != f"UPDATE {len(logged)}":
                raise LogError("some appended attestations are unknown or were logged elsewhere")
        return [
            LogEntry(
                e.origin, e.index, e.body, e.leaf_hash, e.integrated_at or now, e.attestation_id
            )
            for e in entries
        ]

    # -- reading -------------------------------------------------------------------------

    def _entry(self, row: asyncpg.Record) -> LogEntry:
        data = bytes(row["body"])
        if _leaf(data) != bytes(row["leaf_hash"]):
            raise LogCorrupt(f"entry {row['idx']} of {self.origin} does not hash to its leaf")
        body: dict[str, Any] = json.loads(data)
        return LogEntry(
            self.origin,
            row["idx"],
            body,
            bytes(row["leaf_hash"]),
            row["integrated_at"],
            row["attestation_id"],
        )

    async def entry(self, index: int) -> LogEntry:
        async with self.pool.acquire() as conn:
            log_id = await self._id(conn)
            row = await conn.fetchrow(
                "SELECT idx, leaf_hash, body, attestation_id, integrated_at FROM tlog_leaves "
                "WHERE log_id = $1 AND idx = $2",
                log_id,
                index,
            )
        if row is None:
            raise EntryNotFound(f"{self.origin} has no entry {index}")
        return self._entry(row)

    async def entries(self, start: int, limit: int) -> list[LogEntry]:
        """A page of entries from `start` (for auditors mirroring the log)."""
        async with self.pool.acquire() as conn:
            log_id = await self._id(conn)
            rows = await conn.fetch(
                "SELECT idx, leaf_hash, body, attestation_id, integrated_at FROM tlog_leaves "
                "WHERE log_id = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
                log_id,
                start,
                min(limit, 1000),
            )
        return [self._entry(r) for r in rows]

    async def _about(self, columns: str, repository: str, digest: str) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            log_id = await self._id(conn)
            return await conn.fetch(
                f"""SELECT {columns} FROM tlog_leaves l
                    WHERE l.log_id = $1 AND l.subject_repository = $2 AND l.subject_digest = $3
                    UNION
                    SELECT {columns} FROM attestations a JOIN tlog_leaves l
                      ON l.log_id = a.log_id AND l.idx = a.log_index
                    WHERE a.log_id = $1 AND a.repository = $2 AND a.subject_digest = $3
                    ORDER BY idx""",  # noqa: S608 - fixed column lists
                log_id,
                repository,
                digest,
            )

    async def entries_about(self, repository: str, digest: str) -> list[LogEntry]:
        """Every entry about one image, in log order: its attestations (through their
        attestation rows) and the other statements that name it (admission decisions)."""
        rows = await self._about(
            "l.idx, l.leaf_hash, l.body, l.attestation_id, l.integrated_at", repository, digest
        )
        return [self._entry(r) for r in rows]

    async def indexes_about(self, repository: str, digest: str) -> list[int]:
        """The indexes of `entries_about`, without reading the entries."""
        return [r["idx"] for r in await self._about("l.idx", repository, digest)]

    async def _nodes(self, conn: Conn, log_id: int, ids: set[NodeID]) -> dict[NodeID, bytes]:
        leaves = sorted(n.index for n in ids if n.level == 0)
        out = self._cached(ids)
        inner = sorted(
            (n for n in ids if n.level > 0 and n not in out), key=lambda n: (n.level, n.index)
        )
        if leaves:
            for r in await conn.fetch(
                "SELECT idx, leaf_hash FROM tlog_leaves "
                "WHERE log_id = $1 AND idx = ANY($2::bigint[])",
                log_id,
                leaves,
            ):
                out[NodeID(0, r["idx"])] = bytes(r["leaf_hash"])
        if inner:
            for r in await conn.fetch(
                """SELECT n.level, n.idx, n.hash FROM tlog_nodes n
                   JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx)
                     ON n.level = w.level AND n.idx = w.idx
                   WHERE n.log_id = $1""",
                log_id,
                [n.level for n in inner],
                [n.index for n in inner],
            ):
                node = NodeID(r["level"], r["idx"])
                out[node] = bytes(r["hash"])
                if node.level >= CACHED_LEVEL:
                    self._remember(node, out[node])
        missing = ids - out.keys()
        if missing:
            raise LogCorrupt(f"{self.origin} lacks stored subtrees {sorted(missing)[:5]}")
        return out

    async def _warm(self, conn: Conn, log_id: int) -> None:
        rows = await conn.fetch(
            "SELECT level, idx, hash FROM tlog_nodes WHERE log_id = $1 AND level >= $2 "
            "ORDER BY level DESC, idx DESC LIMIT $3",
            log_id,
            CACHED_LEVEL,
            CACHED_NODES,
        )
        for r in reversed(rows):  # the highest levels the most recently used
            self._remember(NodeID(r["level"], r["idx"]), bytes(r["hash"]))
        self._warmed = True

    def _cached(self, ids: set[NodeID]) -> dict[NodeID, bytes]:
        found = {n: self._subtrees[n] for n in ids if n in self._subtrees}
        for n in found:
            self._subtrees.move_to_end(n)
        return found

    def _remember(self, node: NodeID, digest: bytes) -> None:
        self._subtrees[node] = digest
        if len(self._subtrees) > CACHED_NODES:
            self._subtrees.popitem(last=False)

    async def _resolve(self, plan_for: Callable[[], Plan], *sizes: int) -> tuple[list[bytes], int]:
        async with self.pool.acquire() as conn:
            head = await self._head(conn)
            if max(sizes) > head.size:
                raise LogError(f"{self.origin} has {head.size} entries, not {max(sizes)}")
            try:
                plan = plan_for()
            except ProofError as exc:
                raise LogError(str(exc)) from exc
            if not self._warmed:  # proofs only: not under an append's lock, not at start-up
                await self._warm(conn, head.log_id)
            nodes = await self._nodes(conn, head.log_id, needed_nodes(plan))
        return resolve(plan, nodes), head.size

    async def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry `index` is in the tree of `size` entries (default: current)."""
        tree_size = size if size is not None else await self.size()
        hashes, _ = await self._resolve(lambda: plan_inclusion(index, tree_size), tree_size)
        return InclusionProof(index, tree_size, tuple(hashes))

    async def consistency_proof(
        self, old_size: int, new_size: int | None = None
    ) -> ConsistencyProof:
        new = new_size if new_size is not None else await self.size()
        hashes, _ = await self._resolve(lambda: plan_consistency(old_size, new), new)
        return ConsistencyProof(old_size, new, tuple(hashes))

    async def root_at(self, size: int) -> bytes:
        hashes, _ = await self._resolve(lambda: [frontier_ids(size)] if size else [], size)
        return hashes[0] if hashes else EMPTY_ROOT

    # -- checkpoints ----------------------------------------------------------------------

    async def checkpoint(self) -> SignedCheckpoint:
        """A signed checkpoint for the current tree (signed now if none exists for it)."""
        async with self.pool.acquire() as conn:
            head = await self._head(conn)
            note = await conn.fetchval(
                "SELECT note FROM tlog_checkpoints WHERE log_id = $1 AND size = $2",
                head.log_id,
                head.size,
            )
            if note is None:
                signed = await asyncio.to_thread(
                    sign_checkpoint, Checkpoint(self.origin, head.size, head.root), self.signer
                )
                await conn.execute(
                    """INSERT INTO tlog_checkpoints (log_id, size, root, note, keyid)
                       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (log_id, size) DO NOTHING""",
                    head.log_id,
                    head.size,
                    head.root,
                    signed.to_text(),
                    self.signer.public.keyid,
                )
                note = await conn.fetchval(
                    "SELECT note FROM tlog_checkpoints WHERE log_id = $1 AND size = $2",
                    head.log_id,
                    head.size,
                )
        return SignedCheckpoint.parse(note)

    async def checkpoint_at(self, size: int) -> SignedCheckpoint | None:
        """A checkpoint the log signed earlier for exactly `size`, if any."""
        async with self.pool.acquire() as conn:
            log_id = await self._id(conn)
            note = await conn.fetchval(
                "SELECT note FROM tlog_checkpoints WHERE log_id = $1 AND size = $2", log_id, size
            )
        return None if note is None else SignedCheckpoint.parse(note)

    # -- start-up repair -----------------------------------------------------------------

    async def check(self) -> int:
        """Check the stored head against its leaves and subtrees; return the size.

        One snapshot for all three reads: other processes and instances keep appending,
        and a head read before their commit with leaves read after it is no corruption."""
        async with self.pool.acquire() as conn:
            await self._id(conn)  # the log's row, created outside the read-only snapshot
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await self._head(conn)
            last = await conn.fetchval(
                "SELECT max(idx) FROM tlog_leaves WHERE log_id = $1", head.log_id
            )
            if (last if last is not None else -1) != head.size - 1:
                raise LogCorrupt(f"{self.origin} says size {head.size} but its last leaf is {last}")
            nodes = await self._nodes(conn, head.log_id, set(frontier_ids(head.size)))
            if fold([nodes[n] for n in frontier_ids(head.size)]) != head.root:
                raise LogCorrupt(f"{self.origin}'s subtrees do not fold to its stored root")
        return head.size

    async def repair(self) -> RepairReport:
        """Bring the log and the attestations table back in step; call at service start.

        Attestations signed but not logged (the service stopped in between) are appended
        now, oldest first. Nothing already logged is ever rewritten.
        """
        await self.check()
        async with self.pool.acquire() as conn:
            log_id = await self._id(conn)
            relinked = await conn.execute(
                """UPDATE attestations a SET status = 'logged', log_id = l.log_id,
                          log_index = l.idx, logged_at = l.integrated_at
                   FROM tlog_leaves l
                   WHERE l.attestation_id = a.id AND l.log_id = $1 AND a.status = 'signed'""",
                log_id,
            )
        appended = 0
        while True:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id, envelope FROM attestations WHERE status = 'signed' "
                    "ORDER BY id LIMIT $1",
                    self.max_batch,
                )
            if not rows:
                break
            await self.append(
                [
                    attestation_record(Envelope.from_bytes(bytes(r["envelope"])), r["id"])
                    for r in rows
                ]
            )
            appended += len(rows)
        return RepairReport(
            await self.check(), int(relinked.split()[-1]), appended, await self.checkpoint()
        )


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()

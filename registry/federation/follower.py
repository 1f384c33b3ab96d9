"""Following a peer's transparency log as a change feed.

Each round reads the peer's latest checkpoint (signed by its pinned log key), then every
entry after the last one read, from the peer's static tiles, bundle by bundle. Each
entry's leaf hash extends a compact range kept in the database, so when the entries up
to the checkpoint's size are read, the node has recomputed the peer's root itself: every
entry is then proven to be in that checkpoint (stronger than one inclusion proof per
entry), and every checkpoint is proven to extend the previous one. A root that does not
match, a smaller tree or another root for the same size is a fork: the evidence is kept,
following stops, and the alarm goes off.

Statements are recorded as the entries are read (unverified), and count — for quorum,
revocation and replication — only once their checkpoint's root has been recomputed.
Memory is one bundle (≤ 256 entries); a crash of either side resumes from the last
bundle committed.
"""

from __future__ import annotations

import base64
import fnmatch
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from attest.dsse import Envelope, EnvelopeError, pae
from attest.signing import IN_TOTO_PAYLOAD_TYPE
from attest.tlog.checkpoint import CheckpointError, SignedCheckpoint, verify_checkpoint
from attest.tlog.compact import CompactRange
from attest.tlog.hashing import leaf_hash
from attest.tlog.note import NoteVerificationError
from attest.tlog.proofs import NodeID
from attest.tlog.tiles import TILE_WIDTH, Tile, TileError, decode_bundle
from attest.verdicts import parse_time, verdict_of
from registry import metrics
from registry.config import FollowRule
from registry.federation.fetch import get_bytes
from registry.federation.peers import Peer
from registry.federation.service import Federation
from registry.federation.witness import record_fork
from registry.logs import get_logger
from registry.pipeline.jobs import JobQueue

log = get_logger("zoll.federation")
MAX_BUNDLE = 512 << 20


class FollowError(RuntimeError):
    """The peer's log could not be read this round (it is tried again next round)."""


@dataclass
class FollowState:
    state: str
    size: int
    frontier: list[tuple[NodeID, bytes]]
    verified_size: int
    checkpoint: str | None


@dataclass(frozen=True)
class RoundResult:
    peer: str
    read: int
    verified_size: int
    peer_size: int
    replicate: int
    state: str


def _frontier_json(frontier: list[tuple[NodeID, bytes]]) -> list[list[Any]]:
    return [[n.level, n.index, base64.b64encode(h).decode()] for n, h in frontier]


def _frontier_of(raw: list[list[Any]]) -> list[tuple[NodeID, bytes]]:
    return [(NodeID(int(level), int(index)), base64.b64decode(h)) for level, index, h in raw]


async def _state(federation: Federation, peer: str) -> FollowState:
    row = await federation.pool.fetchrow("SELECT * FROM federation_follow WHERE peer = $1", peer)
    if row is None:
        await federation.pool.execute(
            "INSERT INTO federation_follow (peer) VALUES ($1) ON CONFLICT DO NOTHING", peer
        )
        return FollowState("following", 0, [], 0, None)
    return FollowState(
        row["state"],
        row["size"],
        _frontier_of(row["frontier"]),
        row["verified_size"],
        row["checkpoint"],
    )


def statement_row(peer: Peer, index: int, data: bytes) -> dict[str, Any] | None:
    """What an entry of `peer`'s log says about an image, if anything; statements not
    signed by one of the peer's pinned keys are ignored (they hash into the tree all
    the same)."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    if body.get("kind") == "admission":
        subject = body.get("subject") or {}
        if not isinstance(subject, dict) or body.get("decision") not in ("admitted", "denied"):
            return None
        return {
            "log_index": index,
            "subject": str(subject.get("digest", "")),
            "repository": str(subject.get("repository", "")),
            "kind": "admission",
            "verdict": body["decision"],
            "stated_at": parse_time(body.get("decidedAt")),
            "tags": [t for t in body.get("tags", []) if isinstance(t, str)],
        }
    if body.get("kind") != "attestation":
        return None
    try:
        envelope = Envelope.from_json(body.get("envelope"))
    except EnvelopeError:
        return None
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        return None
    message = pae(envelope.payload_type, envelope.payload)
    if not any(k.verify(s.sig, message) for k in peer.keys for s in envelope.signatures):
        return None
    try:
        verdict = verdict_of(json.loads(envelope.payload))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if verdict is None or not verdict.subjects:
        return None
    name, sha = verdict.subjects[0]
    return {
        "log_index": index,
        "subject": f"sha256:{sha}",
        "repository": name,
        "kind": verdict.kind,
        "verdict": verdict.value,
        "stated_at": verdict.time,
        "tags": [],
    }


async def _bundle(federation: Federation, peer: Peer, index: int, width: int) -> list[bytes]:
    """Entries of bundle `index` (the first `width`), from its partial or full tile."""
    tiles = [Tile(-1, index, width)]
    if width < TILE_WIDTH:
        tiles.append(Tile(-1, index, TILE_WIDTH))  # the partial one may be superseded
    for tile in tiles:
        try:
            data = await get_bytes(
                federation.session, f"{peer.url}/tlog/{tile.path()}", limit=MAX_BUNDLE
            )
        except aiohttp.ClientResponseError as exc:
            if exc.status == 404:
                continue
            raise
        entries = decode_bundle(data, tile.width)
        return entries[:width]
    raise FollowError(f"bundle {index} (width {width}) is not published; newer checkpoint?")


def wanted(rules: list[FollowRule], peer: str, repository: str) -> bool:
    return any(
        rule.peer == peer and any(fnmatch.fnmatchcase(repository, p) for p in rule.repositories)
        for rule in rules
    )


async def follow_once(federation: Federation, peer: Peer, jobs: JobQueue) -> RoundResult:
    """One round: read up to the peer's latest checkpoint and verify it. FollowError when
    the peer cannot be read; a fork is recorded, not raised."""
    state = await _state(federation, peer.name)
    if state.state == "forked":
        return RoundResult(peer.name, 0, state.verified_size, 0, 0, "forked")
    try:
        raw = (await get_bytes(federation.session, f"{peer.url}/tlog/checkpoint")).decode()
        checkpoint = verify_checkpoint(raw, [peer.log_verifier], peer.log_origin)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        await _contact_failed(federation, peer, exc)
        raise FollowError(f"{peer.name}: checkpoint unavailable: {exc}") from exc
    except (CheckpointError, NoteVerificationError) as exc:
        await _contact_failed(federation, peer, exc)
        raise FollowError(f"{peer.name}: checkpoint does not verify: {exc}") from exc
    now = datetime.now(UTC)
    known = state.checkpoint
    if checkpoint.size < state.verified_size or (
        checkpoint.size == state.verified_size
        and known is not None
        and SignedCheckpoint.parse(known).checkpoint.root != checkpoint.root
    ):
        kind = "rolled-back" if checkpoint.size < state.verified_size else "split-view"
        await record_fork(
            federation.pool,
            peer.log_origin,
            peer.name,
            kind,
            known or "",
            raw,
            {
                "reason": f"the log now shows size {checkpoint.size}, "
                f"after {state.verified_size} was verified"
            },
        )
        return RoundResult(peer.name, 0, state.verified_size, checkpoint.size, 0, "forked")
    compact = CompactRange(state.size, state.frontier)
    read = 0
    try:
        while compact.size < checkpoint.size:
            index = compact.size // TILE_WIDTH
            width = min(TILE_WIDTH, checkpoint.size - index * TILE_WIDTH)
            entries = await _bundle(federation, peer, index, width)
            rows = []
            start = compact.size - index * TILE_WIDTH
            for position in range(start, width):
                data = entries[position]
                row = statement_row(peer, compact.size, data)
                compact.append(leaf_hash(data))
                if row is not None:
                    rows.append(row)
            read += width - start
            await _save_bundle(federation, peer, compact, rows, checkpoint.size)
    except (aiohttp.ClientError, TimeoutError, OSError, TileError, FollowError) as exc:
        await _contact_failed(federation, peer, exc)
        raise FollowError(f"{peer.name}: reading entries failed: {exc}") from exc
    if compact.root() != checkpoint.root:
        await record_fork(
            federation.pool,
            peer.log_origin,
            peer.name,
            "root-mismatch",
            known or "",
            raw,
            {
                "reason": f"the entries served give another root for size {checkpoint.size} "
                "than the signed checkpoint"
            },
        )
        return RoundResult(peer.name, read, state.verified_size, checkpoint.size, 0, "forked")
    replicate = await _verified(federation, peer, state.verified_size, raw, checkpoint.size, jobs)
    metrics.FEDERATION_LAG_ENTRIES.labels(peer.name).set(0)
    metrics.FEDERATION_LAG_SECONDS.labels(peer.name).set(0)
    log.debug("followed", peer=peer.name, size=checkpoint.size, at=now.isoformat())
    return RoundResult(peer.name, read, checkpoint.size, checkpoint.size, replicate, "following")


async def _save_bundle(
    federation: Federation,
    peer: Peer,
    compact: CompactRange,
    rows: list[dict[str, Any]],
    peer_size: int,
) -> None:
    frontier = compact.frontier()
    async with federation.pool.acquire() as conn, conn.transaction():
        if rows:
            await conn.executemany(
                """INSERT INTO federation_statements (peer, log_index, subject, repository,
                       kind, verdict, stated_at, tags)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
                [
                    (
                        peer.name,
                        r["log_index"],
                        r["subject"],
                        r["repository"],
                        r["kind"],
                        r["verdict"],
                        r["stated_at"],
                        r["tags"],
                    )
                    for r in rows
                ],
            )
        await conn.execute(
            """UPDATE federation_follow SET size = $2, frontier = $3, peer_size = $4,
                   last_entry_at = now(), last_contact_at = now(), last_error = NULL,
                   updated_at = now()
               WHERE peer = $1""",
            peer.name,
            compact.size,
            _frontier_json(frontier),
            peer_size,
        )
    metrics.FEDERATION_LAG_ENTRIES.labels(peer.name).set(max(peer_size - compact.size, 0))


async def _verified(
    federation: Federation, peer: Peer, old_size: int, raw: str, size: int, jobs: JobQueue
) -> int:
    """The entries below `size` are proven: their statements count from now on, and the
    images they name in followed repositories are replicated (and judged here)."""
    rules = federation.config.federation.follow
    async with federation.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE federation_follow SET verified_size = $2, checkpoint = $3,
                   last_contact_at = now(), caught_up_at = now(), last_error = NULL,
                   state = 'following', updated_at = now()
               WHERE peer = $1""",
            peer.name,
            size,
            raw,
        )
        rows = await conn.fetch(
            """UPDATE federation_statements SET verified = true
               WHERE peer = $1 AND log_index >= $2 AND log_index < $3 AND NOT verified
               RETURNING repository, subject, kind, verdict, tags""",
            peer.name,
            old_size,
            size,
        )
    subjects: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if not wanted(rules, peer.name, row["repository"]):
            continue
        entry = subjects.setdefault(
            (row["repository"], row["subject"]), {"admitted": False, "tags": set()}
        )
        if row["kind"] == "admission" and row["verdict"] == "admitted":
            entry["admitted"] = True
            entry["tags"].update(row["tags"] or [])
    for (repository, subject), entry in subjects.items():
        # An admitted image is fetched; any other statement (a later FAILED, a new
        # rebuild) only refreshes the attachments of an image this node already holds,
        # and sends it through this node's own pipeline again.
        kind = "replicate" if entry["admitted"] else "resync"
        await jobs.enqueue(
            "federation-replicate",
            f"federation-{kind}:{peer.name}:{repository}@{subject}",
            {
                "peer": peer.name,
                "repository": repository,
                "digest": subject,
                "tags": sorted(entry["tags"]),
                "only_if_present": not entry["admitted"],
            },
        )
    return len(subjects)


async def _contact_failed(federation: Federation, peer: Peer, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"[:500]
    await federation.pool.execute(
        """INSERT INTO federation_follow (peer, last_error) VALUES ($1, $2)
           ON CONFLICT (peer) DO UPDATE SET last_error = $2, updated_at = now()""",
        peer.name,
        error,
    )
    caught_up = await federation.pool.fetchval(
        "SELECT extract(epoch FROM now() - caught_up_at) FROM federation_follow WHERE peer = $1",
        peer.name,
    )
    if caught_up is not None:
        metrics.FEDERATION_LAG_SECONDS.labels(peer.name).set(float(caught_up))

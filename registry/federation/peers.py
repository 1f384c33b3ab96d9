"""Peers: other Zoll nodes pinned by their keys, from the configuration and the database.

Pinning is what makes a peer's statements, checkpoints and cosignatures mean anything:
nothing a peer sends is trusted unless it verifies with a key pinned here.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from attest.keys import PublicKey
from attest.tlog.cosignature import Cosigner
from attest.tlog.note import NoteVerifier
from registry.config import Config, PeerConfig, UpstreamCredentials
from registry.federation.card import CardError, NodeCard
from registry.federation.identity import host_of


class PeerError(ValueError):
    """A peer cannot be pinned or found; the message says why."""


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    log_origin: str
    log_verifier: NoteVerifier
    cosigner: Cosigner
    keys: tuple[PublicKey, ...]
    insecure: bool = False
    credentials: UpstreamCredentials | None = None
    witness: bool = True
    source: str = "pinned"

    @property
    def registry_host(self) -> str:
        return host_of(self.url)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.url,
            "logOrigin": self.log_origin,
            "logKey": self.log_verifier.vkey(),
            "witnessKey": self.cosigner.vkey(),
            "attestationKeyids": [k.keyid for k in self.keys],
            "source": self.source,
        }


def from_config(pc: PeerConfig) -> Peer:
    card = NodeCard(
        pc.name, pc.url, pc.log_origin, pc.log_key, pc.witness_key, tuple(pc.attestation_keys), ""
    )
    try:
        verifier, cosigner = card.log_verifier(), card.cosigner()
        keys = tuple(card.public_keys()) if pc.attestation_keys else ()
    except CardError as exc:
        raise PeerError(f"federation.peers[{pc.name}]: {exc}") from exc
    return Peer(
        pc.name,
        pc.url.rstrip("/"),
        pc.log_origin,
        verifier,
        cosigner,
        keys,
        pc.insecure,
        pc.credentials,
        pc.witness,
        "config",
    )


def _from_row(row: asyncpg.Record, insecure: bool) -> Peer:
    card = NodeCard(
        row["name"],
        row["url"],
        row["log_origin"],
        row["log_key"],
        row["witness_key"],
        tuple(row["attestation_keys"]),
        "",
    )
    return Peer(
        row["name"],
        row["url"],
        row["log_origin"],
        card.log_verifier(),
        card.cosigner(),
        tuple(card.public_keys()),
        insecure=insecure,
    )


async def all_peers(pool: asyncpg.Pool, config: Config) -> list[Peer]:
    """Configured peers, then pinned ones (a configured name wins)."""
    peers = {pc.name: from_config(pc) for pc in config.federation.peers}
    for row in await pool.fetch("SELECT * FROM federation_peers ORDER BY name"):
        if row["name"] not in peers:
            peers[row["name"]] = _from_row(row, row["url"].startswith("http://"))
    return list(peers.values())


async def peer(pool: asyncpg.Pool, config: Config, name: str) -> Peer:
    for candidate in await all_peers(pool, config):
        if candidate.name == name:
            return candidate
    raise PeerError(f"no peer named {name!r} (zoll peers list)")


async def pin(
    pool: asyncpg.Pool, config: Config, card: NodeCard, own_origin: str, added_by: str
) -> Peer:
    """Store a verified card as a pinned peer; refuses this node itself and clashes."""
    if card.log_origin == own_origin:
        raise PeerError(f"{card.url} is this node (same log origin {own_origin})")
    if any(pc.name == card.name for pc in config.federation.peers):
        raise PeerError(f"peer {card.name!r} is set in the configuration; change it there")
    try:
        await pool.execute(
            """INSERT INTO federation_peers (name, url, log_origin, log_key, witness_key,
                   attestation_keys, card, added_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url,
                   log_origin = EXCLUDED.log_origin, log_key = EXCLUDED.log_key,
                   witness_key = EXCLUDED.witness_key,
                   attestation_keys = EXCLUDED.attestation_keys, card = EXCLUDED.card,
                   added_at = now(), added_by = EXCLUDED.added_by""",
            card.name,
            card.url,
            card.log_origin,
            card.log_key,
            card.witness_key,
            list(card.attestation_keys),
            card.to_json(),
            added_by,
        )
    except asyncpg.UniqueViolationError as exc:
        raise PeerError(f"another peer already has the log origin {card.log_origin}") from exc
    return await peer(pool, config, card.name)


async def unpin(pool: asyncpg.Pool, name: str) -> bool:
    return (await pool.execute("DELETE FROM federation_peers WHERE name = $1", name)) != "DELETE 0"

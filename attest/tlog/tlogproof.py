"""Offline-verifiable proofs that an entry is in a log (c2sp.org/tlog-proof@v1).

A proof carries the entry's index, its inclusion path and the checkpoint the path leads
to, with whatever witness cosignatures that checkpoint had. Anyone holding the log's key
(and the witnesses' keys) can check it without asking the log: Zoll attaches one to
every attestation it publishes, so "which statement of a signer is the latest" and "was
it witnessed" can be answered from what travels with the image.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from attest.tlog.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint, verify_checkpoint
from attest.tlog.cosignature import Cosignature, Cosigner, cosignatures
from attest.tlog.hashing import HASH_SIZE
from attest.tlog.note import NoteVerifier
from attest.tlog.proofs import verify_inclusion

HEADER: Final = "c2sp.org/tlog-proof@v1"
MAX_PROOF_BYTES: Final = 64 * 1024


class TlogProofError(ValueError):
    """Text is not a well-formed tlog proof."""


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint: SignedCheckpoint
    extra: bytes | None = None

    def to_text(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint.to_text()

    @classmethod
    def parse(cls, raw: str | bytes) -> TlogProof:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if len(text) > MAX_PROOF_BYTES:
            raise TlogProofError(f"a tlog proof is larger than {MAX_PROOF_BYTES} bytes")
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise TlogProofError("a tlog proof needs an empty line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise TlogProofError(f"a tlog proof starts with {HEADER!r}")
        rest = lines[1:]
        extra = None
        try:
            if rest and rest[0].startswith("extra "):
                extra = base64.b64decode(rest.pop(0)[len("extra ") :], validate=True)
            if not rest or not rest[0].startswith("index "):
                raise TlogProofError("a tlog proof names the entry's index")
            index_text = rest.pop(0)[len("index ") :]
            if not index_text.isdigit() or (index_text != "0" and index_text.startswith("0")):
                raise TlogProofError(f"index {index_text!r} is not a plain decimal")
            hashes = tuple(base64.b64decode(line, validate=True) for line in rest)
        except (binascii.Error, ValueError) as exc:
            if isinstance(exc, TlogProofError):
                raise
            raise TlogProofError(f"malformed base64 in tlog proof: {exc}") from exc
        if any(len(h) != HASH_SIZE for h in hashes):
            raise TlogProofError("every inclusion proof line is one SHA-256 hash")
        try:
            checkpoint = SignedCheckpoint.parse(note)
        except CheckpointError as exc:
            raise TlogProofError(f"the proof's checkpoint is malformed: {exc}") from exc
        return cls(int(index_text), hashes, checkpoint, extra)


@dataclass(frozen=True)
class VerifiedTlogProof:
    index: int
    checkpoint: Checkpoint
    witnesses: tuple[Cosignature, ...]


def verify_tlog_proof(
    proof: TlogProof,
    leaf_hash: bytes,
    log_keys: Sequence[NoteVerifier],
    witnesses: Sequence[Cosigner] = (),
    origin: str | None = None,
) -> VerifiedTlogProof:
    """Check the checkpoint's log signature and the inclusion of `leaf_hash` at the
    proof's index; return which trusted witnesses cosigned. Raises the checkpoint's or
    the proof's verification error otherwise."""
    checkpoint = verify_checkpoint(proof.checkpoint.to_text(), log_keys, origin)
    if proof.index >= checkpoint.size:
        raise TlogProofError(f"index {proof.index} is outside a tree of {checkpoint.size}")
    verify_inclusion(proof.index, checkpoint.size, leaf_hash, list(proof.hashes), checkpoint.root)
    return VerifiedTlogProof(
        proof.index, checkpoint, tuple(cosignatures(proof.checkpoint.note, witnesses))
    )

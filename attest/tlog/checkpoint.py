"""Checkpoints (c2sp.org/tlog-checkpoint): origin, tree size and root hash in a signed note.

A client keeps the last checkpoint it verified; every newer one must come with a
consistency proof from it. Two checkpoints of one origin that cannot be reconciled are
a fork: proof that the log showed different histories to different people.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from attest.signing import Signer
from attest.tlog.hashing import HASH_SIZE
from attest.tlog.note import Note, NoteError, NoteVerifier, sign_note, verify_note
from attest.tlog.proofs import ConsistencyProof, ProofVerificationError, verify_consistency

_SIZE_RE: Final = re.compile(r"^(0|[1-9][0-9]{0,19})$")


class CheckpointError(ValueError):
    """Text is not a well-formed checkpoint."""


class ForkDetected(ProofVerificationError):
    """Two checkpoints of the same log describe histories that cannot both be true."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise CheckpointError("checkpoint needs origin, size and root on non-empty lines")
        origin, size_text, root_text, *extensions = lines
        if any(c.isspace() or c == "+" for c in origin):
            raise CheckpointError(f"origin {origin!r} contains spaces or '+'")
        if _SIZE_RE.match(size_text) is None or int(size_text) >= 1 << 64:
            raise CheckpointError(
                f"tree size {size_text!r} is not a decimal without zeros in front"
            )
        try:
            root = base64.b64decode(root_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError("root hash is not valid base64") from exc
        if len(root) != HASH_SIZE:
            raise CheckpointError(f"root hash has {len(root)} bytes, not {HASH_SIZE}")
        return cls(origin, int(size_text), root, tuple(extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: Note

    def to_text(self) -> str:
        return self.note.to_text()

    @classmethod
    def parse(cls, raw: bytes | str) -> SignedCheckpoint:
        """Parse without verifying signatures (use `verify_checkpoint` for trust)."""
        try:
            note = Note.parse(raw)
        except NoteError as exc:
            raise CheckpointError(f"not a signed note: {exc}") from exc
        return cls(Checkpoint.from_text(note.text), note)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> SignedCheckpoint:
    """Sign with the log's key; the key name is the origin, as the spec recommends."""
    return SignedCheckpoint(checkpoint, sign_note(checkpoint.text(), checkpoint.origin, signer))


def verify_checkpoint(
    raw: bytes | str, trusted: Sequence[NoteVerifier], origin: str | None = None
) -> Checkpoint:
    """Parse a signed checkpoint and check a trusted key signed it (and its origin)."""
    signed = SignedCheckpoint.parse(raw)
    verify_note(signed.note, trusted)
    if origin is not None and signed.checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for log {signed.checkpoint.origin!r}, not {origin!r}")
    return signed.checkpoint


def verify_extension(old: Checkpoint, new: Checkpoint, proof: ConsistencyProof) -> None:
    """Raise unless `new` extends `old`.

    ForkDetected when both are signed for one size with different roots: that pair alone
    proves the log misbehaved. Any other failure means the proof does not show
    consistency (a tampered proof, or a fork the log will not admit to).
    """
    if old.origin != new.origin:
        raise CheckpointError(f"checkpoints of different logs: {old.origin!r}, {new.origin!r}")
    if old.size > new.size:
        old, new = new, old
    if old.size == new.size:
        if old.root != new.root:
            raise ForkDetected(f"two different roots signed for tree size {old.size}: fork")
        return
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise ProofVerificationError(
            f"proof is for sizes {proof.old_size}→{proof.new_size}, "
            f"checkpoints are {old.size}→{new.size}"
        )
    try:
        verify_consistency(old.size, new.size, old.root, new.root, proof.hashes)
    except ProofVerificationError as exc:
        raise ProofVerificationError(
            f"checkpoint {new.size} is not proven to extend checkpoint {old.size}: {exc}"
        ) from exc

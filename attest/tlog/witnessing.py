"""The tlog-witness protocol (c2sp.org/tlog-witness): `add-checkpoint` requests and the
checks a witness makes before it cosigns.

A log asks a witness to cosign its newest checkpoint, proving consistency from the size
the witness cosigned last. The witness never cosigns two trees of one log that cannot
both be true: not across requests, not across restarts (the caller persists its state
before it answers, atomically with the check).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from attest.tlog.checkpoint import CheckpointError, SignedCheckpoint
from attest.tlog.hashing import EMPTY_ROOT, HASH_SIZE
from attest.tlog.note import NoteVerificationError, NoteVerifier, verify_note
from attest.tlog.proofs import ProofVerificationError, verify_consistency

MAX_PROOF_LINES: Final = 63
MAX_REQUEST_BYTES: Final = 1 << 20
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"


class WitnessRefusal(Exception):
    """The witness will not cosign; `status` is the protocol's HTTP status."""

    def __init__(self, status: int, message: str, *, evidence: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.evidence = evidence
        """True when the request is itself proof that the log misbehaved."""


class SizeConflict(WitnessRefusal):
    """409: the old size is not what the witness cosigned last (`size` is)."""

    def __init__(self, size: int) -> None:
        super().__init__(409, f"the latest cosigned size is {size}")
        self.size = size


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: SignedCheckpoint

    def to_bytes(self) -> bytes:
        lines = [f"old {self.old_size}"] + [base64.b64encode(h).decode() for h in self.proof]
        return ("\n".join(lines) + "\n\n" + self.checkpoint.to_text()).encode()

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        if len(body) > MAX_REQUEST_BYTES:
            raise WitnessRefusal(400, f"request larger than {MAX_REQUEST_BYTES} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessRefusal(400, "request is not UTF-8") from None
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise WitnessRefusal(400, "an empty line must separate the proof from the checkpoint")
        lines = head.split("\n")
        first = lines[0]
        size_text = first[len("old ") :] if first.startswith("old ") else ""
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise WitnessRefusal(400, "the first line must be `old <size>`")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise WitnessRefusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
        try:
            proof = tuple(base64.b64decode(line, validate=True) for line in lines[1:])
        except (binascii.Error, ValueError):
            raise WitnessRefusal(400, "a consistency proof line is not base64") from None
        if any(len(h) != HASH_SIZE for h in proof):
            raise WitnessRefusal(400, "a consistency proof line is not one SHA-256 hash")
        try:
            checkpoint = SignedCheckpoint.parse(note)
        except CheckpointError as exc:
            raise WitnessRefusal(400, f"malformed checkpoint: {exc}") from None
        return cls(int(size_text), proof, checkpoint)


@dataclass(frozen=True)
class Cosigned:
    """What a witness knows of a log: the latest checkpoint it cosigned."""

    size: int
    root: bytes


def check_add_checkpoint(
    request: AddCheckpoint, log_keys: Sequence[NoteVerifier], known: Cosigned | None
) -> None:
    """Raise WitnessRefusal unless the witness may cosign `request.checkpoint` and make it
    its new state; `known` is its current state for the log (None: never cosigned)."""
    checkpoint = request.checkpoint.checkpoint
    try:
        verify_note(request.checkpoint.note, log_keys)
    except NoteVerificationError as exc:
        raise WitnessRefusal(403, str(exc)) from None
    if request.old_size > checkpoint.size:
        raise WitnessRefusal(400, "the old size is larger than the checkpoint's size")
    current = known.size if known is not None else 0
    if request.old_size != current:
        raise SizeConflict(current)
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        raise WitnessRefusal(422, "a checkpoint of size 0 must have the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise WitnessRefusal(422, "no consistency proof is needed from size 0")
        return
    assert known is not None
    if request.old_size == checkpoint.size:
        if checkpoint.root != known.root:
            raise WitnessRefusal(
                422, f"a different root for size {checkpoint.size}: fork", evidence=True
            )
        return
    try:
        verify_consistency(
            request.old_size, checkpoint.size, known.root, checkpoint.root, request.proof
        )
    except ProofVerificationError as exc:
        raise WitnessRefusal(
            422,
            f"size {checkpoint.size} is not proven to extend size {request.old_size}: {exc}",
            evidence=True,
        ) from None

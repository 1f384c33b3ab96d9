"""Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 type 0x04).

A cosignature is a note signature line added to a log's checkpoint by a witness, saying
"as of this time, this is the largest tree of that log I have seen, and it is consistent
with everything I saw before". Clients that require cosignatures from several witnesses
cannot be shown a split view unless those witnesses collude.

The signed message is `cosignature/v1\\ntime <t>\\n` followed by the checkpoint's note
body; the signature is `u64 timestamp || 64-byte Ed25519 signature`, and the key id is
SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4]. Keys are published as vkeys with type 0x04.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest.keys import PublicKey
from attest.signing import Signer
from attest.tlog.note import Note, NoteError, NoteSignature, check_key_name

SIG_COSIGNATURE_ED25519: Final = 0x04
HEADER: Final = "cosignature/v1\n"
MAX_TIMESTAMP: Final = (1 << 63) - 1


class CosignatureError(ValueError):
    """A cosigner key or cosignature cannot be used (malformed, wrong algorithm)."""


def _raw(public: PublicKey) -> bytes:
    if public.algorithm != "ed25519":
        raise CosignatureError(f"cosigner keys are Ed25519, not {public.algorithm}")
    return public.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signed_message(note_text: str, timestamp: int) -> bytes:
    """What a v1 cosignature signs: header, time line, then the whole checkpoint body."""
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp} is out of range")
    return f"{HEADER}time {timestamp}\n{note_text}".encode()


@dataclass(frozen=True)
class Cosigner:
    """A witness's public identity: its name and Ed25519 key."""

    name: str
    public: PublicKey

    @property
    def key_hash(self) -> int:
        digest = hashlib.sha256(
            self.name.encode() + b"\n" + bytes([SIG_COSIGNATURE_ED25519]) + _raw(self.public)
        ).digest()
        value: int = struct.unpack(">I", digest[:4])[0]
        return value

    def vkey(self) -> str:
        blob = base64.b64encode(bytes([SIG_COSIGNATURE_ED25519]) + _raw(self.public)).decode()
        return f"{self.name}+{self.key_hash:08x}+{blob}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Cosigner:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise CosignatureError("a cosigner key must look like name+hash8+base64key")
        try:
            name = check_key_name(parts[0])
            blob = base64.b64decode(parts[2], validate=True)
            claimed = int(parts[1], 16)
        except (NoteError, binascii.Error, ValueError) as exc:
            raise CosignatureError(f"malformed cosigner key: {exc}") from exc
        if len(blob) != 33 or blob[0] != SIG_COSIGNATURE_ED25519:
            raise CosignatureError("a cosigner key holds type 0x04 and a 32-byte Ed25519 key")
        public = PublicKey.from_crypto(ed25519.Ed25519PublicKey.from_public_bytes(blob[1:]))
        cosigner = cls(name, public)
        if cosigner.key_hash != claimed:
            raise CosignatureError(f"cosigner key hash {claimed:08x} does not match its key")
        return cosigner

    def verify(self, note_text: str, signature: NoteSignature) -> int | None:
        """The timestamp if `signature` is this cosigner's valid cosignature, else None."""
        if signature.name != self.name or signature.key_hash != self.key_hash:
            return None
        if len(signature.signature) != 8 + 64:
            return None
        (timestamp,) = struct.unpack(">Q", signature.signature[:8])
        try:
            message = signed_message(note_text, timestamp)
        except CosignatureError:
            return None
        return timestamp if self.public.verify(signature.signature[8:], message) else None


@dataclass(frozen=True)
class Cosignature:
    cosigner: Cosigner
    timestamp: int


def cosign(
    note_text: str, name: str, signer: Signer, timestamp: int | None = None
) -> NoteSignature:
    """A witness's cosignature line over a checkpoint body (already verified by the caller)."""
    cosigner = Cosigner(check_key_name(name), signer.public)
    when = int(time.time()) if timestamp is None else timestamp
    signature = signer.sign(signed_message(note_text, when))
    line = NoteSignature(name, cosigner.key_hash, struct.pack(">Q", when) + signature)
    if cosigner.verify(note_text, line) != when:
        raise CosignatureError("the cosignature does not verify with the witness's own key")
    return line


def cosignatures(note: Note, trusted: Sequence[Cosigner]) -> list[Cosignature]:
    """The valid cosignatures on `note` by `trusted` witnesses (one per witness); lines of
    unknown keys are ignored, as the note spec demands, and so are invalid ones."""
    found: dict[str, Cosignature] = {}
    for line in note.signatures:
        for cosigner in trusted:
            when = cosigner.verify(note.text, line)
            if when is not None and cosigner.name not in found:
                found[cosigner.name] = Cosignature(cosigner, when)
    return list(found.values())


def with_signatures(note: Note, lines: Sequence[NoteSignature]) -> Note:
    """`note` with `lines` added (a line already present is not repeated)."""
    merged = list(note.signatures)
    for line in lines:
        if line not in merged:
            merged.append(line)
    return Note(note.text, tuple(merged))

"""C2SP signed notes (c2sp.org/signed-note): text plus `— name base64(keyhash||sig)` lines.

Zoll signs checkpoints with its service key: Ed25519 (signature type 0x01) or ECDSA P-256
over SHA-256 (type 0x02, as transparency-dev/witness and Rekor v2 use). Verifier keys are
published in the Go `note` vkey form `name+hash+base64(type||key)` so existing tools and
witnesses can read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest.keys import KeyLoadError, PublicKey
from attest.signing import Signer

SIG_ED25519: Final = 0x01
SIG_ECDSA: Final = 0x02
EM_DASH: Final = "\u2014"
MAX_NOTE_BYTES: Final = 1 << 20
MAX_SIGNATURES: Final = 100


class NoteError(ValueError):
    """Bytes are not a well-formed signed note, or a key cannot sign/verify notes."""


class NoteVerificationError(ValueError):
    """No trusted key verified the note, or a trusted key's signature is bad."""


def check_key_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")
    return name


def _key_material(public: PublicKey) -> tuple[int, bytes]:
    """Signature type byte and the key encoding the note spec hashes for the key id."""
    if public.algorithm == "ed25519":
        raw = public.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return SIG_ED25519, raw
    if public.algorithm == "ecdsa-p256":
        der = public.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return SIG_ECDSA, der
    raise NoteError(f"{public.algorithm} keys cannot sign notes; use ed25519 or ecdsa-p256")


def key_hash(name: str, public: PublicKey) -> int:
    """The 32-bit key id of c2sp.org/signed-note for this (name, key) pair."""
    kind, material = _key_material(public)
    if kind == SIG_ED25519:
        digest = hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + material).digest()
    else:  # ECDSA: truncated SHA-256 of the SPKI, as the spec assigns for type 0x02
        digest = hashlib.sha256(material).digest()
    value: int = struct.unpack(">I", digest[:4])[0]
    return value


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: int
    signature: bytes

    def line(self) -> str:
        blob = struct.pack(">I", self.key_hash) + self.signature
        return f"{EM_DASH} {self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A note's text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)

    @classmethod
    def parse(cls, raw: bytes | str) -> Note:
        data = raw.encode() if isinstance(raw, str) else raw
        if len(data) > MAX_NOTE_BYTES:
            raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError("note is not valid UTF-8") from exc
        if any(ord(c) < 0x20 and c != "\n" for c in text):
            raise NoteError("note contains control characters other than newline")
        split = text.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no blank line before its signatures")
        body, block = text[: split + 1], text[split + 2 :]
        if not block.endswith("\n"):
            raise NoteError("the last signature line must end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"note has more than {MAX_SIGNATURES} signatures")
        sigs = []
        for line in lines:
            prefix = EM_DASH + " "
            parts = line[len(prefix) :].split(" ") if line.startswith(prefix) else []
            if len(parts) != 2:
                raise NoteError(f"malformed signature line {line[:80]!r}")
            name, b64 = check_key_name(parts[0]), parts[1]
            try:
                blob = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise NoteError(f"signature of {name} is not valid base64") from exc
            if len(blob) < 5:
                raise NoteError(f"signature of {name} is too short")
            sigs.append(NoteSignature(name, struct.unpack(">I", blob[:4])[0], blob[4:]))
        return cls(body, tuple(sigs))


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted note key: its name, key hash and public key."""

    name: str
    key_hash: int
    public: PublicKey

    @classmethod
    def for_key(cls, name: str, public: PublicKey) -> NoteVerifier:
        return cls(check_key_name(name), key_hash(name, public), public)

    def vkey(self) -> str:
        """The `name+hash+base64(type||key)` form of Go's note package and witnesses."""
        kind, material = _key_material(self.public)
        blob = base64.b64encode(bytes([kind]) + material).decode()
        return f"{self.name}+{self.key_hash:08x}+{blob}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise NoteError("verifier key must look like name+hash8+base64key")
        name = check_key_name(parts[0])
        try:
            blob = base64.b64decode(parts[2], validate=True)
            claimed = int(parts[1], 16)
        except (binascii.Error, ValueError) as exc:
            raise NoteError("verifier key has a malformed hash or key") from exc
        if len(blob) < 2:
            raise NoteError("verifier key is too short")
        try:
            if blob[0] == SIG_ED25519:
                public = PublicKey.from_crypto(ed25519.Ed25519PublicKey.from_public_bytes(blob[1:]))
            elif blob[0] == SIG_ECDSA:
                public = PublicKey.from_crypto(serialization.load_der_public_key(blob[1:]))
            else:
                raise NoteError(f"unsupported note signature type 0x{blob[0]:02x}")
        except (ValueError, KeyLoadError) as exc:
            raise NoteError(f"verifier key does not hold a usable public key: {exc}") from exc
        verifier = cls.for_key(name, public)
        if verifier.key_hash != claimed:
            raise NoteError(f"verifier key hash {claimed:08x} does not match its key")
        return verifier

    def verify(self, text: str, signature: bytes) -> bool:
        return self.public.verify(signature, text.encode())


def sign_note(text: str, name: str, signer: Signer) -> Note:
    """Sign `text` (which must end in a newline) as `name`."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    verifier = NoteVerifier.for_key(name, signer.public)
    sig = signer.sign(text.encode())
    if not verifier.verify(text, sig):
        raise NoteError(f"the signature from key {signer.public.keyid} does not verify")
    return Note(text, (NoteSignature(name, verifier.key_hash, sig),))


def verify_note(note: Note, trusted: Sequence[NoteVerifier]) -> list[NoteVerifier]:
    """The trusted keys that signed `note`; raise if none did or one signature is bad."""
    verified: list[NoteVerifier] = []
    for sig in note.signatures:
        for key in trusted:
            if key.name != sig.name or key.key_hash != sig.key_hash:
                continue  # unknown keys are ignored, as the spec demands
            if not key.verify(note.text, sig.signature):
                raise NoteVerificationError(f"the signature of {key.name} on the note is invalid")
            if key not in verified:
                verified.append(key)
    if not verified:
        names = ", ".join(sorted({k.name for k in trusted})) or "none"
        raise NoteVerificationError(f"the note is not signed by any trusted key ({names})")
    return verified

"""Witness cosignatures (c2sp.org/tlog-cosignature) and tlog proofs (c2sp.org/tlog-proof):
the bytes are checked against the spec's definitions computed independently here."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import serialization

from attest.keys import PrivateKey
from attest.tlog.checkpoint import Checkpoint, sign_checkpoint
from attest.tlog.cosignature import (
    CosignatureError,
    Cosigner,
    cosign,
    cosignatures,
    with_signatures,
)
from attest.tlog.hashing import leaf_hash
from attest.tlog.note import Note, NoteVerifier, verify_note
from attest.tlog.proofs import ProofVerificationError
from attest.tlog.tlogproof import TlogProof, TlogProofError, verify_tlog_proof
from tests.attest_sign import naive_merkle


def _raw(key: PrivateKey) -> bytes:
    return key.public.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_cosignature_bytes_follow_the_spec() -> None:
    log_key, witness_key = PrivateKey.generate("ed25519"), PrivateKey.generate("ed25519")
    signed = sign_checkpoint(Checkpoint("example.org/log", 5, b"\x01" * 32), log_key)
    line = cosign(signed.note.text, "witness.example/w1", witness_key, timestamp=1679315147)
    # key id = SHA-256(name || "\n" || 0x04 || key)[:4]
    expected_id = hashlib.sha256(b"witness.example/w1\n\x04" + _raw(witness_key)).digest()[:4]
    assert struct.pack(">I", line.key_hash) == expected_id
    timestamp, signature = line.signature[:8], line.signature[8:]
    assert struct.unpack(">Q", timestamp) == (1679315147,)
    message = b"cosignature/v1\ntime 1679315147\n" + signed.note.text.encode()
    witness_key.public.key.verify(signature, message)  # type: ignore[call-arg]
    # the line is an ordinary note signature line: the log's own signature still verifies
    note = Note.parse(with_signatures(signed.note, [line]).to_text())
    log_verifier = NoteVerifier.for_key("example.org/log", log_key.public)
    assert verify_note(note, [log_verifier]) == [log_verifier]
    cosigner = Cosigner("witness.example/w1", witness_key.public)
    found = cosignatures(note, [cosigner])
    assert [(c.cosigner.name, c.timestamp) for c in found] == [("witness.example/w1", 1679315147)]
    # vkeys carry type 0x04 and round-trip
    vkey = cosigner.vkey()
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    assert Cosigner.from_vkey(vkey) == cosigner


def test_cosignatures_of_other_keys_tampered_text_or_other_names_do_not_count() -> None:
    log_key = PrivateKey.generate("ed25519")
    w1, w2 = PrivateKey.generate("ed25519"), PrivateKey.generate("ed25519")
    signed = sign_checkpoint(Checkpoint("example.org/log", 9, b"\x02" * 32), log_key)
    lines = [cosign(signed.note.text, "w1", w1), cosign(signed.note.text, "w2", w2)]
    note = with_signatures(signed.note, lines)
    trusted = [Cosigner("w1", w1.public)]
    assert [c.cosigner.name for c in cosignatures(note, trusted)] == ["w1"]
    other = sign_checkpoint(Checkpoint("example.org/log", 9, b"\x03" * 32), log_key)
    assert cosignatures(with_signatures(other.note, lines), trusted) == []  # another root
    assert cosignatures(note, [Cosigner("w1-renamed", w1.public)]) == []
    with pytest.raises(CosignatureError, match="Ed25519"):
        Cosigner("w", PrivateKey.generate("ecdsa-p256").public).vkey()
    with pytest.raises(CosignatureError, match="hash"):
        vkey = Cosigner("w1", w1.public).vkey().split("+", 2)
        Cosigner.from_vkey("+".join([vkey[0], "00000000", vkey[2]]))


def test_tlog_proof_round_trips_and_verifies_inclusion_and_witnesses() -> None:
    log_key, witness = PrivateKey.generate("ecdsa-p256"), PrivateKey.generate("ed25519")
    leaves = [f"entry {n}".encode() for n in range(13)]
    hashes = [leaf_hash(x) for x in leaves]
    root = naive_merkle.mth(hashes)
    signed = sign_checkpoint(Checkpoint("example.org/log", 13, root), log_key)
    cosigned = with_signatures(signed.note, [cosign(signed.note.text, "w1", witness)])
    path = naive_merkle.path(6, hashes)
    from attest.tlog.checkpoint import SignedCheckpoint

    proof = TlogProof(6, tuple(path), SignedCheckpoint.parse(cosigned.to_text()), b"ctx")
    text = proof.to_text()
    assert text.startswith("c2sp.org/tlog-proof@v1\nextra Y3R4\nindex 6\n")
    parsed = TlogProof.parse(text)
    assert parsed == proof
    log_keys = [NoteVerifier.for_key("example.org/log", log_key.public)]
    verified = verify_tlog_proof(parsed, hashes[6], log_keys, [Cosigner("w1", witness.public)])
    assert verified.index == 6 and verified.checkpoint.size == 13
    assert [c.cosigner.name for c in verified.witnesses] == ["w1"]
    assert verify_tlog_proof(parsed, hashes[6], log_keys).witnesses == ()
    with pytest.raises(ProofVerificationError):
        verify_tlog_proof(parsed, hashes[7], log_keys)  # another entry is not at index 6
    for broken in (
        text.replace("index 6", "index 06"),
        text.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"),
        text.replace("\n\n", "\n"),
    ):
        with pytest.raises(TlogProofError):
            TlogProof.parse(broken)

"""Signed notes and checkpoints: published Go vectors, a real Rekor v2 checkpoint, forks."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest.keys import PrivateKey, PublicKey
from attest.tlog.checkpoint import (
    Checkpoint,
    CheckpointError,
    ForkDetected,
    SignedCheckpoint,
    sign_checkpoint,
    verify_checkpoint,
    verify_extension,
)
from attest.tlog.hashing import leaf_hash
from attest.tlog.note import (
    Note,
    NoteError,
    NoteVerificationError,
    NoteVerifier,
    sign_note,
    verify_note,
)
from attest.tlog.proofs import ConsistencyProof, ProofVerificationError, verify_inclusion
from tests.attest_sign import naive_merkle
from tests.support.paths import FIXTURES

# The example of golang.org/x/mod/sumdb/note (package documentation and note_test.go):
# a verifier key, its signer key, a text and the note Go produces (Ed25519 is deterministic).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_published_note_verifies_and_we_sign_it_byte_for_byte() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.vkey() == GO_VKEY
    assert verify_note(Note.parse(GO_NOTE), [verifier]) == [verifier]
    seed = base64.b64decode(GO_SKEY_B64)[1:]
    signer = PrivateKey(
        ed25519.Ed25519PrivateKey.from_private_bytes(seed),
        PublicKey.from_crypto(ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()),
    )
    assert sign_note(GO_TEXT, "PeterNeumann", signer).to_text() == GO_NOTE
    with pytest.raises(NoteVerificationError, match="invalid"):
        verify_note(Note.parse(GO_NOTE.replace("cryptography", "cryptographY")), [verifier])


def test_a_real_rekor_v2_checkpoint_and_inclusion_proof_verify() -> None:
    bundle = json.loads((FIXTURES / "sigstore" / "staging-rekor-v2.txt.sigstore.json").read_bytes())
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    proof = entry["inclusionProof"]
    # Rekor v2 names its key by the first four bytes of the log id (SHA-256 of the SPKI).
    log_id = base64.b64decode(entry["logId"]["keyId"])
    # log2025-alpha1.rekor.sigstage.dev, from the staging trusted root beside the bundle
    public = PublicKey.from_pem(
        b"-----BEGIN PUBLIC KEY-----\n"
        b"MCowBQYDK2VwAyEAPn+AREHoBaZ7wgS1zBqpxmLSGnyhxXj4lFxSdWVB8o8=\n"
        b"-----END PUBLIC KEY-----\n"
    )
    rekor = NoteVerifier(
        "log2025-alpha1.rekor.sigstage.dev", struct.unpack(">I", log_id[:4])[0], public
    )
    checkpoint = verify_checkpoint(proof["checkpoint"]["envelope"], [rekor])
    assert checkpoint.size == int(proof["treeSize"]) == 646
    assert base64.b64encode(checkpoint.root).decode() == proof["rootHash"]
    leaf = leaf_hash(base64.b64decode(entry["canonicalizedBody"]))
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    verify_inclusion(int(proof["logIndex"]), checkpoint.size, leaf, hashes, checkpoint.root)
    with pytest.raises(ProofVerificationError):
        verify_inclusion(644, checkpoint.size, leaf, hashes, checkpoint.root)
    tampered = proof["checkpoint"]["envelope"].replace("\n646\n", "\n647\n")
    with pytest.raises(NoteVerificationError):
        verify_checkpoint(tampered, [rekor])


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_zoll_checkpoints_sign_verify_and_publish_their_key(algorithm: str) -> None:
    key = PrivateKey.generate(algorithm)  # type: ignore[arg-type]
    cp = Checkpoint("zoll.example/log", 8, bytes.fromhex(naive_merkle.mth([b"\x00" * 32]).hex()))
    signed = sign_checkpoint(cp, key)
    text = signed.to_text()
    assert text.startswith("zoll.example/log\n8\n") and "\n\n— zoll.example/log " in text
    verifier = NoteVerifier.from_vkey(NoteVerifier.for_key("zoll.example/log", key.public).vkey())
    assert verify_checkpoint(text, [verifier], origin="zoll.example/log") == cp
    with pytest.raises(CheckpointError, match=r"not 'other\.example/log'"):
        verify_checkpoint(text, [verifier], origin="other.example/log")
    stranger = NoteVerifier.for_key("zoll.example/log", PrivateKey.generate(algorithm).public)  # type: ignore[arg-type]
    with pytest.raises(NoteVerificationError, match="not signed by any trusted key"):
        verify_checkpoint(text, [stranger])
    forged = SignedCheckpoint.parse(text).note.signatures[0]
    bad = Note(Checkpoint("zoll.example/log", 9, cp.root).text(), (forged,))
    with pytest.raises(NoteVerificationError, match="invalid"):
        verify_checkpoint(bad.to_text(), [verifier])


def test_malformed_notes_and_checkpoints_get_clear_errors() -> None:
    with pytest.raises(NoteError, match="blank line"):
        Note.parse("just text\n")
    with pytest.raises(NoteError, match="control"):
        Note.parse("a\x07\n\n— k AAAAAAA=\n")
    with pytest.raises(NoteError, match="malformed"):
        Note.parse("a\n\n- k AAAAAAAA\n")
    with pytest.raises(CheckpointError, match="zeros"):
        Checkpoint.from_text("o\n007\n" + base64.b64encode(b"\0" * 32).decode() + "\n")
    with pytest.raises(CheckpointError, match="32"):
        Checkpoint.from_text("o\n7\nAAAA\n")
    with pytest.raises(NoteError, match="hash"):
        NoteVerifier.from_vkey(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_two_heads_for_one_size_are_a_fork() -> None:
    hashes = [naive_merkle.leaf(bytes([i])) for i in range(8)]
    old = Checkpoint("zoll.example/log", 5, naive_merkle.mth(hashes[:5]))
    new = Checkpoint("zoll.example/log", 8, naive_merkle.mth(hashes))
    verify_extension(old, new, ConsistencyProof(5, 8, tuple(naive_merkle.proof(5, hashes))))
    forked = [*hashes[:3], naive_merkle.leaf(b"evil"), *hashes[4:]]
    other = Checkpoint("zoll.example/log", 5, naive_merkle.mth(forked[:5]))
    with pytest.raises(ForkDetected):
        verify_extension(old, other, ConsistencyProof(5, 5, ()))
    forked_new = Checkpoint("zoll.example/log", 8, naive_merkle.mth(forked))
    with pytest.raises(ProofVerificationError, match="not proven to extend"):
        verify_extension(
            old, forked_new, ConsistencyProof(5, 8, tuple(naive_merkle.proof(5, forked)))
        )
    with pytest.raises(ProofVerificationError, match="proof is for sizes"):
        verify_extension(old, new, ConsistencyProof(4, 8, tuple(naive_merkle.proof(4, hashes))))

"""DSSE signatures are matched to trusted keys by the key, not by how the signer spelled
its `keyid`: securesystemslib (in-toto's signer) and KMS signers use other formats than
Zoll's SHA-256 of the SPKI. The keyid is not signed, so it can only ever be a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import CryptoSigner

from attest import dsse
from attest.keys import PrivateKey
from attest.results import Reason
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from tests.attest_verify.conftest import SignedImage
from tests.attest_verify.cosign_writer import statement

PREDICATE = "https://slsa.dev/provenance/v1"
KMS_KEYID = (
    "awskms:///arn:aws:kms:eu-central-1:111122223333:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
)


def policy_for(key_file: Path) -> TrustPolicy:
    return TrustPolicy.from_yaml(
        f"""
signers: {{ci: {{key: {key_file}}}}}
require:
  attestations: [{{predicate_type: {PREDICATE}, signers: [ci]}}]
"""
    )


def securesystemslib_envelope(key: PrivateKey, payload: bytes) -> bytes:
    """What in-toto's own tooling writes: its keyid is a hash of its key JSON."""
    envelope = SslibEnvelope(payload, "application/vnd.in-toto+json", {})
    envelope.sign(CryptoSigner(key.key))  # type: ignore[arg-type]
    out = envelope.to_dict()
    assert out["signatures"][0]["keyid"] != key.public.keyid
    return json.dumps(out).encode()


def respelled(key: PrivateKey, payload: bytes, keyid: str) -> bytes:
    envelope = dsse.sign("application/vnd.in-toto+json", payload, [key]).to_json()
    envelope["signatures"][0]["keyid"] = keyid
    return json.dumps(envelope).encode()


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
async def test_a_trusted_key_verifies_whatever_its_keyid_spelling(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
    algorithm: str,
) -> None:
    key = keys[algorithm]
    payload = statement(image.digest, PREDICATE, {"buildDefinition": {}})
    image.writer.attach_envelope(
        image.digest, securesystemslib_envelope(key, payload), PREDICATE, {}
    )
    image.writer.attach_envelope(image.digest, respelled(key, payload, KMS_KEYID), PREDICATE, {})
    result = await verify_image(
        image.reader(), image.digest, policy_for(key_files[algorithm]), public_good
    )
    assert result.passed, result.to_json()
    # Both spellings verify with the trusted key (the requirement counts the signer's
    # latest statement once, but each envelope is verified evidence of its own).
    attestations = [e for e in result.evidence if e.predicate_type == PREDICATE]
    assert len(attestations) == 2 and all(e.verified for e in attestations)


async def test_another_key_with_a_borrowed_keyid_is_still_untrusted(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    trusted, stranger = keys["ecdsa-p256"], keys["ecdsa-p384"]
    payload = statement(image.digest, PREDICATE, {"buildDefinition": {}})
    for keyid in (trusted.public.keyid, KMS_KEYID, ""):
        image.writer.attach_envelope(
            image.digest, respelled(stranger, payload, keyid), PREDICATE, {}
        )
    result = await verify_image(
        image.reader(), image.digest, policy_for(key_files["ecdsa-p256"]), public_good
    )
    assert not result.passed
    reasons = {e.reason for e in result.evidence}
    assert reasons <= {Reason.SIGNATURE_INVALID, Reason.UNTRUSTED_KEY}, result.to_json()

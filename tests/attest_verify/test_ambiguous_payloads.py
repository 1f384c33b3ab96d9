"""A signed payload must mean one thing to every reader. Python's json keeps the last of
duplicate keys, Go's encoding/json (cosign) the last *case-insensitive* match, other
parsers the first: a payload with `docker-manifest-digest` and `Docker-Manifest-Digest`
names two images, depending on who reads it. Such payloads are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.keys import PrivateKey
from attest.results import Reason
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from registry.oci.digest import Digest
from tests.attest_verify.conftest import SignedImage

OTHER = Digest.of(b"another image the signer meant")
PREDICATE = "https://slsa.dev/provenance/v1"


def simple_signing(image_part: str) -> bytes:
    return (
        '{"critical":{"identity":{"docker-reference":"zoll.test/image"},'
        f'"image":{{{image_part}}},'
        '"type":"cosign container image signature"},"optional":null}'
    ).encode()


def payloads(subject: Digest) -> dict[str, bytes]:
    ours, theirs = f'"{subject}"', f'"{OTHER}"'
    return {
        # Zoll read the first, cosign (Go) reads the last case-insensitive match.
        "case-variant": simple_signing(
            f'"docker-manifest-digest":{ours},"Docker-Manifest-Digest":{theirs}'
        ),
        "duplicate": simple_signing(
            f'"docker-manifest-digest":{theirs},"docker-manifest-digest":{ours}'
        ),
        "duplicate-section": (
            b'{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":'
            + theirs.encode()
            + b'},"type":"cosign container image signature"},'
            + b'"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":'
            + ours.encode()
            + b'},"type":"cosign container image signature"}}'
        ),
    }


def statement(subject: Digest, body: str) -> bytes:
    digest = f'{{"sha256":"{subject.encoded}"}}'
    return (
        '{"_type":"https://in-toto.io/Statement/v1",'
        f'"subject":[{{"name":"image","digest":{digest}}}],'
        f'"predicateType":"{PREDICATE}",{body}}}'
    ).encode()


def policy_for(key_file: Path) -> TrustPolicy:
    return TrustPolicy.from_yaml(
        f"""
signers: {{ci: {{key: {key_file}}}}}
require:
  signature: {{signers: [ci]}}
"""
    )


@pytest.mark.parametrize("case", ["case-variant", "duplicate", "duplicate-section"])
async def test_a_simple_signing_payload_with_ambiguous_keys_is_refused(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
    case: str,
) -> None:
    key = keys["ecdsa-p256"]
    image.writer.sign(image.digest, key, payload=payloads(image.digest)[case])
    result = await verify_image(
        image.reader(), image.digest, policy_for(key_files["ecdsa-p256"]), public_good
    )
    assert not result.passed
    [evidence] = result.evidence
    assert evidence.reason == Reason.AMBIGUOUS_PAYLOAD, result.to_json()
    assert "key" in (evidence.message or "")


@pytest.mark.parametrize(
    "body",
    [
        '"predicate":{"a":1},"predicate":{"a":2}',
        '"predicate":{"builder":{"id":"x"},"Builder":{"id":"y"}}',
        '"predicateType":"https://example.org/other","predicate":{}',
    ],
)
async def test_an_in_toto_statement_with_ambiguous_keys_is_refused(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
    body: str,
) -> None:
    key = keys["ed25519"]
    image.writer.attest(
        image.digest, key, PREDICATE, {}, statement_bytes=statement(image.digest, body)
    )
    policy = TrustPolicy.from_yaml(
        f"""
signers: {{ci: {{key: {key_files["ed25519"]}}}}}
require:
  attestations: [{{predicate_type: {PREDICATE}, signers: [ci]}}]
"""
    )
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert not result.passed
    [evidence] = result.evidence
    assert evidence.reason == Reason.AMBIGUOUS_PAYLOAD, result.to_json()


async def test_the_plain_payload_still_verifies(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    payload = simple_signing(f'"Docker-Manifest-Digest":"{image.digest}"')  # Go reads it
    image.writer.sign(image.digest, keys["ecdsa-p256"], payload=payload)
    result = await verify_image(
        image.reader(), image.digest, policy_for(key_files["ecdsa-p256"]), public_good
    )
    assert result.passed, result.to_json()

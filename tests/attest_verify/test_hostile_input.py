"""Hostile input ends in a clear reason: no crash, no unbounded reads."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest.bundle import verify_bundle
from attest.cosign_keyless import verify_legacy_keyless
from attest.identity import KeylessIdentity, Signers
from attest.keys import PrivateKey
from attest.results import Reason, VerificationFailure
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from registry.oci import mediatypes as mt
from tests.attest_verify.conftest import SignedImage
from tests.attest_verify.cosign_writer import simple_signing_payload
from tests.attest_verify.sigstore_material import POSITIVE, SIGSTORE, legacy_cosign_layer

V3 = POSITIVE[1]
WHO = Signers((KeylessIdentity(V3.issuer, V3.identity),))


def bundle_reason(raw: bytes, trust: TrustMaterial) -> Reason:
    with pytest.raises(VerificationFailure) as info:
        verify_bundle(raw, artifact=b"x", signers=WHO, trust=trust)
    return info.value.reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (V3.bundle()[: len(V3.bundle()) // 2], Reason.MALFORMED),
        (b"", Reason.MALFORMED),
        (b"\xff\xfe\x00", Reason.MALFORMED),
        (b"[1, 2, 3]", Reason.MALFORMED),
        (b"[" * 100_000 + b"]" * 100_000, Reason.TOO_DEEP),
        (b'{"a":' * 70 + b"1" + b"}" * 70, Reason.TOO_DEEP),
        (b'{"mediaType": "' + b"x" * (17 * 1024 * 1024) + b'"}', Reason.TOO_LARGE),
        (b'{"mediaType": "application/json"}', Reason.UNSUPPORTED_MEDIA_TYPE),
        (b'{"mediaType": 7}', Reason.UNSUPPORTED_MEDIA_TYPE),
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "array",
        "deep-array",
        "deep-object",
        "oversized",
        "wrong-media-type",
        "media-type-not-string",
    ],
)
def test_malformed_bundles(raw: bytes, expected: Reason, staging: TrustMaterial) -> None:
    assert bundle_reason(raw, staging) == expected


def test_bundle_with_garbage_certificate(staging: TrustMaterial) -> None:
    body = json.loads(V3.bundle())
    body["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(b"not DER").decode()
    assert bundle_reason(json.dumps(body).encode(), staging) == Reason.CERTIFICATE_INVALID


@pytest.mark.parametrize(
    "name",
    ["bogus-leaf.pem", "bogus-leaf-missing-eku.pem", "bogus-leaf-invalid-ku.pem", "bogus-root.pem"],
)
def test_certificates_that_do_not_chain(name: str, staging: TrustMaterial) -> None:
    bogus = x509.load_pem_x509_certificate((SIGSTORE / "x509" / name).read_bytes())
    body = json.loads(V3.bundle())
    body["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(
        bogus.public_bytes(serialization.Encoding.DER)
    ).decode()
    raw = json.dumps(body).encode()
    with pytest.raises(VerificationFailure) as info:
        verify_bundle(raw, artifact=V3.artifact_path.read_bytes(), signers=WHO, trust=staging)
    # The signature check runs first: the bogus key did not make this signature.
    assert info.value.reason in (Reason.SIGNATURE_INVALID, Reason.CERTIFICATE_CHAIN_INVALID)
    # As a legacy cosign certificate annotation, the chain is what fails.
    sig, notes = legacy_cosign_layer(V3.bundle())
    with pytest.raises(VerificationFailure) as info:
        verify_legacy_keyless(
            certificate_pem=bogus.public_bytes(serialization.Encoding.PEM).decode(),
            rekor_bundle=notes["dev.sigstore.cosign/bundle"],
            signature=sig,
            signed_message=V3.artifact_path.read_bytes(),
            logged_payload=V3.artifact_path.read_bytes(),
            signers=WHO,
            trust=staging,
        )
    assert info.value.reason == Reason.CERTIFICATE_CHAIN_INVALID


def test_legacy_annotation_garbage(staging: TrustMaterial) -> None:
    sig, notes = legacy_cosign_layer(V3.bundle())
    for cert, rekor, expected in (
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            notes["dev.sigstore.cosign/bundle"],
            Reason.CERTIFICATE_INVALID,
        ),
        (notes["dev.sigstore.cosign/certificate"], "{not json", Reason.MALFORMED),
        (notes["dev.sigstore.cosign/certificate"], '{"Payload": {}}', Reason.TLOG_MISSING),
        (notes["dev.sigstore.cosign/certificate"], "[" * 50_000, Reason.TOO_DEEP),
    ):
        with pytest.raises(VerificationFailure) as info:
            verify_legacy_keyless(
                certificate_pem=cert,
                rekor_bundle=rekor,
                signature=sig,
                signed_message=b"",
                logged_payload=b"",
                signers=WHO,
                trust=staging,
            )
        assert info.value.reason == expected


def _policy(key_file: Path) -> TrustPolicy:
    return TrustPolicy.from_yaml(
        f"signers: {{k: {{key: {key_file}}}}}\nrequire: {{signature: true}}\n"
    )


async def test_hostile_attachments_in_a_registry(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    w = image.writer
    key = keys["ecdsa-p256"]
    # A layer claiming to be enormous is never read.
    huge = {"mediaType": mt.COSIGN_SIMPLESIGNING, "digest": "sha256:" + "ab" * 32, "size": 1 << 40}
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": w.sink.put_blob(b"{}"), "size": 2},
        "layers": [huge],
    }
    w.sink.put_manifest(
        json.dumps(manifest).encode(), mt.OCI_MANIFEST, f"sha256-{image.digest.encoded}.sig"
    )
    # Deeply nested DSSE envelope, an unknown layer type, a bundle that is not JSON.
    w.attach_referrer(
        image.digest, image.media_type, mt.IN_TOTO, [(b"[" * 100_000, mt.DSSE_ENVELOPE, None)]
    )
    w.attach_referrer(
        image.digest, image.media_type, mt.IN_TOTO, [(b"{}", "application/x-unknown", None)]
    )
    truncated = b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"'
    w.attach_referrer(
        image.digest,
        image.media_type,
        mt.SIGSTORE_BUNDLE_V03,
        [(truncated, mt.SIGSTORE_BUNDLE_V03, None)],
    )
    # A signature layer whose blob is missing from the registry.
    missing = {"mediaType": mt.COSIGN_SIMPLESIGNING, "digest": "sha256:" + "cd" * 32, "size": 10}
    manifest["layers"] = [missing]
    w.sink.put_manifest(
        json.dumps(manifest).encode(), mt.OCI_MANIFEST, f"sha256-{image.digest.encoded}.att"
    )

    result = await verify_image(
        image.reader(), image.digest, _policy(key_files["ecdsa-p256"]), public_good
    )
    assert not result.passed
    reasons = {e.reason for e in result.evidence}
    assert {
        Reason.TOO_LARGE,
        Reason.TOO_DEEP,
        Reason.UNSUPPORTED_MEDIA_TYPE,
        Reason.CONTENT_MISSING,
    } <= reasons
    assert Reason.MALFORMED in reasons or Reason.BUNDLE_INVALID in reasons
    assert all(not e.verified for e in result.evidence)
    json.dumps(result.to_json())

    # A good signature next to all that still verifies.
    w.sign(image.digest, key)
    result = await verify_image(
        image.reader(), image.digest, _policy(key_files["ecdsa-p256"]), public_good
    )
    assert result.requirement("signature").passed


async def test_unsigned_or_garbled_simple_signing_layers(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    w = image.writer
    w.sign(image.digest, None, payload=simple_signing_payload(image.digest))  # no signature
    w.sign(image.digest, None, annotations={"dev.cosignproject.cosign/signature": "!!notbase64"})
    key = keys["ecdsa-p256"]
    w.sign(image.digest, key, payload=b'{"critical": {"type": "something else"}}')
    result = await verify_image(
        image.reader(), image.digest, _policy(key_files["ecdsa-p256"]), public_good
    )
    assert [e.reason for e in result.evidence] == [
        Reason.MALFORMED,
        Reason.MALFORMED,
        Reason.PAYLOAD_INVALID,
    ]


async def test_image_not_in_the_reader(
    image: SignedImage, key_files: dict[str, Path], public_good: TrustMaterial
) -> None:
    from registry.oci.digest import Digest

    result = await verify_image(
        image.reader(), Digest.of(b"absent"), _policy(key_files["ecdsa-p256"]), public_good
    )
    assert not result.passed
    assert result.errors[0].reason == Reason.CONTENT_MISSING

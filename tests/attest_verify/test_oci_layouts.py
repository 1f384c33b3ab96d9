"""End to end: a buildah image with cosign-format signatures in both layouts.

The image is real (buildah, OCI image layout); signatures, attestations and bundles are
written in cosign's exact formats by `cosign_writer` with test keys, then found and
verified through the same `ContentReader` the registry uses.
"""

from __future__ import annotations

import json
from pathlib import Path

from attest.cosign import discover
from attest.keys import PrivateKey
from attest.results import Reason, VerificationResult
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from registry.oci.digest import Digest
from tests.attest_verify.conftest import SignedImage
from tests.attest_verify.cosign_writer import key_bundle_dsse, key_bundle_message, statement

SLSA_V1 = "https://slsa.dev/provenance/v1"
BUILDER = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_container_slsa3.yml@refs/tags/v2.0.0"
COMMIT = "4f0bc1a1c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f"


def provenance(
    repo: str = "https://github.com/nextcloud/docker", ref: str = "refs/tags/v30.0.1"
) -> dict[str, object]:
    return {
        "buildDefinition": {
            "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
            "externalParameters": {
                "workflow": {
                    "ref": ref,
                    "repository": repo,
                    "path": ".github/workflows/release.yml",
                }
            },
            "resolvedDependencies": [{"uri": f"git+{repo}@{ref}", "digest": {"gitCommit": COMMIT}}],
        },
        "runDetails": {"builder": {"id": BUILDER}},
    }


def write_policy(
    tmp_path: Path, key_path: Path, *, min_level: int = 3, signature: str = "release"
) -> TrustPolicy:
    text = f"""
signers:
  release:
    key: {key_path}
  other:
    keyless:
      issuer: https://token.actions.githubusercontent.com
      subject_regex: '^https://github\\.com/nextcloud/.+$'
require:
  signature:
    signers: [{signature}]
  attestations:
    - predicate_type: https://spdx.dev/Document
      signers: [release]
  slsa:
    min_level: {min_level}
    signers: [release]
    builders:
      - id: https://github.com/slsa-framework/slsa-github-generator/*
        level: 3
    source:
      repository: github.com/nextcloud/docker
      ref: refs/tags/v*
"""
    path = tmp_path / "trust.yaml"
    path.write_text(text)
    return TrustPolicy.load(path)


def attach_everything(image: SignedImage, key: PrivateKey) -> dict[str, str]:
    w = image.writer
    return {
        "sig": w.sign(image.digest, key),
        "att": w.attest(image.digest, key, SLSA_V1, provenance()),
        "sbom": w.attach_sbom(image.digest, b'{"spdxVersion": "SPDX-2.3"}'),
        "bundle": w.attach_bundle(
            image.digest,
            image.media_type,
            key_bundle_dsse(
                statement(image.digest, "https://spdx.dev/Document", {"name": "x"}), key
            ),
            "https://spdx.dev/Document",
        ),
    }


def satisfied_schemes(result: VerificationResult, requirement: str) -> set[str]:
    req = result.requirement(requirement)
    return {result.evidence_by_id(e).details["scheme"] for e in req.satisfied_by}


async def test_discovery_finds_both_layouts(
    image: SignedImage, keys: dict[str, PrivateKey]
) -> None:
    written = attach_everything(image, keys["ecdsa-p256"])
    found = await discover(image.reader(), image.digest)
    by_digest = {str(a.digest): a for a in found}
    assert by_digest[written["sig"]].kind == "signature"
    assert by_digest[written["sig"]].tag == f"sha256-{image.digest.encoded}.sig"
    assert by_digest[written["att"]].kind == "attestation"
    assert by_digest[written["sbom"]].kind == "sbom"
    assert by_digest[written["bundle"]].scheme == "referrers"
    assert by_digest[written["bundle"]].kind == "bundle"
    assert by_digest[written["bundle"]].annotations["dev.sigstore.bundle.predicateType"] == (
        "https://spdx.dev/Document"
    )
    assert len(found) == 4
    # Serialisable for the mirror.
    json.dumps([a.to_json() for a in found])


async def test_referrers_tag_scheme_fallback_is_discovered(
    image: SignedImage, keys: dict[str, PrivateKey]
) -> None:
    key = keys["ecdsa-p256"]
    bundle = key_bundle_message(image.digest, key, image.manifest)
    referrer = image.writer.attach_bundle(image.digest, image.media_type, bundle)
    image.writer.referrers_tag_index(image.digest, [referrer])
    found = await discover(image.reader(), image.digest)
    assert [str(a.digest) for a in found] == [referrer]


async def test_all_requirements_pass_with_evidence_from_both_layouts(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    public_good: TrustMaterial,
) -> None:
    attach_everything(image, keys["ecdsa-p256"])
    policy = write_policy(tmp_path, key_files["ecdsa-p256"])
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.passed, json.dumps(result.to_json(), indent=1)
    assert satisfied_schemes(result, "signature") == {"tag"}
    assert satisfied_schemes(result, "attestation:https://spdx.dev/Document") == {"referrers"}
    assert satisfied_schemes(result, "slsa") == {"tag"}
    assert "reached 3" in result.requirement("slsa").description
    signer = result.evidence_by_id(result.requirement("signature").satisfied_by[0]).signer
    assert signer is not None and signer.matched == ("release",)
    # The JSON form round-trips and is stable.
    again = VerificationResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


async def test_message_signature_bundle_over_the_manifest_counts_as_signature(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    public_good: TrustMaterial,
) -> None:
    key = keys["ecdsa-p256"]
    image.writer.attach_bundle(
        image.digest, image.media_type, key_bundle_message(image.digest, key, image.manifest)
    )
    policy = TrustPolicy.from_yaml(
        f"signers: {{k: {{key: {key_files['ecdsa-p256']}}}}}\nrequire: {{signature: true}}\n"
    )
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.passed
    assert satisfied_schemes(result, "signature") == {"referrers"}


async def test_every_key_algorithm_verifies(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    for key in keys.values():
        image.writer.sign(image.digest, key)
    for alg in keys:
        policy = TrustPolicy.from_yaml(
            f"signers: {{k: {{key: {key_files[alg]}}}}}\nrequire: {{signature: true}}\n"
        )
        result = await verify_image(image.reader(), image.digest, policy, public_good)
        req = result.requirement("signature")
        assert req.passed, alg
        # One layer per key in the single .sig manifest: exactly this key's layer passes.
        assert len(req.satisfied_by) == 1, alg


async def test_signature_by_another_key_is_rejected(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    public_good: TrustMaterial,
) -> None:
    image.writer.sign(image.digest, PrivateKey.generate())
    policy = TrustPolicy.from_yaml(
        f"signers: {{k: {{key: {key_files['ecdsa-p256']}}}}}\nrequire: {{signature: true}}\n"
    )
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert not result.passed
    assert result.requirement("signature").reasons == (Reason.SIGNATURE_INVALID,)


async def test_signature_naming_another_image_is_rejected(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    other = Digest.of(b"another image")
    from tests.attest_verify.cosign_writer import simple_signing_payload

    image.writer.sign(image.digest, keys["ecdsa-p256"], payload=simple_signing_payload(other))
    policy = TrustPolicy.from_yaml(
        f"signers: {{k: {{key: {key_files['ecdsa-p256']}}}}}\nrequire: {{signature: true}}\n"
    )
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.requirement("signature").reasons == (Reason.SUBJECT_MISMATCH,)


async def test_attestation_about_another_digest_is_rejected(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    public_good: TrustMaterial,
) -> None:
    key = keys["ecdsa-p256"]
    image.writer.sign(image.digest, key)
    swapped = statement(Digest.of(b"not this image"), SLSA_V1, provenance())
    image.writer.attest(image.digest, key, SLSA_V1, {}, statement_bytes=swapped)
    image.writer.attach_bundle(
        image.digest,
        image.media_type,
        key_bundle_dsse(statement(Digest.of(b"x"), "https://spdx.dev/Document", {}), key),
    )
    policy = write_policy(tmp_path, key_files["ecdsa-p256"])
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.requirement("signature").passed
    assert result.requirement("slsa").reasons == (Reason.SUBJECT_MISMATCH,)
    assert result.requirement("attestation:https://spdx.dev/Document").reasons == (
        Reason.SUBJECT_MISMATCH,
    )
    assert not result.passed


async def test_slsa_source_and_level_are_enforced(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    public_good: TrustMaterial,
) -> None:
    key = keys["ecdsa-p256"]
    image.writer.attest(
        image.digest, key, SLSA_V1, provenance(repo="https://github.com/evil/docker")
    )
    policy = write_policy(tmp_path, key_files["ecdsa-p256"])
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.requirement("slsa").reasons == (Reason.SOURCE_MISMATCH,)

    policy = write_policy(tmp_path, key_files["ecdsa-p256"], min_level=4)
    image.writer.attest(image.digest, key, SLSA_V1, provenance())
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert set(result.requirement("slsa").reasons) == {
        Reason.SOURCE_MISMATCH,
        Reason.SLSA_LEVEL_TOO_LOW,
    }


async def test_missing_signatures_are_reported_as_no_evidence(
    image: SignedImage, key_files: dict[str, Path], tmp_path: Path, public_good: TrustMaterial
) -> None:
    policy = write_policy(tmp_path, key_files["ecdsa-p256"])
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert not result.passed
    for req in result.requirements:
        assert req.reasons == (Reason.NO_EVIDENCE,), req.id


async def test_keyless_material_in_both_layouts_is_verified_then_bound_to_the_image(
    image: SignedImage, staging: TrustMaterial
) -> None:
    """Real Sigstore signatures attached to this image: the certificate, log entry and
    identity verify, but they sign other artifacts, so they must not vouch for it."""
    from tests.attest_verify.sigstore_material import POSITIVE, legacy_cosign_layer

    v3, dsse_fx = POSITIVE[1], POSITIVE[-1]
    _, notes = legacy_cosign_layer(v3.bundle())
    image.writer.sign(image.digest, None, payload=v3.artifact_path.read_bytes(), annotations=notes)
    image.writer.attach_bundle(image.digest, image.media_type, dsse_fx.bundle(), SLSA_V1)
    image.writer.attach_bundle(image.digest, image.media_type, v3.bundle())
    policy = TrustPolicy.from_yaml(
        f"""
signers:
  william: {{keyless: {{issuer: {v3.issuer}, subject: {v3.identity}}}}}
  beacon: {{keyless: {{issuer: {dsse_fx.issuer}, subject: '{dsse_fx.identity}'}}}}
require:
  signature: true
  attestations: [{{predicate_type: '{SLSA_V1}'}}]
"""
    )
    result = await verify_image(image.reader(), image.digest, policy, staging)
    assert not result.passed
    by_format = {(e.details["scheme"], e.format): e for e in result.evidence}
    legacy = by_format[("tag", "cosign-simplesigning")]
    assert legacy.reason == Reason.PAYLOAD_INVALID  # crypto held; the payload is no image signature
    message = by_format[("referrers", "sigstore-bundle")]
    assert message.reason == Reason.ARTIFACT_DIGEST_MISMATCH
    dsse = next(e for e in result.evidence if e.predicate_type == SLSA_V1)
    assert dsse.reason == Reason.SUBJECT_MISMATCH
    # Each requirement explains itself with the evidence that came closest.
    assert set(result.requirement("signature").reasons) == {
        Reason.PAYLOAD_INVALID,
        Reason.ARTIFACT_DIGEST_MISMATCH,
    }
    assert result.requirement(f"attestation:{SLSA_V1}").reasons == (Reason.SUBJECT_MISMATCH,)
    # Under the production root, the same material fails earlier, at the chain.
    result = await verify_image(image.reader(), image.digest, policy, TrustMaterial.public_good())
    assert {e.reason for e in result.evidence} <= {
        Reason.TLOG_PROMISE_INVALID,
        Reason.CERTIFICATE_CHAIN_INVALID,
        Reason.TIMESTAMP_INVALID,
        Reason.ARTIFACT_DIGEST_MISMATCH,
    }

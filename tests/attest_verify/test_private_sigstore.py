"""Keyless signatures from a sovereign Sigstore instance, trusted through its own
trusted_root.json, in cosign's legacy layout on a real image."""

from __future__ import annotations

import base64

import pytest

from attest import dsse
from attest.results import Reason
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from tests.attest_verify.conftest import SignedImage
from tests.attest_verify.cosign_writer import (
    CERTIFICATE,
    REKOR_BUNDLE,
    SIGNATURE,
    simple_signing_payload,
    statement,
)
from tests.attest_verify.private_sigstore import PrivateSigstore, hashedrekord, intoto, pem

ISSUER = "https://gitlab.opencode.de"
REPO = "https://gitlab.opencode.de/bmi/opendesk/nextcloud"
IDENTITY = f"{REPO}//.gitlab-ci.yml@refs/heads/main"
SLSA_V1 = "https://slsa.dev/provenance/v1"
CLAIMS = {"12": REPO, "14": "refs/heads/main", "11": "gitlab-hosted"}


def provenance() -> dict[str, object]:
    return {
        "buildDefinition": {
            "buildType": "https://gitlab.com/gitlab-org/gitlab-runner",
            "resolvedDependencies": [
                {"uri": f"git+{REPO}@refs/heads/main", "digest": {"gitCommit": "c" * 40}}
            ],
        },
        "runDetails": {"builder": {"id": "https://gitlab.opencode.de/gitlab-runner"}},
    }


def sign_keyless(image: SignedImage, instance: PrivateSigstore, identity: str = IDENTITY) -> None:
    key, cert = instance.issue(identity, ISSUER, CLAIMS)
    payload = simple_signing_payload(image.digest)
    signature = key.sign(payload)
    image.writer.sign(
        image.digest,
        None,
        payload=payload,
        annotations={
            SIGNATURE: base64.b64encode(signature).decode(),
            CERTIFICATE: pem(cert),
            REKOR_BUNDLE: instance.log(hashedrekord(signature, cert, payload)),
        },
    )
    body = statement(image.digest, SLSA_V1, provenance())
    envelope = dsse.sign("application/vnd.in-toto+json", body, [key])
    image.writer.attach_envelope(
        image.digest,
        envelope.to_bytes(),
        SLSA_V1,
        {
            CERTIFICATE: pem(cert),
            REKOR_BUNDLE: instance.log(intoto(envelope.signatures[0].sig, cert, body)),
        },
    )


def policy(identity_regex: str = r"^https://gitlab\.opencode\.de/bmi/opendesk/.+$") -> TrustPolicy:
    return TrustPolicy.from_yaml(
        f"""
signers:
  opencode-ci:
    keyless:
      issuer: {ISSUER}
      subject_regex: '{identity_regex}'
      claims: {{source_repository_uri: '{REPO}', runner_environment: gitlab-hosted}}
require:
  signature: {{signers: [opencode-ci]}}
  slsa:
    min_level: 2
    signers: [opencode-ci]
    builders: [{{id: 'https://gitlab.opencode.de/*', level: 2}}]
    source: {{repository: gitlab.opencode.de/bmi/opendesk/nextcloud, ref: refs/heads/main}}
"""
    )


@pytest.fixture
def instance() -> PrivateSigstore:
    return PrivateSigstore()


async def test_sovereign_keyless_signature_and_provenance_verify(
    image: SignedImage, instance: PrivateSigstore
) -> None:
    sign_keyless(image, instance)
    trust = TrustMaterial.from_bytes(instance.trusted_root(), "zoll-sovereign")
    result = await verify_image(image.reader(), image.digest, policy(), trust)
    assert result.passed, result.to_json()
    for requirement in ("signature", "slsa"):
        evidence = result.evidence_by_id(result.requirement(requirement).satisfied_by[0])
        assert evidence.signer is not None
        assert evidence.signer.identity == IDENTITY
        assert evidence.signer.claims["source_repository_uri"] == REPO
        assert evidence.tlog is not None and evidence.tlog.log_index > 0
    assert {e.format for e in result.evidence} == {"cosign-simplesigning", "cosign-dsse"}


async def test_sovereign_signatures_fail_under_other_roots_and_identities(
    image: SignedImage, instance: PrivateSigstore, public_good: TrustMaterial
) -> None:
    sign_keyless(image, instance)
    own = TrustMaterial.from_bytes(instance.trusted_root(), "zoll-sovereign")
    other = TrustMaterial.from_bytes(PrivateSigstore().trusted_root(), "another-instance")
    for trust in (public_good, other):
        result = await verify_image(image.reader(), image.digest, policy(), trust)
        assert not result.passed
        assert {e.reason for e in result.evidence} == {Reason.TLOG_PROMISE_INVALID}
    result = await verify_image(
        image.reader(), image.digest, policy(r"^https://github\.com/.+$"), own
    )
    assert {e.reason for e in result.evidence} == {Reason.IDENTITY_MISMATCH}


async def test_certificate_from_another_ca_logged_in_this_rekor_is_rejected(
    image: SignedImage, instance: PrivateSigstore
) -> None:
    rogue = PrivateSigstore(rekor_key=instance.rekor_key)  # same log, foreign CA and CT log
    sign_keyless(image, rogue)
    trust = TrustMaterial.from_bytes(instance.trusted_root(), "zoll-sovereign")
    result = await verify_image(image.reader(), image.digest, policy(), trust)
    assert {e.reason for e in result.evidence} == {Reason.CERTIFICATE_CHAIN_INVALID}

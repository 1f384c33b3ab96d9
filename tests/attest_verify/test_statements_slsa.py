"""in-toto statements v0.1/v1 and SLSA provenance v0.2/v1 under a policy's expectations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.intoto import Statement
from attest.keys import PrivateKey
from attest.results import Reason, VerificationFailure
from attest.slsa import (
    PROVENANCE_TYPES,
    SlsaPolicy,
    SourceExpectation,
    TrustedBuilder,
    evaluate,
    parse_provenance,
)
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import trusted_statements, verify_image
from registry.oci.digest import Digest
from tests.attest_verify.conftest import SignedImage

IMAGE = Digest.of(b"image manifest")
COMMIT = "a" * 40
GITLAB_BUILDER = "https://gitlab.com/gitlab-org/gitlab-runner"


def statement_v01(
    predicate_type: str, predicate: dict[str, object], subject: Digest = IMAGE
) -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "registry.example/app", "digest": {"sha256": subject.encoded}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    ).encode()


PROVENANCE_V02 = {
    "builder": {"id": GITLAB_BUILDER},
    "buildType": "https://gitlab.com/gitlab-org/gitlab/-/blob/master/doc/ci/slsa.md",
    "invocation": {
        "configSource": {
            "uri": "git+https://gitlab.opencode.de/bmi/opendesk/nextcloud.git@refs/heads/main",
            "digest": {"sha1": COMMIT},
            "entryPoint": ".gitlab-ci.yml",
        }
    },
    "materials": [
        {
            "uri": "git+https://gitlab.opencode.de/bmi/opendesk/nextcloud.git",
            "digest": {"sha1": COMMIT},
        }
    ],
}


def test_statement_v01_and_provenance_v02() -> None:
    statement = Statement.parse(statement_v01("https://slsa.dev/provenance/v0.2", PROVENANCE_V02))
    statement.require_subject(IMAGE)
    provenance = parse_provenance(statement)
    assert provenance.builder_id == GITLAB_BUILDER
    assert provenance.source.repository == "gitlab.opencode.de/bmi/opendesk/nextcloud"
    assert provenance.source.ref == "refs/heads/main"
    assert provenance.source.commit == COMMIT
    policy = SlsaPolicy(
        2,
        (TrustedBuilder(GITLAB_BUILDER, 2),),
        SourceExpectation(
            "https://gitlab.opencode.de/bmi/opendesk/nextcloud", "refs/heads/*", COMMIT
        ),
    )
    assert evaluate(provenance, policy) == 2


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            SlsaPolicy(1, (TrustedBuilder("https://github.com/actions/runner", 3),)),
            Reason.BUILDER_NOT_ALLOWED,
        ),
        (
            SlsaPolicy(
                1,
                (TrustedBuilder("https://gitlab.com/*", 2),),
                SourceExpectation("gitlab.opencode.de/other"),
            ),
            Reason.SOURCE_MISMATCH,
        ),
        (
            SlsaPolicy(
                1, (TrustedBuilder(GITLAB_BUILDER, 2),), SourceExpectation(ref="refs/tags/v*")
            ),
            Reason.SOURCE_MISMATCH,
        ),
        (
            SlsaPolicy(1, (TrustedBuilder(GITLAB_BUILDER, 2),), SourceExpectation(commit="b" * 40)),
            Reason.SOURCE_MISMATCH,
        ),
        (SlsaPolicy(3, (TrustedBuilder(GITLAB_BUILDER, 2),)), Reason.SLSA_LEVEL_TOO_LOW),
    ],
)
def test_provenance_policy_failures(policy: SlsaPolicy, reason: Reason) -> None:
    provenance = parse_provenance(
        Statement.parse(statement_v01("https://slsa.dev/provenance/v0.2", PROVENANCE_V02))
    )
    with pytest.raises(VerificationFailure) as info:
        evaluate(provenance, policy)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("payload", "payload_type", "reason"),
    [
        (
            b'{"_type": "https://in-toto.io/Statement/v9"}',
            "application/vnd.in-toto+json",
            Reason.PAYLOAD_INVALID,
        ),
        (
            b'{"_type": "https://in-toto.io/Statement/v1", "subject": []}',
            "application/vnd.in-toto+json",
            Reason.PAYLOAD_INVALID,
        ),
        (statement_v01("x", {}), "application/json", Reason.UNSUPPORTED_MEDIA_TYPE),
        (statement_v01("", {}), "application/vnd.in-toto+json", Reason.PAYLOAD_INVALID),
        (b"not json", "application/vnd.in-toto+json", Reason.MALFORMED),
    ],
)
def test_bad_statements(payload: bytes, payload_type: str, reason: Reason) -> None:
    with pytest.raises(VerificationFailure) as info:
        Statement.parse(payload, payload_type)
    assert info.value.reason == reason


def test_subject_must_name_the_image() -> None:
    statement = Statement.parse(statement_v01("x", {}, subject=Digest.of(b"other")))
    with pytest.raises(VerificationFailure) as info:
        statement.require_subject(IMAGE)
    assert info.value.reason == Reason.SUBJECT_MISMATCH


def test_provenance_without_builder_or_of_another_type() -> None:
    with pytest.raises(VerificationFailure) as info:
        parse_provenance(Statement.parse(statement_v01("https://slsa.dev/provenance/v1", {})))
    assert info.value.reason == Reason.PAYLOAD_INVALID
    with pytest.raises(VerificationFailure) as info:
        parse_provenance(Statement.parse(statement_v01("https://spdx.dev/Document", {})))
    assert info.value.reason == Reason.PREDICATE_TYPE_MISMATCH


async def test_v02_provenance_in_a_legacy_att_layer(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    key = keys["ed25519"]
    body = statement_v01("https://slsa.dev/provenance/v0.2", PROVENANCE_V02, subject=image.digest)
    image.writer.attest(
        image.digest, key, "https://slsa.dev/provenance/v0.2", {}, statement_bytes=body
    )
    policy = TrustPolicy.from_yaml(
        f"""
signers: {{ci: {{key: {key_files["ed25519"]}}}}}
require:
  slsa:
    min_level: 2
    builders: [{{id: '{GITLAB_BUILDER}', level: 2}}]
    source: {{repository: gitlab.opencode.de/bmi/opendesk/nextcloud, commit: '{COMMIT}'}}
"""
    )
    result = await verify_image(image.reader(), image.digest, policy, public_good)
    assert result.passed, result.to_json()
    evidence = result.evidence_by_id(result.requirement("slsa").satisfied_by[0])
    assert evidence.format == "cosign-dsse"
    assert evidence.predicate_type == "https://slsa.dev/provenance/v0.2"


async def test_a_rebuild_takes_only_provenance_a_known_signer_signed(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    """The recipe of a pushed or replicated image comes from its provenance: only from a
    provenance signed by a signer the trust policy names, never from anyone's."""
    for key, source in ((keys["ed25519"], "vendor"), (keys["rsa"], "stranger")):
        predicate = {**PROVENANCE_V02, "buildType": f"https://{source}.example/build"}
        body = statement_v01("https://slsa.dev/provenance/v0.2", predicate, subject=image.digest)
        image.writer.attest(
            image.digest, key, "https://slsa.dev/provenance/v0.2", {}, statement_bytes=body
        )
    policy = TrustPolicy.from_yaml(
        f"signers: {{vendor: {{key: {key_files['ed25519']}}}}}\n"
        "require: {signature: {signers: [vendor]}}\n"
    )
    found = await trusted_statements(
        image.reader(), image.digest, policy, public_good, PROVENANCE_TYPES
    )
    assert [s.predicate["buildType"] for s in found] == ["https://vendor.example/build"]

"""Real Sigstore bundles: each verifies only with the identity, issuer, artifact and
trusted root it was issued for, and the broken ones fail with their specific reason."""

from __future__ import annotations

import json

import pytest

from attest.bundle import BundleOutcome, verify_bundle
from attest.identity import KeylessIdentity, Signers
from attest.intoto import Statement
from attest.results import Reason, VerificationFailure
from attest.sigstore_private import embedded_trusted_root
from attest.slsa import parse_provenance
from attest.trustroot import TrustMaterial
from attest.verify import verify_artifact_bundle
from registry.oci.digest import Digest
from tests.attest_verify.sigstore_material import (
    BEACON,
    GITHUB_ACTIONS,
    GITHUB_OAUTH,
    GOOGLE,
    POSITIVE,
    SIGSTORE,
    Fixture,
)

IDS = [f.name for f in POSITIVE]


def signers(issuer: str, subject: str | None = None, **kw: object) -> Signers:
    return Signers((KeylessIdentity(issuer, subject, **kw),))  # type: ignore[arg-type]


def verify(
    fx: Fixture, who: Signers, trust: TrustMaterial, artifact: bytes | None = None
) -> BundleOutcome:
    data = fx.artifact_path.read_bytes() if artifact is None else artifact
    outcome = verify_bundle(
        fx.bundle(), artifact=None if fx.dsse else data, signers=who, trust=trust
    )
    if fx.dsse:
        assert outcome.payload is not None
        Statement.parse(outcome.payload, outcome.payload_type).require_subject(
            Digest.parse(fx.subject) if artifact is None else Digest.of(artifact)
        )
    return outcome


def reason(
    fx: Fixture, who: Signers, trust: TrustMaterial, artifact: bytes | None = None
) -> Reason:
    with pytest.raises(VerificationFailure) as info:
        verify(fx, who, trust, artifact)
    return info.value.reason


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_verifies_with_the_identity_it_was_issued_to(fx: Fixture, staging: TrustMaterial) -> None:
    outcome = verify(fx, signers(fx.issuer, fx.identity), staging)
    assert outcome.signer.kind == "keyless"
    assert outcome.signer.identity == fx.identity
    assert outcome.signer.issuer == fx.issuer
    assert outcome.tlog is not None and outcome.tlog.log_index >= 0


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_subject_regex_matches_the_whole_identity(fx: Fixture, staging: TrustMaterial) -> None:
    verify(fx, signers(fx.issuer, subject_regex=".+"), staging)
    prefix = fx.identity[: len(fx.identity) // 2]
    assert reason(fx, signers(fx.issuer, subject_regex=prefix.replace(".", r"\.")), staging) == (
        Reason.IDENTITY_MISMATCH
    )


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_fails_with_any_other_identity(fx: Fixture, staging: TrustMaterial) -> None:
    for other in (
        "a@tny.town",
        "william@yossarian.net",
        "jku@goto.fi",
        BEACON,
        "someone@example.org",
    ):
        if other != fx.identity:
            assert reason(fx, signers(fx.issuer, other), staging) == Reason.IDENTITY_MISMATCH


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_fails_with_any_other_issuer(fx: Fixture, staging: TrustMaterial) -> None:
    for other in (GITHUB_OAUTH, GITHUB_ACTIONS, GOOGLE, "https://oauth2.sigstore.dev/auth"):
        if other != fx.issuer:
            assert reason(fx, signers(other, fx.identity), staging) == Reason.ISSUER_MISMATCH


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_fails_for_any_other_digest(fx: Fixture, staging: TrustMaterial) -> None:
    expected = Reason.SUBJECT_MISMATCH if fx.dsse else Reason.ARTIFACT_DIGEST_MISMATCH
    for other in (b"", b"another artifact", fx.artifact_path.read_bytes() + b"\n"):
        assert reason(fx, signers(fx.issuer, fx.identity), staging, other) == expected


@pytest.mark.parametrize("fx", POSITIVE, ids=IDS)
def test_fails_under_any_other_trusted_root(
    fx: Fixture, public_good: TrustMaterial, staging: TrustMaterial
) -> None:
    # The production root cannot establish the certificate chain (or, for Rekor v2
    # entries without a production-trusted time source, the signing time).
    assert reason(fx, signers(fx.issuer, fx.identity), public_good) in (
        Reason.CERTIFICATE_CHAIN_INVALID,
        Reason.TIMESTAMP_INVALID,
    )
    # An unrelated root shipped with the fixtures: sigstore-python's test root.
    other = TrustMaterial.from_file(SIGSTORE / "trusted_root" / "trustedroot.v1.json")
    assert reason(fx, signers(fx.issuer, fx.identity), other) in (
        Reason.CERTIFICATE_CHAIN_INVALID,
        Reason.TIMESTAMP_INVALID,
    )


def test_a_configured_trusted_root_file_is_used_offline(staging: TrustMaterial) -> None:
    """A sovereign instance's trusted_root.json: here the staging root from a TUF snapshot."""
    path = next((SIGSTORE / "staging-tuf" / "targets").glob("*.trusted_root.json"))
    trust = TrustMaterial.from_file(path)
    fx = POSITIVE[0]
    assert verify(fx, signers(fx.issuer, fx.identity), trust).signer.identity == fx.identity
    # That older snapshot lacks the CT log key that signed the newest fixture's SCT.
    dsse = POSITIVE[-1]
    assert reason(dsse, signers(dsse.issuer, dsse.identity), trust) == Reason.SCT_INVALID
    # Any of several roots may vouch: production first, staging second.
    both = TrustMaterial.public_good() + staging
    assert verify(fx, signers(fx.issuer, fx.identity), both).tlog_note.endswith("staging")


def test_github_workflow_claims_are_enforced(staging: TrustMaterial) -> None:
    fx = POSITIVE[-1]
    repo = "sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    ok = signers(
        fx.issuer,
        fx.identity,
        claims={
            "github_workflow_repository": repo,
            "github_workflow_ref": "refs/heads/main",
            "source_repository_uri": f"https://github.com/{repo}",
            "runner_environment": "github-hosted",
        },
    )
    assert verify(fx, ok, staging).signer.claims["github_workflow_trigger"] == "workflow_dispatch"
    wrong = signers(fx.issuer, fx.identity, claims={"github_workflow_ref": "refs/tags/v1"})
    assert reason(fx, wrong, staging) == Reason.CLAIM_MISMATCH
    wrong = signers(
        fx.issuer, fx.identity, claims={"source_repository_uri": "https://github.com/x/y"}
    )
    assert reason(fx, wrong, staging) == Reason.CLAIM_MISMATCH


def test_the_dsse_fixture_is_slsa_provenance_from_its_builder(staging: TrustMaterial) -> None:
    fx = POSITIVE[-1]
    outcome = verify(fx, signers(fx.issuer, fx.identity), staging)
    assert outcome.payload is not None
    provenance = parse_provenance(Statement.parse(outcome.payload, outcome.payload_type))
    assert provenance.builder_id == (
        "https://github.com/sigstore-conformance/rekor2-dsse-hashedrekord-regen"
    )


BROKEN = [
    ("bundle_cve_2022_36056.txt", Reason.TLOG_INCONSISTENT),
    ("bundle_invalid_version.txt", Reason.UNSUPPORTED_MEDIA_TYPE),
    ("bundle_no_cert_v1.txt", Reason.BUNDLE_INVALID),
    ("bundle_no_checkpoint.txt", Reason.BUNDLE_INVALID),
    ("bundle_no_log_entry.txt", Reason.BUNDLE_INVALID),
    ("bundle_v3_no_signed_time.txt", Reason.BUNDLE_INVALID),
]


@pytest.mark.parametrize(("name", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_bundles_fail_with_their_reason(
    name: str, expected: Reason, staging: TrustMaterial
) -> None:
    bundle = next(SIGSTORE.glob(f"{name}.sigstore*")).read_bytes()
    evidence = verify_artifact_bundle(
        (SIGSTORE / name).read_bytes(),
        bundle,
        signers(GITHUB_OAUTH, subject_regex=".*"),
        staging,
    )
    assert not evidence.verified
    assert evidence.reason == expected


def tsa_trust() -> TrustMaterial:
    """The staging root plus the test TSA of `tsa/ca.json`, as one trusted_root.json."""
    folder = "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"
    root = json.loads(embedded_trusted_root(folder))
    root["timestampAuthorities"] = [json.loads((SIGSTORE / "tsa" / "ca.json").read_bytes())]
    return TrustMaterial.from_bytes(json.dumps(root).encode(), "staging+tsa")


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [
        ("bundle.txt.sigstore", None),
        ("bundle.many_timestamp.sigstore", Reason.TIMESTAMP_INVALID),
        ("bundle.duplicate.sigstore", Reason.TIMESTAMP_INVALID),
        ("bundle.txt.late_timestamp.sigstore", Reason.CERTIFICATE_CHAIN_INVALID),
    ],
)
def test_rfc3161_timestamped_bundles(bundle: str, expected: Reason | None) -> None:
    who = Signers(
        (
            KeylessIdentity(GOOGLE, "alexis.challande@trailofbits.com"),
            KeylessIdentity(
                GOOGLE,
                "insecure-cloudtop-shared-user@cloudtop-prod-us-east.iam.gserviceaccount.com",
            ),
        )
    )
    evidence = verify_artifact_bundle(
        (SIGSTORE / "tsa" / "bundle.txt").read_bytes(),
        (SIGSTORE / "tsa" / bundle).read_bytes(),
        who,
        tsa_trust(),
    )
    assert evidence.reason == expected
    assert evidence.verified == (expected is None)

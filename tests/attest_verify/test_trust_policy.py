"""Trust policy YAML: per-repository selection and clear errors for bad policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.trust_policy import TrustPolicy, TrustPolicyError, TrustPolicySet

SIG = "require: {signature: true}\n"
KEYLESS = "signers: {a: {keyless: {issuer: x, subject: s}}}\n"
DOC_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "verification.md"


def policy_file(tmp_path: Path, key: Path) -> Path:
    path = tmp_path / "trust.yaml"
    path.write_text(
        f"""
version: 1
policies:
  nextcloud:
    description: upstream images signed in GitHub Actions
    signers:
      upstream-ci:
        keyless:
          issuer: https://token.actions.githubusercontent.com
          subject_regex: '^https://github\\.com/nextcloud/docker/\\.github/workflows/.+@refs/tags/v.+$'
          claims:
            github_workflow_repository: nextcloud/docker
      release-key:
        key: {key.name}
    require:
      signature:
        signers: [upstream-ci, release-key]
      attestations:
        - predicate_type: https://spdx.dev/Document
      slsa:
        min_level: 3
        signers: [upstream-ci]
        builders:
          - id: https://github.com/slsa-framework/slsa-github-generator/*
            level: 3
        source:
          repository: github.com/nextcloud/docker
          ref: refs/tags/v*
  rebuilt:
    signers:
      zoll: {{key: {key.name}}}
    require:
      signature: true
repositories:
  - match: opendesk/nextcloud*
    policy: nextcloud
  - match: opendesk/*
    policy: rebuilt
"""
    )
    return path


def test_policies_are_selected_per_repository(tmp_path: Path, key_files: dict[str, Path]) -> None:
    key = key_files["ecdsa-p256"]
    policies = TrustPolicySet.load(policy_file(tmp_path, key.rename(tmp_path / "k.pub")))
    nextcloud = policies.for_repository("opendesk/nextcloud")
    assert nextcloud is not None and nextcloud.name == "nextcloud"
    assert nextcloud.slsa is not None and nextcloud.slsa.policy.min_level == 3
    assert [i.name for i in nextcloud.signers.identities] == ["upstream-ci"]
    assert [k.name for k in nextcloud.signers.keys] == ["release-key"]
    assert nextcloud.attestations[0].signers == ()
    rebuilt = policies.for_repository("opendesk/collabora")
    assert rebuilt is not None and rebuilt.name == "rebuilt"
    assert policies.for_repository("elsewhere/image") is None
    assert nextcloud.label.startswith("nextcloud@sha256:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("signers: {}\nrequire: {}\n", "requires nothing"),
        ("require: {signature: true}\n", "nobody may sign"),
        (
            "signers: {a: {keyless: {issuer: x}}}\nrequire: {signature: true}\n",
            "exactly one of subject",
        ),
        (
            "signers: {a: {keyless: {issuer: x, subject: s, subject_regex: r}}}\n" + SIG,
            "exactly one of subject",
        ),
        (
            "signers: {a: {keyless: {issuer: x, subject_regex: '('}}}\n" + SIG,
            "not a regex",
        ),
        (
            "signers: {a: {keyless: {issuer: x, subject: s, claims: {colour: red}}}}\n" + SIG,
            "unknown certificate claims",
        ),
        (
            KEYLESS + "require: {signature: {signers: [b]}}\n",
            "unknown signer",
        ),
        ("signers: {a: {key: missing.pub}}\nrequire: {signature: true}\n", "cannot read"),
        ("signers: {a: {key_pem: nonsense}}\nrequire: {signature: true}\n", "not a PEM public key"),
        (
            "signers: {a: {keyless: {issuer: x, subject: s}, key: k}}\n" + SIG,
            "exactly one of keyless",
        ),
        (
            "signers: {a: {keyless: {issuer: x, subject: s}}}\nrequire: {signatures: true}\n",
            "require.signatures",
        ),
        (
            KEYLESS + "require: {slsa: {min_level: 9, builders: [{id: b}]}}\n",
            "min_level",
        ),
        (
            "signers: {a: {keyless: {issuer: x, subject: s}}}\nrequire: {slsa: {builders: []}}\n",
            "builders",
        ),
        ("- just a list\n", "mapping"),
        ("signers: [\n", "not valid YAML"),
    ],
)
def test_bad_policies_are_rejected_with_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TrustPolicyError, match=message):
        TrustPolicy.from_yaml(text, tmp_path)


def test_bad_policy_set_references(tmp_path: Path) -> None:
    good = "signers: {a: {keyless: {issuer: x, subject: s}}}\n    require: {signature: true}"
    with pytest.raises(TrustPolicyError, match=r"repositories\[0\].policy"):
        TrustPolicySet.from_yaml(
            f"policies:\n  p:\n    {good}\nrepositories: [{{match: '*', policy: q}}]\n"
        )
    with pytest.raises(TrustPolicyError, match="default"):
        TrustPolicySet.from_yaml(f"policies:\n  p:\n    {good}\ndefault: q\n")
    with pytest.raises(TrustPolicyError, match=r"policies\.p"):
        TrustPolicySet.from_yaml("policies:\n  p:\n    require: {signature: true}\n")
    with pytest.raises(TrustPolicyError, match="version"):
        TrustPolicySet.from_yaml(f"version: 2\npolicies:\n  p:\n    {good}\n")


def test_a_single_policy_file_applies_to_every_repository(tmp_path: Path) -> None:
    policies = TrustPolicySet.from_yaml(
        "signers: {a: {keyless: {issuer: x, subject: s}}}\nrequire: {signature: true}\n"
    )
    assert policies.for_repository("anything/at/all") is not None


def test_the_documented_example_loads(tmp_path: Path, key_files: dict[str, Path]) -> None:
    text = DOC_EXAMPLE.read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "keys").mkdir()
    key_files["ecdsa-p256"].rename(tmp_path / "keys" / "zoll-rebuild.pub")
    (tmp_path / "trust.yaml").write_text(example)
    policies = TrustPolicySet.load(tmp_path / "trust.yaml")
    assert policies.for_repository("opendesk/nextcloud") is not None

"""`zoll verify …` as an auditor runs it: exit codes, readable table, stable JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from attest.keys import PrivateKey
from attest.results import VerificationResult
from registry.cli.main import main
from tests.attest_verify.conftest import SIGSTORE, SignedImage
from tests.attest_verify.sigstore_material import GITHUB_OAUTH, POSITIVE

V3 = POSITIVE[1]


def test_bundle_verifies_with_identity_and_fails_with_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["verify", "bundle", str(V3.artifact_path), "--bundle", str(V3.bundle_path)]
    assert (
        main(
            [
                *base,
                "--identity",
                V3.identity,
                "--issuer",
                GITHUB_OAUTH,
                "--trusted-root",
                "staging",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True
    assert out["signer"]["identity"] == V3.identity
    assert (
        main(
            [
                *base,
                "--identity",
                "x@example.org",
                "--issuer",
                GITHUB_OAUTH,
                "--trusted-root",
                "staging",
                "--json",
            ]
        )
        == 1
    )
    assert json.loads(capsys.readouterr().out)["reason"] == "identity-mismatch"
    # Default root is public-good: the staging bundle does not chain there.
    assert main([*base, "--identity", V3.identity, "--issuer", GITHUB_OAUTH, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "certificate-chain-invalid"
    # Usage errors are exit code 2 with a message, not a traceback.
    assert main([*base, "--identity", V3.identity]) == 2
    assert "--issuer" in capsys.readouterr().err


async def test_image_command_table_and_json(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = tmp_path / "trust.yaml"
    policy.write_text(
        f"""
version: 1
policies:
  upstream:
    signers:
      release: {{key: {key_files["ecdsa-p256"]}}}
    require:
      signature: {{signers: [release]}}
repositories:
  - match: "opendesk/*"
    policy: upstream
"""
    )
    target = f"oci:{image.root}:v1"
    args = [
        "verify",
        "image",
        target,
        "--policy",
        str(policy),
        "--repository",
        "opendesk/nextcloud",
    ]
    assert await asyncio.to_thread(main, [*args, "--json"]) == 1
    failed = VerificationResult.from_json(json.loads(capsys.readouterr().out))
    assert failed.requirement("signature").reasons[0].value == "no-evidence"

    image.writer.sign(image.digest, keys["ecdsa-p256"])
    assert await asyncio.to_thread(main, args) == 0
    err = capsys.readouterr().err
    assert "pass" in err and "verified" in err and "release" in err
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    result = VerificationResult.from_json(json.loads(capsys.readouterr().out))
    assert result.passed and result.subject == str(image.digest)

    # No policy for this repository, a broken policy, an unreadable target: exit 2.
    assert (
        await asyncio.to_thread(
            main, ["verify", "image", target, "--policy", str(policy), "--repository", "other/x"]
        )
        == 2
    )
    policy.write_text("policies: [")
    assert await asyncio.to_thread(main, args) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(
            main, ["verify", "image", "oci:/nonexistent:v1", "--policy", str(policy)]
        )
        == 2
    )

    assert await asyncio.to_thread(main, ["verify", "attachments", target, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["kind"] for a in listed] == ["signature"]


BROKEN_ROOTS = {
    "not-json.json": b"this is not JSON",
    "a-list.json": b"[1, 2]",
    "wrong-shape.json": b'{"mediaType": "x", "tlogs": 5}',
    "empty.json": b"",
}


async def test_an_unusable_trusted_root_is_a_clear_error(
    image: SignedImage,
    key_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = tmp_path / "trust.yaml"
    policy.write_text(
        f"signers: {{release: {{key: {key_files['ecdsa-p256']}}}}}\nrequire: {{signature: true}}\n"
    )
    artifact = SIGSTORE / "bundle_v3.txt"
    for name, content in BROKEN_ROOTS.items():
        root = tmp_path / name
        root.write_bytes(content)
        for argv in (
            ["verify", "image", f"oci:{image.root}:v1", "--policy", str(policy)],
            [
                *("verify", "bundle", str(artifact), "--bundle", f"{artifact}.sigstore"),
                *("--key", str(key_files["ecdsa-p256"])),
            ],
        ):
            capsys.readouterr()
            code = await asyncio.to_thread(main, [*argv, "--trusted-root", str(root)])
            err = capsys.readouterr().err
            assert code == 2, (name, argv[1], err)
            assert f"trusted root {name}" in err and "Traceback" not in err, err

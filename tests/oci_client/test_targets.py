"""`registry/cli/targets.py` and the CLI commands on `docker://` images: the same
verdicts as on the OCI layout the image came from."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from attest.keys import PrivateKey
from registry.cli.main import main
from registry.cli.targets import TargetError, open_target
from registry.oci.client import RemoteReader
from registry.oci.reader import OCILayoutReader
from tests.attest_verify.cosign_writer import CosignWriter, LayoutSink
from tests.oci_client.conftest import Images, Seeded, layout_digest
from tests.support.tools import skopeo


def test_layout_targets(images: Images) -> None:
    layout = images.app_layout
    target = open_target(f"oci:{layout}:v1")
    assert isinstance(target.reader, OCILayoutReader)
    assert (target.reference, target.repository) == ("v1", layout.name)
    assert open_target(f"oci:{layout}").reference == "latest"
    digest = layout_digest(layout)
    assert open_target(f"oci:{layout}@{digest}").reference == str(digest)
    with pytest.raises(TargetError, match="not an OCI image layout"):
        open_target(f"oci:{layout.parent}/missing:v1")


def test_registry_targets(tmp_path: Path) -> None:
    hub = open_target("docker://nginx", environ={})
    assert isinstance(hub.reader, RemoteReader)
    assert (hub.reader.repository.registry, hub.repository, hub.reference) == (
        "registry-1.docker.io",
        "library/nginx",
        "latest",
    )
    local = open_target("docker://127.0.0.1:5000/team/app@sha256:" + "b" * 64, environ={})
    assert local.repository == "team/app" and local.reference == "sha256:" + "b" * 64
    with pytest.raises(TargetError, match="use oci:<layout-dir>"):
        open_target("registry.example/app:v1")
    with pytest.raises(TargetError, match="invalid"):
        open_target("docker://UPPER/Case:v1", environ={})
    with pytest.raises(TargetError, match="does not exist"):
        open_target("docker://h/app", auth_file=tmp_path / "none.json", environ={})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TargetError, match="cannot read auth file"):
        open_target("docker://h/app", auth_file=tmp_path / "bad.json", environ={})


def test_policy_check_on_a_registry_matches_the_layout(
    anon: Seeded, images: Images, capsys: pytest.CaptureFixture[str]
) -> None:
    layout_code = main(["policy", "check", f"oci:{images.app_layout}:v1", "--json"])
    from_layout = json.loads(capsys.readouterr().out)
    # A repository of its own: other tests attach SBOMs and signatures to library/app.
    remote = f"docker://{anon.registry.host}/isolated/policy-app:v1"
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{images.app_layout}:v1",
            remote,
        ],
        check=True,
        capture_output=True,
    )
    remote_code = main(["policy", "check", remote, "--tls-verify=false", "--json"])
    from_registry = json.loads(capsys.readouterr().out)
    assert remote_code == layout_code
    assert from_registry["report"]["subject"] == from_layout["report"]["subject"]
    assert from_registry["report"]["results"] == from_layout["report"]["results"]
    assert from_registry["analysis"]["packages"] == from_layout["analysis"]["packages"]


def test_unreachable_registry_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.embedded.ports import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("ZOLL_INSECURE_REGISTRIES", host)
    code = main(["policy", "check", f"docker://{host}/library/app:v1"])
    assert code == 2
    assert "cannot read the image" in " ".join(capsys.readouterr().err.split())


@pytest.fixture
async def signed_upstream(anon: Seeded, images: Images, tmp_path: Path) -> tuple[str, Path]:
    """The app image signed cosign-style in a layout, copied with its `.sig` tag into
    docker-registry by skopeo; returns the docker:// reference and a trust policy."""
    root = tmp_path / "signed"
    shutil.copytree(images.app_layout, root)
    digest = layout_digest(root)
    key = PrivateKey.generate("ecdsa-p256")
    CosignWriter(LayoutSink(root)).sign(digest, key)
    repo = f"{anon.registry.host}/opendesk/nextcloud"
    sig_tag = f"{digest.algorithm}-{digest.encoded}.sig"
    for tag in ("v1", sig_tag):
        await skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{root}:{tag}", f"docker://{repo}:{tag}"
        )
    pub = tmp_path / "release.pub"
    pub.write_text(key.public.pem())
    policy = tmp_path / "trust.yaml"
    policy.write_text(
        f"""
version: 1
policies:
  upstream:
    signers:
      release: {{key: {pub}}}
    require:
      signature: {{signers: [release]}}
repositories:
  - match: "opendesk/*"
    policy: upstream
"""
    )
    return f"docker://{repo}:v1", policy


async def test_verify_image_and_attachments_in_a_registry(
    signed_upstream: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target, policy = signed_upstream
    args = ["verify", "image", target, "--tls-verify=false", "--policy", str(policy)]
    # The repository name for policy selection comes from the reference.
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True
    assert (
        await asyncio.to_thread(
            main, ["verify", "attachments", target, "--tls-verify=false", "--json"]
        )
        == 0
    )
    assert [a["kind"] for a in json.loads(capsys.readouterr().out)] == ["signature"]
    # ZOLL_INSECURE_REGISTRIES instead of the flag.
    host = target.removeprefix("docker://").split("/", 1)[0]
    monkeypatch.setenv("ZOLL_INSECURE_REGISTRIES", f"example.org, {host}")
    assert await asyncio.to_thread(main, ["verify", "image", target, "--policy", str(policy)]) == 0
    capsys.readouterr()
    # Another repository's policy does not apply: exit 2, as with layouts.
    assert await asyncio.to_thread(main, [*args, "--repository", "other/x"]) == 2

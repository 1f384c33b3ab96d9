"""Unmodified clients log in through the token flow: skopeo and buildah with `--creds`,
oras-py with a user name and password; wrong or insufficient credentials fail."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import oras.client
import oras.oci
import pytest

from registry import audit
from tests.auth.conftest import Accounts
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import LiveRegistry
from tests.support.tools import layout_index, skopeo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Builder, str, Path]:
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    image = builder.build(
        "zoll-auth/app", BUSYBOX_BASE + "RUN echo 'signed in' > /hello.txt\n", layers=True
    )
    layout = builder.push_oci_layout(image, tmp_path_factory.mktemp("src") / "layout", "v1")
    return builder, image, layout


def creds(people: Accounts, name: str) -> str:
    return f"{name}:{people.passwords[name]}"


async def test_skopeo_with_creds(
    secured: LiveRegistry, people: Accounts, built: tuple[Builder, str, Path], tmp_path: Path
) -> None:
    _, _, layout = built
    await people.user("reader", ("opendesk", "reader"))
    robot, _ = await people.robot("ci", ("opendesk", "pusher"))
    ref = f"docker://{secured.host}/opendesk/app:v1"
    with pytest.raises(RuntimeError, match=r"authentication required|unauthorized"):
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    with pytest.raises(RuntimeError, match=r"denied|unauthorized"):
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds(people, "reader"),
            f"oci:{layout}:v1",
            ref,
        )
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds(people, robot),
        f"oci:{layout}:v1",
        ref,
    )
    out = tmp_path / "back"
    await skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        creds(people, "reader"),
        ref,
        f"oci:{out}:v1",
    )
    assert (
        layout_index(out)["manifests"][0]["digest"]
        == layout_index(layout)["manifests"][0]["digest"]
    )
    tags = await skopeo(
        "list-tags",
        "--tls-verify=false",
        "--creds",
        creds(people, "reader"),
        f"docker://{secured.host}/opendesk/app",
    )
    assert json.loads(tags)["Tags"] == ["v1"]
    with pytest.raises(RuntimeError, match=r"authentication required|unauthorized"):
        await skopeo("inspect", "--tls-verify=false", "--creds", "reader:wrong-password", ref)
    # a copy inside the registry mounts blobs instead of uploading them again
    await skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        creds(people, robot),
        "--dest-creds",
        creds(people, robot),
        ref,
        f"docker://{secured.host}/opendesk/copy:v1",
    )
    async with secured.registry.pool.acquire() as conn:
        found = await audit.events(conn, audit.EventFilter(repository="opendesk/copy"), None, 100)
    assert {e.actor for e in found} == {robot}
    assert "blob.mount" in {e.action for e in found}


async def test_buildah_push_with_creds(
    secured: LiveRegistry, people: Accounts, built: tuple[Builder, str, Path], tmp_path: Path
) -> None:
    builder, image, layout = built
    await people.user("builder", ("opendesk", "pusher"))
    ref = f"docker://{secured.host}/opendesk/built:1.0"
    await builder.arun(
        "push",
        "--tls-verify=false",
        "--creds",
        creds(people, "builder"),
        "--format",
        "oci",
        image,
        ref,
    )
    raw = await skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", creds(people, "builder"), ref
    )
    manifest = json.loads(raw)
    wanted = json.loads(
        (
            layout
            / "blobs"
            / "sha256"
            / layout_index(layout)["manifests"][0]["digest"].split(":")[1]
        ).read_text()
    )
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer["digest"] for layer in wanted["layers"]
    ]
    with pytest.raises(RuntimeError):
        await builder.arun("push", "--tls-verify=false", "--creds", "builder:nope", image, ref)


async def test_oras_with_username_and_password(
    secured: LiveRegistry, people: Accounts, built: tuple[Builder, str, Path], tmp_path: Path
) -> None:
    _, _, layout = built
    await people.user("pusher", ("opendesk", "pusher"))
    await people.user("reader", ("opendesk", "reader"))
    ref = f"docker://{secured.host}/opendesk/app:v1"
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds(people, "pusher"),
        f"oci:{layout}:v1",
        ref,
    )
    raw = await skopeo(
        "inspect", "--raw", "--tls-verify=false", "--creds", creds(people, "pusher"), ref
    )
    subject = oras.oci.Subject(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:" + hashlib.sha256(raw.encode()).hexdigest(),
        len(raw),
    )
    sbom = tmp_path / "sbom.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}))

    def client_for(name: str) -> oras.client.OrasClient:
        client = oras.client.OrasClient(hostname=secured.host, insecure=True)
        client.login(
            username=name,
            password=people.passwords[name],
            hostname=secured.host,
            config_path=str(tmp_path / f"{name}-docker-config.json"),
        )
        return client

    def push(client: oras.client.OrasClient) -> None:
        client.push(
            target=f"{secured.host}/opendesk/app:sbom",
            files=[f"{sbom}:application/vnd.cyclonedx+json"],
            subject=subject,
            disable_path_validation=True,
            quiet=True,
        )

    with pytest.raises(ValueError):  # a reader may not push
        await asyncio.to_thread(push, client_for("reader"))
    await asyncio.to_thread(push, client_for("pusher"))
    reader = client_for("reader")
    pulled = await asyncio.to_thread(
        reader.pull, target=f"{secured.host}/opendesk/app:sbom", outdir=str(tmp_path / "out")
    )
    assert Path(pulled[0]).read_text() == sbom.read_text()
    anonymous = oras.client.OrasClient(hostname=secured.host, insecure=True)
    with pytest.raises(ValueError):
        await asyncio.to_thread(
            anonymous.pull, target=f"{secured.host}/opendesk/app:sbom", outdir=str(tmp_path / "x")
        )

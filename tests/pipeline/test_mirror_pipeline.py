"""Mirror the suite from a real upstream (CNCF distribution with basic auth) into an
enforcing Zoll: good images are admitted with their signatures and attestations copied
along; a wrong signature, missing provenance or a tampered blob stays out, with the reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.keys import PrivateKey
from registry.mirror.jobs import queue_entry
from registry.mirror.sets import MirrorSet
from registry.mirror.store import apply_set
from registry.oci.digest import Digest
from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter
from tests.oci_client.upstream import htpasswd_line, running_distribution
from tests.pipeline.conftest import Supplier, containerfile
from tests.pipeline.test_pipeline import PROVENANCE, SBOM
from tests.support.buildah import Builder
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry
from tests.support.tools import skopeo

pytestmark = pytest.mark.slow
USER, PASSWORD = "mirror", "s3cret-upstream"


async def seed(
    upstream: Any, builder: Builder, tmp: Path, name: str, spec: str, platform: str | None = None
) -> Digest:
    image = builder.build(f"{name}-{uuid.uuid4().hex[:6]}", spec, platform=platform)
    layout = builder.push_oci_layout(image, tmp / uuid.uuid4().hex, "1.0.0")
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds={USER}:{PASSWORD}",
        f"oci:{layout}:1.0.0",
        f"docker://{upstream.host}/{name}:1.0.0",
    )
    raw = await skopeo(
        "inspect",
        "--raw",
        "--tls-verify=false",
        f"--creds={USER}:{PASSWORD}",
        f"docker://{upstream.host}/{name}:1.0.0",
    )
    return Digest.of(raw.encode())


async def sign(
    upstream: Any, name: str, digest: Digest, key: PrivateKey, provenance: bool = True
) -> None:
    writer = CosignWriter(RegistrySink(upstream.url, name, auth=(USER, PASSWORD)))
    await asyncio.to_thread(writer.sign, digest, key)
    await asyncio.to_thread(writer.attest, digest, key, SBOM, {"bomFormat": "CycloneDX"})
    if provenance:
        await asyncio.to_thread(
            writer.attest,
            digest,
            key,
            PROVENANCE,
            {"runDetails": {"builder": {"id": "https://ci.example.org"}}},
        )


async def state(http: aiohttp.ClientSession, zoll: LiveRegistry, ref: str) -> dict[str, Any]:
    async with http.get(f"{zoll.url}/api/v1/images/{ref}/status") as r:
        assert r.status == 200, (ref, await r.text())
        result: dict[str, Any] = await r.json()
        return result


async def test_mirror_from_distribution_through_the_pipeline(
    enforcing_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zoll = enforcing_zoll
    auth = {"htpasswd": {"realm": "upstream", "path": str(tmp_path / "htpasswd")}}
    (tmp_path / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
    async with running_distribution(tmp_path / "upstream", auth) as upstream:
        good = await seed(upstream, builder, tmp_path, "suite/good", containerfile(marker="g"))
        await sign(upstream, "suite/good", good, supplier.key)
        forged = await seed(upstream, builder, tmp_path, "suite/forged", containerfile(marker="f"))
        await sign(upstream, "suite/forged", forged, PrivateKey.generate())
        bare = await seed(upstream, builder, tmp_path, "suite/noprov", containerfile(marker="n"))
        await sign(upstream, "suite/noprov", bare, supplier.key, provenance=False)
        tampered = await seed(
            upstream, builder, tmp_path, "suite/tampered", containerfile(marker="t")
        )
        await sign(upstream, "suite/tampered", tampered, supplier.key)
        _flip_a_layer_byte(upstream.root, tampered)
        # A multi-arch index, signed at the index (children inherit the verification).
        children = [
            builder.build(
                f"multi-{arch}-{uuid.uuid4().hex[:6]}",
                containerfile(marker=arch),
                platform=f"linux/{arch}",
            )
            for arch in ("amd64", "arm64")
        ]
        local = f"localhost/multi-list:{uuid.uuid4().hex[:8]}"
        await builder.arun("manifest", "create", local)
        for child in children:
            await builder.arun("manifest", "add", local, child)
        await builder.arun(
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            f"--creds={USER}:{PASSWORD}",
            local,
            f"docker://{upstream.host}/suite/multi:1.0.0",
        )
        raw = await skopeo(
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={USER}:{PASSWORD}",
            f"docker://{upstream.host}/suite/multi:1.0.0",
        )
        index = Digest.of(raw.encode())
        await sign(upstream, "suite/multi", index, supplier.key)

        monkeypatch.setenv("UPSTREAM_PASSWORD", PASSWORD)
        entries = [
            {
                "name": n,
                "source": f"{upstream.host}/suite/{n}",
                "target": f"opendesk/{n}",
                "tags": ["1.0.0"],
                "insecure": True,
                "credentials": {"username": USER, "password_env": "UPSTREAM_PASSWORD"},
            }
            for n in ("good", "forged", "noprov", "tampered", "multi")
        ]
        mirror_set = MirrorSet.model_validate({"version": 1, "name": "suite", "mirrors": entries})
        for name in await apply_set(zoll.registry.pool, mirror_set, "test"):
            await queue_entry(zoll.services, "suite", name)
        counts = await drain(PipelineRunner(zoll.services), timeout=300)

    assert counts["mirror-image"].get("done") == 4, counts
    assert counts["mirror-image"].get("failed") == 1, counts  # the tampered one

    good_state = await state(http, zoll, f"opendesk/good@{good}")
    assert good_state["state"] == "admitted", good_state["reasons"]
    assert good_state["origin"]["source"] == f"{upstream.host}/suite/good"
    async with http.get(f"{zoll.url}/v2/opendesk/good/tags/list") as r:
        tags = (await r.json())["tags"]
    assert {f"sha256-{good.encoded}.sig", f"sha256-{good.encoded}.att"} <= set(tags)

    forged_state = await state(http, zoll, f"opendesk/forged@{forged}")
    assert forged_state["state"] == "quarantined"
    assert any("signature" in r for r in forged_state["reasons"]), forged_state["reasons"]
    noprov_state = await state(http, zoll, f"opendesk/noprov@{bare}")
    assert noprov_state["state"] == "quarantined"
    assert any("attestation" in r for r in noprov_state["reasons"]), noprov_state["reasons"]

    async with http.get(f"{zoll.url}/v2/opendesk/tampered/manifests/1.0.0") as r:
        assert r.status == 404  # never stored
    row = await zoll.registry.pool.fetchrow(
        "SELECT last_error FROM jobs WHERE kind = 'mirror-image' AND state = 'failed'"
    )
    assert "DigestMismatch" in row["last_error"], row["last_error"]

    multi_state = await state(http, zoll, f"opendesk/multi@{index}")
    assert multi_state["kind"] == "index" and multi_state["state"] == "admitted", multi_state
    async with http.get(
        f"{zoll.url}/v2/opendesk/multi/manifests/1.0.0",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json,"
            "application/vnd.docker.distribution.manifest.list.v2+json"
        },
    ) as r:
        assert r.status == 200
        for child in json.loads(await r.read())["manifests"]:
            child_state = await state(http, zoll, f"opendesk/multi@{child['digest']}")
            assert child_state["state"] == "admitted"
            assert child_state["verification_passed"]  # inherited from the signed index


def _flip_a_layer_byte(root: Path, manifest_digest: Digest) -> None:
    """Corrupt a layer inside distribution's own storage, as a compromised upstream would."""
    blobs = root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    manifest = json.loads(
        (blobs / manifest_digest.encoded[:2] / manifest_digest.encoded / "data").read_bytes()
    )
    layer = manifest["layers"][-1]["digest"].split(":")[1]
    path = blobs / layer[:2] / layer / "data"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x55
    path.write_bytes(bytes(data))

"""The client against Zoll itself: what one Zoll node does when it replicates from
another (push monolithic and chunked, mount, manifests, indexes, referrers API), checked
by skopeo as an independent client."""

from __future__ import annotations

import json
import os
from pathlib import Path

from attest.cosign import discover
from registry.oci import mediatypes as mt
from registry.oci.client import RegistryClient, RemoteReader
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import OCILayoutReader
from tests.oci_client.conftest import Images, Seeded
from tests.oci_client.faults import Fault, FaultProxy
from tests.support.servers import LiveRegistry
from tests.support.tools import skopeo


async def _copy(
    source: RemoteReader, target: RegistryClient, host: str, name: str, tag: str
) -> Digest:
    """Replicate an image (or index) blob by blob, as a mirror does."""
    repo = target.repository(host, name)
    fetched = await source.get_manifest(tag)
    manifest = parse_manifest(fetched.raw, fetched.media_type)
    for child in manifest.manifests:
        await _copy(source, target, host, name, str(child.digest))
    for blob in manifest.blob_references():
        await repo.push_blob(
            lambda offset, d=blob.digest: source.repository.open_blob(d),
            blob.digest,
            blob.size,
            chunk_size=64 * 1024 if blob.size > 200_000 else None,
        )
    reference = tag if not tag.startswith("sha256:") else None
    return await repo.put_manifest(fetched.raw, fetched.media_type, reference)


async def test_replicate_from_distribution_into_zoll(
    anon: Seeded, zoll: LiveRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    source = RemoteReader(client.repository(anon.registry.host, "library/multi"))
    digest = await _copy(source, client, zoll.host, "mirror/multi", "oci")
    assert digest == (await source.get_manifest("oci")).digest
    app = RemoteReader(client.repository(anon.registry.host, "library/app"))
    assert await _copy(app, client, zoll.host, "mirror/app", "v1") == anon.app_digest

    # skopeo pulls what the client pushed, byte for byte.
    out = tmp_path / "pulled"
    await skopeo(
        "copy", "--src-tls-verify=false", f"docker://{zoll.host}/mirror/app:v1", f"oci:{out}:v1"
    )
    pulled = await OCILayoutReader(out).get_manifest("v1")
    assert pulled.digest == anon.app_digest

    repo = client.repository(zoll.host, "mirror/multi")
    index = parse_manifest((await repo.get_manifest("oci")).raw)
    assert index.is_index and len(index.manifests) == 2
    assert await repo.tags() == ["oci"]
    assert {"mirror/app", "mirror/multi"} <= set(await client.catalog(zoll.host, page_size=1))


async def test_mount_and_existing_blobs(zoll: LiveRegistry, client: RegistryClient) -> None:
    data = os.urandom(50_000)
    digest = Digest.of(data)
    first = client.repository(zoll.host, "team/a")
    assert (await first.push_blob(data, digest, len(data))).how == "uploaded"
    assert (await first.push_blob(data, digest, len(data))).how == "existing"
    second = client.repository(zoll.host, "team/b")
    mounted = await second.push_blob(data, digest, len(data), mount_from=["team/a"])
    assert mounted.how == "mounted"
    assert await second.read_blob(digest, len(data)) == data
    other = os.urandom(10)
    # Mounting from a repository without the blob falls back to an upload.
    fallback = await second.push_blob(other, Digest.of(other), len(other), mount_from=["team/none"])
    assert fallback.how == "uploaded"


async def test_referrers_api_and_remote_reader(zoll: LiveRegistry, client: RegistryClient) -> None:
    repo = client.repository(zoll.host, "team/app")
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
    ).encode()
    await repo.push_blob(config, Digest.of(config), len(config))
    image = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(Digest.of(config)),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    subject = await repo.put_manifest(image, mt.OCI_MANIFEST, "v1")
    empty = b"{}"
    await repo.push_blob(empty, Digest.of(empty), 2)
    bundle = json.dumps({"mediaType": mt.SIGSTORE_BUNDLE_V03}).encode()
    await repo.push_blob(bundle, Digest.of(bundle), len(bundle))
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": mt.SIGSTORE_BUNDLE_V03,
            "config": {"mediaType": mt.OCI_EMPTY, "digest": str(Digest.of(empty)), "size": 2},
            "layers": [
                {
                    "mediaType": mt.SIGSTORE_BUNDLE_V03,
                    "digest": str(Digest.of(bundle)),
                    "size": len(bundle),
                }
            ],
            "subject": {"mediaType": mt.OCI_MANIFEST, "digest": str(subject), "size": len(image)},
        }
    ).encode()
    referrer = await repo.put_manifest(artifact, mt.OCI_MANIFEST)
    found = await repo.referrers(subject)
    assert found.source == "api" and [d.digest for d in found.descriptors] == [referrer]
    assert (await repo.referrers(subject, "application/other")).descriptors == ()
    # Zoll tracks the subject itself: no fallback tag was written.
    assert await repo.tags() == ["v1"]

    reader = RemoteReader(repo)
    attached = await discover(reader, subject)
    assert [(a.scheme, a.kind, a.digest) for a in attached] == [("referrers", "bundle", referrer)]


async def test_lost_patch_answer_resumes_in_the_same_session_on_zoll(
    zoll: LiveRegistry, client: RegistryClient
) -> None:
    """Zoll's upload URL is stable, so after a lost PATCH answer the status request tells
    the client the chunk landed, and the upload continues without resending it."""
    async with FaultProxy(zoll.url).serving() as proxy:
        minimum = zoll.config.storage.s3.part_size  # Zoll's OCI-Chunk-Min-Length
        data = os.urandom(3 * minimum + 1)
        digest = Digest.of(data)
        uploads = r"/v2/team/resume/blobs/uploads/.*"
        proxy.add(Fault("PATCH", uploads, skip=1, lose_response=True))
        repo = client.repository(proxy.host, "team/resume")
        pushed = await repo.push_blob(data, digest, len(data), chunk_size=1024)
        assert pushed.how == "uploaded"
        assert len(proxy.requests("POST", r"/v2/team/resume/blobs/uploads/")) == 1
        assert [p.status for p in proxy.requests("PATCH", uploads)] == [202] * 4
        assert [g.status for g in proxy.requests("GET", uploads)] == [204]
        assert await repo.read_blob(digest, len(data)) == data


async def test_layout_and_registry_readers_agree(
    anon: Seeded, images: Images, client: RegistryClient
) -> None:
    layout = OCILayoutReader(images.app_layout)
    remote = RemoteReader(client.repository(anon.registry.host, "library/app"))
    local, fetched = await layout.get_manifest("v1"), await remote.get_manifest("v1")
    assert (local.digest, local.media_type, local.raw) == (
        fetched.digest,
        fetched.media_type,
        fetched.raw,
    )
    for layer in parse_manifest(local.raw).layers:
        assert await remote.read_blob(layer.digest, layer.size) == await layout.read_blob(
            layer.digest, layer.size
        )

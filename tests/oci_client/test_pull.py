"""Pulling from a real docker-registry (anonymous): resolve, manifests of every kind,
blobs, tags, catalog, and the referrers tag fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.oci import mediatypes as mt
from registry.oci.client import NotFoundError, RegistryClient, UnsupportedManifestError
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import OCILayoutReader
from tests.oci_client.conftest import Images, Seeded


async def test_resolve_and_fetch_the_image_skopeo_pushed(
    anon: Seeded, images: Images, client: RegistryClient
) -> None:
    repo = client.repository(anon.registry.host, "library/app")
    desc = await repo.resolve("v1")
    assert desc.digest == anon.app_digest
    assert desc.media_type == mt.OCI_MANIFEST
    fetched = await repo.get_manifest("v1")
    assert fetched.digest == anon.app_digest and len(fetched.raw) == desc.size
    by_digest = await repo.get_manifest(str(desc.digest))
    assert by_digest.raw == fetched.raw

    layout = OCILayoutReader(images.app_layout)
    manifest = parse_manifest(fetched.raw, fetched.media_type)
    assert manifest.config is not None
    config = await repo.read_blob(manifest.config.digest, 1 << 20)
    assert config == await layout.read_blob(manifest.config.digest, 1 << 20)
    for layer in manifest.layers:
        got = bytearray()
        async for chunk in repo.open_blob(layer.digest, size=layer.size):
            got += chunk
        assert Digest.of(bytes(got)) == layer.digest
        assert await repo.stat_blob(layer.digest) == layer.size


async def test_docker_media_types_are_negotiated(anon: Seeded, client: RegistryClient) -> None:
    repo = client.repository(anon.registry.host, "library/app")
    docker = await repo.get_manifest("docker")
    assert docker.media_type == mt.DOCKER_MANIFEST
    assert (await repo.resolve("docker")).media_type == mt.DOCKER_MANIFEST

    multi = client.repository(anon.registry.host, "library/multi")
    oci_index = await multi.get_manifest("oci")
    assert oci_index.media_type == mt.OCI_INDEX
    docker_list = await multi.get_manifest("v2s2")
    assert docker_list.media_type == mt.DOCKER_MANIFEST_LIST
    children = parse_manifest(docker_list.raw, docker_list.media_type).manifests
    assert sorted(str((c.platform or {}).get("architecture")) for c in children) == [
        "amd64",
        "arm64",
    ]
    for child in children:
        fetched = await multi.get_manifest(str(child.digest))
        assert fetched.media_type == mt.DOCKER_MANIFEST and fetched.digest == child.digest
    # Without the list type in Accept, distribution falls back to a converted Docker
    # schema 1 manifest of one platform: refused, never mistaken for the image.
    with pytest.raises(UnsupportedManifestError, match="schema 1"):
        await multi.get_manifest("v2s2", accept=[mt.OCI_INDEX, mt.OCI_MANIFEST])


async def test_unknown_content_is_not_found(anon: Seeded, client: RegistryClient) -> None:
    repo = client.repository(anon.registry.host, "library/app")
    with pytest.raises(NotFoundError) as missing_tag:
        await repo.get_manifest("nope")
    assert "MANIFEST_UNKNOWN" in missing_tag.value.codes
    with pytest.raises(NotFoundError):
        await repo.resolve("nope")
    absent = Digest.of(b"absent")
    assert await repo.stat_blob(absent) is None
    with pytest.raises(NotFoundError):
        await repo.read_blob(absent, 100)
    with pytest.raises(NotFoundError):
        await client.repository(anon.registry.host, "library/none").tags()


async def test_download_writes_only_verified_files(
    anon: Seeded, client: RegistryClient, tmp_path: Path
) -> None:
    repo = client.repository(anon.registry.host, "library/app")
    manifest = parse_manifest((await repo.get_manifest("v1")).raw)
    layer = manifest.layers[-1]
    target = tmp_path / "layer"
    assert await repo.download_blob(layer.digest, target, size=layer.size) == layer.size
    assert Digest.of(target.read_bytes()) == layer.digest
    assert not (tmp_path / "layer.partial").exists()


async def test_tags_and_catalog_paginate(anon: Seeded, client: RegistryClient) -> None:
    repo = client.repository(anon.registry.host, "library/app")
    every = await repo.tags()
    assert {"docker", "v1"} <= set(every)
    paged = await repo.tags(page_size=1)  # one tag per page, following Link headers
    assert sorted(paged) == sorted(every) and len(paged) == len(set(paged))
    catalog = await client.catalog(anon.registry.host, page_size=1)
    assert {"library/app", "library/multi"} <= set(catalog)


async def test_referrers_fall_back_to_the_tag_scheme(anon: Seeded, client: RegistryClient) -> None:
    """distribution 2.8 has no referrers API: pushing a referrer maintains the
    `sha256-<hex>` index, and listing referrers reads it."""
    repo = client.repository(anon.registry.host, "library/app")
    subject = await repo.resolve("v1")
    empty = b"{}"
    await repo.push_blob(empty, Digest.of(empty), len(empty))
    sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}).encode()
    await repo.push_blob(sbom, Digest.of(sbom), len(sbom))
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.cyclonedx+json",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": str(Digest.of(empty)), "size": 2},
            "layers": [
                {
                    "mediaType": "application/vnd.cyclonedx+json",
                    "digest": str(Digest.of(sbom)),
                    "size": len(sbom),
                }
            ],
            "subject": subject.to_json(),
        }
    ).encode()
    pushed = await repo.put_manifest(artifact, mt.OCI_MANIFEST)
    found = await repo.referrers(subject.digest)
    assert found.source == "tag"
    assert [d.digest for d in found.descriptors] == [pushed]
    assert found.descriptors[0].artifact_type == "application/vnd.cyclonedx+json"
    assert (await repo.referrers(subject.digest, "application/spdx+json")).descriptors == ()
    # Pushing again does not duplicate the entry.
    await repo.put_manifest(artifact, mt.OCI_MANIFEST)
    assert len((await repo.referrers(subject.digest)).descriptors) == 1
    other = await client.repository(anon.registry.host, "library/app").referrers(
        Digest.of(b"no referrers")
    )
    assert other.descriptors == () and other.source == "tag"

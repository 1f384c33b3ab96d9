"""Manifests the service writes together (an image's attestations: referrers and the
cosign `.att` manifest) are stored in one transaction: all of them, or none."""

from __future__ import annotations

import aiohttp
import pytest

from registry.audit import EventFilter, events
from registry.content import store_manifests
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.manifest import parse_manifest
from tests.support.oci import Image, push_blob
from tests.support.servers import LiveRegistry


async def test_a_batch_is_stored_whole_or_not_at_all(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    ready, incomplete = Image.random(layers=1), Image.random(layers=1)
    for blob in (ready.config, *ready.layers, incomplete.config):
        await push_blob(http, zoll.url, "batch", blob)
    first = parse_manifest(ready.manifest(), ready.media_type)
    second = parse_manifest(incomplete.manifest(), incomplete.media_type)

    with pytest.raises(RegistryError) as refused:
        await store_manifests(zoll.registry, "batch", [(first, ["one"]), (second, ["two"])])
    assert refused.value.code == ErrorCode.MANIFEST_BLOB_UNKNOWN
    missing = refused.value.detail["missing"]
    assert [m["digest"] for m in missing] == [str(second.blob_references()[-1].digest)]
    for ref in ("one", "two", ready.digest):  # the first one was not kept either
        async with http.head(f"{zoll.url}/v2/batch/manifests/{ref}") as r:
            assert r.status == 404

    await push_blob(http, zoll.url, "batch", incomplete.layers[0])
    await store_manifests(zoll.registry, "batch", [(first, ["one"]), (second, ["two"])])
    for ref, digest in (("one", ready.digest), ("two", incomplete.digest)):
        async with http.head(f"{zoll.url}/v2/batch/manifests/{ref}") as r:
            assert r.status == 200
            assert r.headers["Docker-Content-Digest"] == digest
    found = await events(zoll.registry.pool, EventFilter(repository="batch"), None, 50)
    pushed = sorted((e.action, e.target) for e in found if not e.action.startswith("blob."))
    assert pushed == sorted(
        [
            ("manifest.push", ready.digest),
            ("manifest.push", incomplete.digest),
            ("tag.move", "one"),
            ("tag.move", "two"),
        ]
    )

"""Manifests, tags, referrers and catalog over real HTTP, on both storage drivers."""

from __future__ import annotations

import json

import aiohttp

from registry.oci import mediatypes as mt
from tests.support.oci import Image, error_codes, push_blob, push_image, push_manifest, sha256
from tests.support.servers import LiveRegistry


async def test_image_manifest_by_tag_and_digest(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    image = Image.random()
    digest = await push_image(http, zoll.url, "opendesk/nextcloud/server", image, "32.0.9")
    base = f"{zoll.url}/v2/opendesk/nextcloud/server/manifests"
    for ref in ("32.0.9", digest):
        async with http.get(f"{base}/{ref}", headers={"Accept": mt.OCI_MANIFEST}) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == mt.OCI_MANIFEST
            assert r.headers["Docker-Content-Digest"] == digest
            assert await r.read() == image.manifest()
        async with http.head(f"{base}/{ref}") as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == len(image.manifest())
    async with http.get(f"{base}/{digest}", headers={"If-None-Match": f'"{digest}"'}) as r:
        assert r.status == 304


async def test_docker_schema2_and_content_negotiation(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    image = Image.random(media_type=mt.DOCKER_MANIFEST)
    digest = await push_image(http, zoll.url, "legacy", image, "v1")
    async with http.get(
        f"{zoll.url}/v2/legacy/manifests/v1", headers={"Accept": mt.DOCKER_MANIFEST}
    ) as r:
        assert r.headers["Content-Type"] == mt.DOCKER_MANIFEST
        assert r.headers["Docker-Content-Digest"] == digest
    # A client that only takes indexes does not get an image manifest by tag.
    async with http.get(
        f"{zoll.url}/v2/legacy/manifests/v1", headers={"Accept": mt.OCI_INDEX}
    ) as r:
        assert r.status == 404
        assert await error_codes(r) == ["MANIFEST_UNKNOWN"]


async def test_missing_blob_refuses_manifest_and_stores_nothing(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    image = Image.random()
    await push_blob(http, zoll.url, "app", image.config)  # layers never pushed
    r = await push_manifest(http, zoll.url, "app", "v1", image.manifest(), mt.OCI_MANIFEST)
    assert r.status == 400
    async with http.get(f"{zoll.url}/v2/app/manifests/v1") as r:
        assert r.status == 404
    async with http.put(
        f"{zoll.url}/v2/app/manifests/v1",
        data=image.manifest(),
        headers={"Content-Type": mt.OCI_MANIFEST},
    ) as r:
        body = await r.json()
        assert body["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        missing = {m["digest"] for m in body["errors"][0]["detail"]["missing"]}
        assert missing == {sha256(layer) for layer in image.layers}
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM manifests") == 0
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM tags") == 0


async def test_put_by_digest_must_match(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    image = Image.random()
    for blob in (image.config, *image.layers):
        await push_blob(http, zoll.url, "app", blob)
    wrong = sha256(b"not it")
    r = await push_manifest(http, zoll.url, "app", wrong, image.manifest(), mt.OCI_MANIFEST)
    assert r.status == 400
    r = await push_manifest(http, zoll.url, "app", image.digest, image.manifest(), mt.OCI_MANIFEST)
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/app/manifests/{image.digest}"


async def test_index_round_trip_and_child_protection(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    children = [Image.random(), Image.random()]
    for i, child in enumerate(children):
        await push_image(http, zoll.url, "multi", child, f"arch-{i}")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {**c.descriptor(), "platform": {"architecture": arch, "os": "linux"}}
                for c, arch in zip(children, ("amd64", "arm64"), strict=True)
            ],
        }
    ).encode()
    r = await push_manifest(http, zoll.url, "multi", "latest", index, mt.OCI_INDEX)
    assert r.status == 201
    async with http.get(
        f"{zoll.url}/v2/multi/manifests/latest", headers={"Accept": mt.OCI_INDEX}
    ) as r:
        assert r.headers["Content-Type"] == mt.OCI_INDEX
        assert await r.read() == index
    async with http.delete(f"{zoll.url}/v2/multi/manifests/{children[0].digest}") as r:
        assert r.status == 409
    # An index whose children are missing is refused.
    orphan = json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [Image.random().descriptor()]}
    ).encode()
    r = await push_manifest(http, zoll.url, "multi", "broken", orphan, mt.OCI_INDEX)
    assert r.status == 400


async def test_tags_pagination_and_deletes(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    image = Image.random()
    await push_image(http, zoll.url, "paged", image, "a")
    for tag in ("c", "b", "e", "d"):
        r = await push_manifest(http, zoll.url, "paged", tag, image.manifest(), mt.OCI_MANIFEST)
        assert r.status == 201
    async with http.get(f"{zoll.url}/v2/paged/tags/list?n=2") as r:
        assert (await r.json())["tags"] == ["a", "b"]
        assert r.headers["Link"] == '</v2/paged/tags/list?n=2&last=b>; rel="next"'
    async with http.get(f"{zoll.url}/v2/paged/tags/list?n=2&last=b") as r:
        assert (await r.json())["tags"] == ["c", "d"]
    async with http.get(f"{zoll.url}/v2/paged/tags/list?n=2&last=d") as r:
        assert (await r.json())["tags"] == ["e"]
        assert "Link" not in r.headers
    async with http.get(f"{zoll.url}/v2/paged/tags/list?n=-1") as r:
        assert await error_codes(r) == ["PAGINATION_NUMBER_INVALID"]
    async with http.delete(f"{zoll.url}/v2/paged/manifests/c") as r:
        assert r.status == 202
    async with http.get(f"{zoll.url}/v2/paged/tags/list") as r:
        assert (await r.json())["tags"] == ["a", "b", "d", "e"]
    async with http.delete(f"{zoll.url}/v2/paged/manifests/{image.digest}") as r:
        assert r.status == 202
    async with http.get(f"{zoll.url}/v2/paged/tags/list") as r:
        assert (await r.json())["tags"] == []
    async with http.get(f"{zoll.url}/v2/paged/manifests/a") as r:
        assert r.status == 404
    async with http.get(f"{zoll.url}/v2/unknown/tags/list") as r:
        assert r.status == 404
        assert await error_codes(r) == ["NAME_UNKNOWN"]
    history = await zoll.registry.pool.fetch(
        "SELECT name, manifest_digest FROM tag_history ORDER BY id"
    )
    assert [(h["name"], h["manifest_digest"]) for h in history][-2:] == [
        ("a", None),
        ("b", None),
    ] or len(history) == 10


async def test_catalog_pagination(zoll: LiveRegistry, http: aiohttp.ClientSession) -> None:
    for name in ("zeta", "alpha", "mid/nested"):
        await push_image(http, zoll.url, name, Image.random(), "v1")
    async with http.get(f"{zoll.url}/v2/_catalog?n=2") as r:
        assert (await r.json())["repositories"] == ["alpha", "mid/nested"]
        assert r.headers["Link"] == '</v2/_catalog?n=2&last=mid%2Fnested>; rel="next"'
    async with http.get(f"{zoll.url}/v2/_catalog?n=2&last=mid/nested") as r:
        assert (await r.json())["repositories"] == ["zeta"]


async def test_referrers_with_subject_and_filter(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    subject = Image.random()
    await push_image(http, zoll.url, "app", subject, "v1")
    empty = b"{}"
    await push_blob(http, zoll.url, "app", empty)
    pushed = {}
    for kind in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        payload = kind.encode()
        await push_blob(http, zoll.url, "app", payload)
        artifact = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": kind,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2},
                "layers": [
                    {"mediaType": "text/plain", "digest": sha256(payload), "size": len(payload)}
                ],
                "subject": subject.descriptor(),
                "annotations": {"org.example.kind": kind},
            }
        ).encode()
        r = await push_manifest(http, zoll.url, "app", sha256(artifact), artifact, mt.OCI_MANIFEST)
        assert r.status == 201
        assert r.headers["OCI-Subject"] == subject.digest
        pushed[kind] = sha256(artifact)
    async with http.get(f"{zoll.url}/v2/app/referrers/{subject.digest}") as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == mt.OCI_INDEX
        index = await r.json(content_type=None)
        assert {m["digest"] for m in index["manifests"]} == set(pushed.values())
        assert {m["artifactType"] for m in index["manifests"]} == set(pushed)
        assert all(
            m["annotations"]["org.example.kind"] == m["artifactType"] for m in index["manifests"]
        )
    url = f"{zoll.url}/v2/app/referrers/{subject.digest}?artifactType=application/vnd.example.sig"
    async with http.get(url) as r:
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        index = await r.json(content_type=None)
        assert [m["digest"] for m in index["manifests"]] == [pushed["application/vnd.example.sig"]]
    async with http.get(f"{zoll.url}/v2/app/referrers/{sha256(b'nothing')}") as r:
        assert r.status == 200
        assert (await r.json(content_type=None))["manifests"] == []
    async with http.get(f"{zoll.url}/v2/app/referrers/sha256:1234") as r:
        assert r.status == 400


async def test_referrers_come_in_pages_with_a_link_to_the_next(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    subject = Image.random(layers=1)
    await push_image(http, zoll.url, "app", subject, "v1")
    empty = b"{}"
    await push_blob(http, zoll.url, "app", empty)
    pushed = set()
    for n in range(5):
        kind = "application/vnd.example.sig" if n % 2 else "application/vnd.example.sbom"
        artifact = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "artifactType": kind,
                "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2},
                "layers": [{"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2}],
                "subject": subject.descriptor(),
                "annotations": {"n": str(n)},
            }
        ).encode()
        r = await push_manifest(http, zoll.url, "app", sha256(artifact), artifact, mt.OCI_MANIFEST)
        assert r.status == 201
        pushed.add(sha256(artifact))

    async def walk(url: str) -> list[list[str]]:
        pages = []
        while url:
            async with http.get(url) as r:
                assert r.status == 200
                pages.append([m["digest"] for m in (await r.json(content_type=None))["manifests"]])
                link = r.headers.get("Link")
            url = f"{zoll.url}{link.split(';')[0].strip('<>')}" if link else ""
        return pages

    pages = await walk(f"{zoll.url}/v2/app/referrers/{subject.digest}?n=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [d for page in pages for d in page]
    assert listed == sorted(pushed)  # digest order, each once

    # The filter is kept across pages.
    sigs = await walk(
        f"{zoll.url}/v2/app/referrers/{subject.digest}?n=1&artifactType=application/vnd.example.sig"
    )
    assert [len(p) for p in sigs] == [1, 1]

"""Three `zoll serve` instances on one PostgreSQL and one S3 bucket behind a round-robin
load balancer: the conformance-style push/pull/delete flows with every request on the
next instance, then what only several instances can get wrong — the same content pushed
through all of them at once, GC on one while the others take pushes, pipeline jobs and
transparency-log appends from all of them, tokens and login lockouts shared."""

from __future__ import annotations

import asyncio
import json
import os
import re

import aiohttp
import asyncpg
import pytest

from attest.tlog.checkpoint import verify_checkpoint
from attest.tlog.note import NoteVerifier
from registry.oci import mediatypes as mt
from tests.auth.conftest import basic
from tests.faults.conftest import audit_verifies
from tests.scaleout.conftest import LOG_ORIGIN, Cluster, RoundRobin
from tests.support.charts import tgz
from tests.support.oci import Image, sha256
from tests.support.served import Served
from tests.ui.conftest import csrf_of, login

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


def small_image(marker: str) -> Image:
    """A two-layer image with real layers; `marker` makes it unique."""
    return Image(
        json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}, "m": marker}
        ).encode(),
        [tgz({"etc/os-release": b"ID=zoll\n"}), tgz({"app/marker": marker.encode()})],
    )


async def push_image(rr: RoundRobin, name: str, image: Image, tag: str) -> None:
    for blob in (image.config, *image.layers):
        await push_blob(rr, name, blob)
    await put_manifest(rr, name, image, tag)


async def push_blob(rr: RoundRobin, name: str, blob: bytes) -> None:
    """A monolithic blob upload (one POST)."""
    status, _, body = await rr.request(
        "POST", f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", data=blob
    )
    assert status == 201, body


async def put_manifest(rr: RoundRobin, name: str, image: Image, tag: str) -> None:
    status, _, body = await rr.request(
        "PUT",
        f"/v2/{name}/manifests/{tag}",
        data=image.manifest(),
        headers={"Content-Type": image.media_type},
    )
    assert status == 201, body


async def pulled(rr: RoundRobin, name: str, ref: str) -> Image:
    """The image at `ref`, every part fetched from the next instance and checked."""
    status, headers, manifest = await rr.request(
        "GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST}
    )
    assert status == 200, manifest
    assert headers["Docker-Content-Digest"] == sha256(manifest)
    doc = json.loads(manifest)
    parts = []
    for descriptor in (doc["config"], *doc["layers"]):
        status, _, blob = await rr.request("GET", f"/v2/{name}/blobs/{descriptor['digest']}")
        assert status == 200, (descriptor, blob[:200])
        assert sha256(blob) == descriptor["digest"]
        parts.append(blob)
    return Image(parts[0], parts[1:])


# The conformance flows, one request per instance in turn -------------------------------


async def test_blob_uploads_monolithic_and_chunked_across_instances(rr: RoundRobin) -> None:
    name = "flows/layers"
    # POST with ?digest= (monolithic), then HEAD and GET on the two other instances
    small = os.urandom(70_000)
    status, headers, body = await rr.request(
        "POST", f"/v2/{name}/blobs/uploads/?digest={sha256(small)}", data=small
    )
    assert status == 201, body
    assert (status, headers["Location"]) == (201, f"/v2/{name}/blobs/{sha256(small)}")
    for _ in range(2):
        status, headers, _ = await rr.request("HEAD", f"/v2/{name}/blobs/{sha256(small)}")
        assert (status, int(headers["Content-Length"])) == (200, len(small))
    # POST then PUT with the body, on different instances
    status, headers, _ = await rr.request("POST", f"/v2/{name}/blobs/uploads/")
    assert status == 202
    other = os.urandom(1000)
    status, _, _ = await rr.request(
        "PUT", f"{headers['Location']}?digest={sha256(other)}", data=other
    )
    assert status == 201
    # Chunked: small chunks, then chunks above S3's part minimum, each PATCH on the next
    # instance; the status GET and the closing PUT too.
    chunk = 6 * MiB
    data = os.urandom(2 * chunk + 3000)
    pieces = [(0, 1000), (1000, 2000), (2000, chunk), (chunk, 2 * chunk)]
    status, headers, _ = await rr.request("POST", f"/v2/{name}/blobs/uploads/")
    location = headers["Location"]
    for start, end in pieces:
        status, headers, body = await rr.request(
            "PATCH",
            location,
            data=data[start:end],
            headers={
                "Content-Range": f"{start}-{end - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert (status, headers.get("Range")) == (202, f"0-{end - 1}"), body
        location = headers["Location"]
    status, headers, _ = await rr.request("GET", location)
    assert (status, headers["Range"]) == (204, f"0-{2 * chunk - 1}")
    # a chunk that does not continue where the upload ends is refused by any instance
    status, _, body = await rr.request(
        "PATCH", location, data=b"x", headers={"Content-Range": "5-5"}
    )
    assert status == 416, body
    status, headers, body = await rr.request(
        "PUT", f"{location}?digest={sha256(data)}", data=data[2 * chunk :]
    )
    assert status == 201, body
    for _ in range(3):
        status, _, got = await rr.request("GET", f"/v2/{name}/blobs/{sha256(data)}")
        assert status == 200 and got == data
    # a mount from another repository, then the blob deleted there: gone on every instance
    status, headers, _ = await rr.request(
        "POST",
        f"/v2/flows/mounted/blobs/uploads/?mount={sha256(data)}&from={name}",
        scope=f"repository:flows/mounted:pull,push,delete repository:{name}:pull",
    )
    assert status == 201
    status, _, _ = await rr.request("DELETE", f"/v2/flows/mounted/blobs/{sha256(data)}")
    assert status == 202
    for _ in range(3):
        status, _, _ = await rr.request("HEAD", f"/v2/flows/mounted/blobs/{sha256(data)}")
        assert status == 404
        status, _, _ = await rr.request("HEAD", f"/v2/{name}/blobs/{sha256(data)}")
        assert status == 200


async def test_manifests_tags_referrers_and_deletes_across_instances(rr: RoundRobin) -> None:
    name = "flows/app"
    images = [small_image(f"flows-{n}") for n in range(3)]
    for n, image in enumerate(images):
        await push_image(rr, name, image, f"v{n}")
    for n, image in enumerate(images):
        assert (await pulled(rr, name, f"v{n}")).layers == image.layers
        status, headers, _ = await rr.request("HEAD", f"/v2/{name}/manifests/{image.digest}")
        assert (status, headers["Docker-Content-Digest"]) == (200, image.digest)
    # tags, paginated: each page from another instance
    status, headers, body = await rr.request("GET", f"/v2/{name}/tags/list?n=2")
    assert (status, json.loads(body)["tags"]) == (200, ["v0", "v1"])
    status, _, body = await rr.request("GET", f"/v2/{name}/tags/list?n=2&last=v1")
    assert json.loads(body)["tags"] == ["v2"]
    # a referrer (an artifact about v0) pushed through one, listed by the others
    subject = images[0]
    empty = b"{}"
    await rr.request("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(empty)}", data=empty)
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2},
            "layers": [{"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2}],
            "subject": subject.descriptor(),
        }
    ).encode()
    status, headers, _ = await rr.request(
        "PUT",
        f"/v2/{name}/manifests/{sha256(artifact)}",
        data=artifact,
        headers={"Content-Type": mt.OCI_MANIFEST},
    )
    assert (status, headers.get("OCI-Subject")) == (201, subject.digest)
    for _ in range(3):
        status, _, body = await rr.request(
            "GET",
            f"/v2/{name}/referrers/{subject.digest}?artifactType=application/vnd.example.sbom",
        )
        found = [m["digest"] for m in json.loads(body)["manifests"]]
        assert (status, found) == (200, [sha256(artifact)])
    # deletes: a tag, a manifest, a blob; no instance serves them afterwards
    status, _, _ = await rr.request("DELETE", f"/v2/{name}/manifests/v2")
    assert status == 202
    status, _, _ = await rr.request("DELETE", f"/v2/{name}/manifests/{images[1].digest}")
    assert status == 202
    status, _, _ = await rr.request("DELETE", f"/v2/{name}/blobs/{sha256(images[1].config)}")
    assert status == 202
    for _ in range(3):
        assert (await rr.request("GET", f"/v2/{name}/manifests/v2"))[0] == 404
        assert (await rr.request("GET", f"/v2/{name}/manifests/{images[1].digest}"))[0] == 404
        assert (await rr.request("HEAD", f"/v2/{name}/blobs/{sha256(images[1].config)}"))[0] == 404
        status, _, body = await rr.request("GET", f"/v2/{name}/tags/list")
        assert json.loads(body)["tags"] == ["v0"]
    assert (await pulled(rr, name, images[2].digest)).layers == images[2].layers


# What several instances must agree on ----------------------------------------------------


async def test_a_token_from_one_instance_works_on_every_other(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    for issuer in cluster.urls:
        params = {"service": "zoll", "scope": "repository:tokens/app:pull,push"}
        async with http.get(
            f"{issuer}/token", params=params, headers={"Authorization": cluster.admin}
        ) as r:
            assert r.status == 200
            token = (await r.json())["token"]
        for verifier in cluster.urls:
            async with http.get(
                f"{verifier}/v2/tokens/app/tags/list",
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                assert r.status in (200, 404), (issuer, verifier, r.status, await r.text())


async def test_the_same_image_pushed_through_every_instance_at_once(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """Nine clients, three per instance, push the same blobs (monolithic and chunked) and
    the same tag at once: every push succeeds, one copy of each blob is stored, and every
    instance then serves the same image under the tag."""
    name = "flows/same"
    image = small_image("same")
    big = os.urandom(6 * MiB + 5)  # chunked, in parts above S3's minimum
    image.layers.append(big)

    async def push(n: int) -> None:
        client = RoundRobin(http, cluster.urls[n % 3 :] + cluster.urls[: n % 3], cluster.admin)
        for blob in (image.config, *image.layers[:2]):
            await push_blob(client, name, blob)
        status, headers, _ = await client.request("POST", f"/v2/{name}/blobs/uploads/")
        location = headers["Location"]
        for start in range(0, len(big), 3 * MiB):
            piece = big[start : start + 3 * MiB]
            status, headers, body = await client.request(
                "PATCH",
                location,
                data=piece,
                headers={"Content-Range": f"{start}-{start + len(piece) - 1}"},
            )
            assert status == 202, body
            location = headers["Location"]
        status, _, body = await client.request("PUT", f"{location}?digest={sha256(big)}")
        assert status == 201, body
        await put_manifest(client, name, image, "latest")

    await asyncio.gather(*(push(n) for n in range(9)))
    conn = await asyncpg.connect(cluster.dsn)
    try:
        digests = [sha256(b) for b in (image.config, *image.layers)]
        rows = await conn.fetch(
            "SELECT digest, count(*) AS n FROM blobs WHERE digest = ANY($1::text[]) "
            "GROUP BY digest",
            digests,
        )
        assert {r["digest"]: r["n"] for r in rows} == dict.fromkeys(digests, 1)
        assert await conn.fetchval("SELECT count(*) FROM upload_sessions") == 0
    finally:
        await conn.close()
    rr = RoundRobin(http, cluster.urls, cluster.admin)
    for _ in range(3):
        status, headers, _ = await rr.request("HEAD", f"/v2/{name}/manifests/latest")
        assert (status, headers["Docker-Content-Digest"]) == (200, image.digest)
    assert (await pulled(rr, name, "latest")).layers == image.layers


async def test_one_tag_pushed_with_different_images_at_once_ends_consistent(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    name = "flows/race"
    images = [small_image(f"race-{n}") for n in range(6)]
    clients = [
        RoundRobin(http, cluster.urls[n % 3 :] + cluster.urls[: n % 3], cluster.admin)
        for n in range(6)
    ]
    await asyncio.gather(
        *(push_image(c, name, image, "stable") for c, image in zip(clients, images, strict=True))
    )
    seen = set()
    for client in clients[:3]:
        status, headers, _ = await client.request("HEAD", f"/v2/{name}/manifests/stable")
        assert status == 200
        seen.add(headers["Docker-Content-Digest"])
    assert len(seen) == 1 and seen <= {i.digest for i in images}


async def test_gc_on_one_instance_while_the_others_take_pushes(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """The first instance collects every second. Old garbage (backdated past the grace
    period) shares a layer with the images pushed meanwhile through the other two: the
    garbage goes, every pushed image stays whole, and so does a blob pushed without a
    manifest yet (it is within the grace period)."""
    others = RoundRobin(http, cluster.urls[1:], cluster.admin)
    shared = tgz({"shared/gc": b"pushed again while collected"})
    garbage = small_image("garbage")
    garbage.layers.append(shared)
    await push_image(others, "flows/gc-old", garbage, "old")
    status, _, _ = await others.request("DELETE", f"/v2/flows/gc-old/manifests/{garbage.digest}")
    assert status == 202
    lone = os.urandom(5000)
    status, _, _ = await others.request(
        "POST", f"/v2/flows/gc-lone/blobs/uploads/?digest={sha256(lone)}", data=lone
    )
    assert status == 201
    conn = await asyncpg.connect(cluster.dsn)
    try:
        old = [sha256(b) for b in (garbage.config, *garbage.layers)]
        await conn.execute(
            "UPDATE repository_blobs SET linked_at = now() - interval '1 hour' "
            "WHERE digest = ANY($1::text[])",
            old,
        )
        await conn.execute(
            "UPDATE blobs SET created_at = now() - interval '1 hour' "
            "WHERE digest = ANY($1::text[])",
            old,
        )
        pushed: list[tuple[str, Image]] = []

        async def keep_pushing(n: int) -> None:
            client = RoundRobin(http, cluster.urls[1:], cluster.admin)
            loop = asyncio.get_running_loop()
            until = loop.time() + 8
            while loop.time() < until:
                image = small_image(f"gc-{n}-{len(pushed)}")
                image.layers.append(shared)
                name = f"flows/gc-new-{n}"
                await push_image(client, name, image, f"t{len(pushed)}")
                pushed.append((name, image))

        await asyncio.gather(*(keep_pushing(n) for n in range(3)))
        assert len(pushed) >= 6
        collected = await conn.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'gc.collect'"
        )
        assert collected >= 1, "the first instance collected nothing"
        gone = [sha256(garbage.config), sha256(garbage.layers[1])]
        assert (
            await conn.fetchval("SELECT count(*) FROM blobs WHERE digest = ANY($1::text[])", gone)
            == 0
        )
    finally:
        await conn.close()
    rr = RoundRobin(http, cluster.urls, cluster.admin)
    for name, image in pushed:
        assert (await pulled(rr, name, image.digest)).layers == image.layers
    status, _, got = await rr.request("GET", f"/v2/flows/gc-lone/blobs/{sha256(lone)}")
    assert (status, got) == (200, lone)
    status, _, _ = await rr.request("HEAD", f"/v2/flows/gc-old/blobs/{sha256(garbage.config)}")
    assert status == 404


async def test_pipeline_jobs_run_once_and_the_log_grows_without_gaps(
    cluster: Cluster, rr: RoundRobin, http: aiohttp.ClientSession
) -> None:
    """Images pushed through all three are judged by all three runners: each stage of
    each image runs exactly once, the attestations are logged at indexes 0…n-1 with
    none twice, every instance shows the same checkpoint signed with the one log key,
    and the audit chain they all appended to verifies."""
    images = [small_image(f"judged-{n}") for n in range(6)]
    for n, image in enumerate(images):
        await push_image(rr, f"judged/app-{n}", image, "v1")
    conn = await asyncpg.connect(cluster.dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            busy = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
            )
            judged = await conn.fetchval(
                "SELECT count(*) FROM image_status s JOIN repositories r "
                "ON r.id = s.repository_id WHERE r.name LIKE 'judged/%' AND s.kind = 'image' "
                "AND s.hardening IS NOT NULL"
            )
            if busy == 0 and judged == len(images):
                break
            assert loop.time() < deadline, (busy, judged, cluster.output())
            await asyncio.sleep(0.5)
        jobs = await conn.fetch("SELECT kind, key, state, attempts, worker FROM jobs")
        assert jobs and all(j["state"] == "done" and j["attempts"] == 1 for j in jobs), [
            dict(j) for j in jobs if j["state"] != "done" or j["attempts"] != 1
        ]
        assert len({j["key"] for j in jobs}) == len(jobs), "a job was queued twice"
        runners = {j["worker"].rsplit(":", 1)[0] for j in jobs}
        assert len(runners) >= 2, f"one instance did all the work: {runners}"
        twice = await conn.fetch(
            "SELECT repository_id, digest, stage, count(*) FROM pipeline_events "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1"
        )
        assert twice == []
        size = await conn.fetchval("SELECT size FROM tlog_logs")
        indexes = [r["idx"] for r in await conn.fetch("SELECT idx FROM tlog_leaves ORDER BY idx")]
        assert size > len(images) and indexes == list(range(size))
        logged = await conn.fetch("SELECT status, log_index FROM attestations")
        assert {r["status"] for r in logged} == {"logged"}
        assert len({r["log_index"] for r in logged}) == len(logged)
    finally:
        await conn.close()
    verifier = NoteVerifier.for_key(LOG_ORIGIN, cluster.key.public)
    heads = set()
    for url in cluster.urls:
        async with http.get(f"{url}/api/v1/log/checkpoint") as r:
            checkpoint = verify_checkpoint(await r.text(), [verifier], LOG_ORIGIN)
        heads.add((checkpoint.size, checkpoint.root))
    assert len(heads) == 1 and heads.pop()[0] == size
    await audit_verifies(cluster.dsn)


async def test_an_instance_with_an_attestation_key_of_its_own_does_not_start(
    cluster: Cluster,
) -> None:
    """A fourth instance that would generate its own key (no attest.key.file) must not
    sign the log the others sign with the shared key."""
    env = {k: v for k, v in cluster.env.items() if k != "ZOLL_ATTEST__KEY__FILE"}
    with pytest.raises(AssertionError, match="zoll serve exited") as refused:
        Served(cluster.folder / "stray", "--workers", "1", env=env)
    message = " ".join(str(refused.value).split())
    assert "every instance of one database must sign with the same attestation key" in message
    conn = await asyncpg.connect(cluster.dsn)
    try:  # refused, it recorded nothing: the instances holding the key still start
        signers = await conn.fetchval(
            "SELECT count(*) FROM log_signers WHERE origin = $1", LOG_ORIGIN
        )
    finally:
        await conn.close()
    assert signers == 1


async def test_an_instance_with_a_witness_key_of_its_own_does_not_start(
    cluster: Cluster,
) -> None:
    """Peers pin one witness key per node: a fourth instance that would make its own
    (no federation.witness_key_file, a data folder of its own) must not cosign for it."""
    env = {k: v for k, v in cluster.env.items() if k != "ZOLL_FEDERATION__WITNESS_KEY_FILE"}
    with pytest.raises(AssertionError, match="zoll serve exited") as refused:
        Served(cluster.folder / "stray-witness", "--workers", "1", env=env)
    message = " ".join(str(refused.value).split())
    assert "every instance of one database must use the same witness key" in message


async def _signed_in_as(http: aiohttp.ClientSession, url: str, cookie: str) -> str | None:
    async with http.get(f"{url}/ui/", headers={"Cookie": f"zoll_session={cookie}"}) as r:
        assert r.status == 200
        page = await r.text()
    found = re.search(r"Signed in as <strong>([^<]+)</strong>", page)
    return found.group(1) if found else None


async def test_a_web_login_on_one_instance_is_a_session_on_all(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    status, body = await _create_user(http, cluster, "dora")
    assert status == 201, body
    cookie = await login(http, cluster.urls[1], "dora", "dora-password-1234")
    assert [await _signed_in_as(http, url, cookie) for url in cluster.urls] == ["dora"] * 3
    async with http.get(
        f"{cluster.urls[2]}/ui/", headers={"Cookie": f"zoll_session={cookie}"}
    ) as r:
        csrf = csrf_of(await r.text())
    async with http.post(
        f"{cluster.urls[2]}/ui/logout",
        data={"csrf": csrf},
        headers={"Cookie": f"zoll_session={cookie}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
    assert [await _signed_in_as(http, url, cookie) for url in cluster.urls] == [None] * 3


async def _create_user(http: aiohttp.ClientSession, cluster: Cluster, name: str) -> tuple[int, str]:
    async with http.post(
        f"{cluster.urls[0]}/api/v1/admin/users",
        json={
            "name": name,
            "password": f"{name}-password-1234",
            "grants": [{"namespace": "flows", "role": "reader"}],
        },
        headers={"Authorization": cluster.admin},
    ) as r:
        return r.status, await r.text()


async def test_failed_logins_on_every_instance_add_up_to_one_lockout(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """Runs last: it locks this address out for a second."""
    status, body = await _create_user(http, cluster, "erin")
    assert status == 201, body
    wrong = {"Authorization": basic("erin", "guess")}
    statuses = []
    for url in cluster.urls:  # one failure per instance: three, the limit
        async with http.get(f"{url}/token", headers=wrong) as r:
            statuses.append(r.status)
    assert statuses == [401, 401, 401]
    right = {"Authorization": basic("erin", "erin-password-1234")}
    for url in cluster.urls:
        async with http.get(f"{url}/token", headers=right) as r:
            assert (r.status, r.headers.get("Retry-After")) == (429, "1"), url
    await asyncio.sleep(1.2)
    async with http.get(f"{cluster.urls[1]}/token", headers=right) as r:
        assert r.status == 200

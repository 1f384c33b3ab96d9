"""A build system in an enforcing namespace: a `pusher` robot pushes an image and reads it
back while it is quarantined (skopeo inspect, the status API); an `attester` robot signs
it the way cosign does and can push nothing else; deployments (readers) see nothing
until it is admitted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from attest.keys import PrivateKey
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from tests.attest_verify.cosign_writer import CosignWriter
from tests.auth.conftest import Accounts, auth_settings, basic
from tests.support.oci import Image, push_image
from tests.support.pipeline import RegistrySink
from tests.support.servers import LiveRegistry, live_registry, registry_config
from tests.support.tools import skopeo

REPO = "opendesk/app"


@pytest.fixture
async def enforcing(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        auth=auth_settings(),
        namespaces=[{"prefix": "opendesk/", "admission": "enforce"}],
    )
    async with live_registry(config) as live:
        yield live


async def status_of(http: aiohttp.ClientSession, url: str, auth: str) -> int:
    async with http.get(url, headers={"Authorization": auth}) as r:
        return r.status


async def test_a_build_system_reads_back_and_signs_its_quarantined_image(
    enforcing: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    people = Accounts(enforcing)
    ci, ci_secret = await people.robot("ci", ("opendesk", "pusher"))
    signer, signer_secret = await people.robot("signer", ("opendesk", "attester"))
    await people.user("deploy", ("opendesk", "reader"))
    as_ci, as_signer = basic(ci, ci_secret), basic(signer, signer_secret)
    as_deploy = basic("deploy", people.passwords["deploy"])

    image = Image.random(layers=1, size=256)
    async with aiohttp.ClientSession(headers={"Authorization": as_ci}) as ci_http:
        digest = await push_image(ci_http, enforcing.url, REPO, image, "1.0")
    manifest = f"{enforcing.url}/v2/{REPO}/manifests/1.0"

    # The pusher reads back what it pushed, with the client build systems use.
    out = await skopeo(
        "inspect", "--tls-verify=false", "--creds", f"{ci}:{ci_secret}", "--raw",
        f"docker://{enforcing.host}/{REPO}:1.0",
    )  # fmt: skip
    assert Digest.of(out.encode()) == Digest.parse(digest)
    status = f"{enforcing.url}/api/v1/images/{REPO}@{digest}/status"
    async with http.get(status, headers={"Authorization": as_ci}) as r:
        assert r.status == 200 and (await r.json())["state"] == "quarantined"
    # A deployment with read access does not get the quarantined image.
    async with http.get(manifest, headers={"Authorization": as_deploy}) as r:
        assert r.status == 403
        assert (await r.json())["errors"][0]["code"] == "DENIED"
    assert await status_of(http, status, as_deploy) == 200  # but may ask why

    # The attester signs (cosign's .sig tag and an OCI referrer), reading the image first.
    assert await status_of(http, manifest, as_signer) == 200
    writer = CosignWriter(RegistrySink(enforcing.url, REPO, auth=(signer, signer_secret)))
    key = PrivateKey.generate()
    await asyncio.to_thread(writer.sign, Digest.parse(digest), key)
    await asyncio.to_thread(
        writer.attest, Digest.parse(digest), key, "https://slsa.dev/provenance/v1", {}
    )
    await asyncio.to_thread(
        writer.attach_referrer,
        Digest.parse(digest),
        mt.OCI_MANIFEST,
        "application/vnd.example+json",
        [(b"{}", "application/json", None)],
    )
    async with http.get(
        f"{enforcing.url}/v2/{REPO}/referrers/{digest}", headers={"Authorization": as_deploy}
    ) as r:
        assert len((await r.json())["manifests"]) == 1

    # … and nothing else: no image, no moved tag, no delete.
    for tag in ("1.0", "latest"):
        async with http.put(
            f"{enforcing.url}/v2/{REPO}/manifests/{tag}",
            data=image.manifest(),
            headers={"Authorization": as_signer, "Content-Type": image.media_type},
        ) as r:
            assert r.status == 403, await r.text()
            assert "attestation" in json.dumps(await r.json())
    async with http.delete(
        f"{enforcing.url}/v2/{REPO}/manifests/{digest}", headers={"Authorization": as_signer}
    ) as r:
        assert r.status == 403

"""Pull-through: the first pull of a missing image fetches it from upstream (once, however
many clients ask at the same time); then it is served like any stored image, and in an
enforced namespace only after the pipeline admitted it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from registry.config import Config
from tests.oci_client.faults import Fault, FaultProxy
from tests.oci_client.upstream import running_distribution
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import live_registry, registry_config
from tests.support.tools import layout_index, skopeo

pytestmark = pytest.mark.slow
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def pull_through_config(pg_dsn: str, tmp_path: Path, upstream: str, **rule: object) -> Config:
    """Zoll caching `upstream` under `mirror/up/`, admission off."""
    return registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        pull_through=[{"prefix": "mirror/up/", "upstream": upstream, "insecure": True, **rule}],
        namespaces=[{"prefix": "mirror/", "admission": "off"}],
    )


async def pulled(http: aiohttp.ClientSession, url: str) -> str:
    """The digest a manifest GET answers (which must succeed)."""
    async with http.get(url, headers=ACCEPT) as r:
        assert r.status == 200, await r.text()
        return r.headers["Docker-Content-Digest"]


async def test_first_pull_fetches_once_then_serves_locally(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    builder = Builder(tmp_path / "buildah")
    image = builder.build("pt/app", BUSYBOX_BASE + "RUN echo cached > /c\n", layers=True)
    layout = builder.push_oci_layout(image, tmp_path / "layout", "1.0")
    digest = layout_index(layout)["manifests"][0]["digest"]
    async with running_distribution(tmp_path / "upstream") as upstream:
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:1.0",
            f"docker://{upstream.host}/library/app:1.0",
        )
        async with FaultProxy(upstream.url).serving() as proxy:
            config = pull_through_config(pg_dsn, tmp_path, proxy.host)
            async with live_registry(config) as zoll:
                url = f"{zoll.url}/v2/mirror/up/library/app/manifests/1.0"
                digests = await asyncio.gather(*(pulled(http, url) for _ in range(8)))
                assert set(digests) == {digest}
                layers = json.loads(
                    (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
                )
                fetched = proxy.requests("GET", r"/v2/library/app/blobs/sha256:[0-9a-f]+")
                assert len(fetched) == 1 + len(layers["layers"])  # each blob once
                manifest_gets = len(proxy.requests("GET", r"/v2/library/app/manifests/.*"))

                out = tmp_path / "back"
                await skopeo(
                    "copy",
                    "--src-tls-verify=false",
                    f"docker://{zoll.host}/mirror/up/library/app:1.0",
                    f"oci:{out}:1.0",
                )
                assert layout_index(out)["manifests"][0]["digest"] == digest
                # The second pull is served from Zoll: the upstream saw nothing new.
                assert len(proxy.requests("GET", r"/v2/library/app/manifests/.*")) == manifest_gets
                assert len(proxy.requests("GET", r"/v2/library/app/blobs/.*")) == len(fetched)

                async with http.get(
                    f"{zoll.url}/api/v1/images/mirror/up/library/app@{digest}/status"
                ) as r:
                    origin = (await r.json())["origin"]
                assert origin["pull_through"] == "mirror/up/"
                assert origin["source"] == f"{proxy.host}/library/app"
                async with http.get(f"{zoll.url}/v2/mirror/up/library/nothing/manifests/1.0") as r:
                    assert r.status == 404
                    assert (await r.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_pull_through_into_an_enforced_namespace_waits_for_admission(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    builder = Builder(tmp_path / "buildah")
    image = builder.build("pt/root", BUSYBOX_BASE)  # runs as root: fails hardening
    layout = builder.push_oci_layout(image, tmp_path / "layout", "1.0")
    async with running_distribution(tmp_path / "upstream") as upstream:
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:1.0",
            f"docker://{upstream.host}/library/root:1.0",
        )
        config = registry_config(
            pg_dsn,
            tmp_path / "data",
            "filesystem",
            None,
            pull_through=[{"prefix": "mirror/up/", "upstream": upstream.host, "insecure": True}],
            namespaces=[{"prefix": "mirror/", "admission": "enforce"}],
        )
        async with live_registry(config) as zoll:
            async with http.get(
                f"{zoll.url}/v2/mirror/up/library/root/manifests/1.0", headers=ACCEPT
            ) as r:
                assert r.status == 403  # fetched, and now in quarantine
                body = await r.json()
            assert body["errors"][0]["code"] == "DENIED"
            assert body["errors"][0]["detail"]["state"] == "quarantined"


async def test_a_moved_upstream_tag_is_followed_and_a_dead_upstream_serves_the_cache(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Past `tag_ttl` a pull asks the upstream (HEAD) where the tag points now: a moved tag
    brings the new image; an upstream that errors leaves the cached image served."""
    builder = Builder(tmp_path / "buildah")
    layouts = {}
    for version in ("one", "two"):
        image = builder.build(f"pt/{version}", BUSYBOX_BASE + f"RUN echo {version} > /v\n")
        layouts[version] = builder.push_oci_layout(image, tmp_path / version, "1.0")
    digests = {v: layout_index(p)["manifests"][0]["digest"] for v, p in layouts.items()}
    async with running_distribution(tmp_path / "upstream") as upstream:

        async def publish(version: str) -> None:
            await skopeo(
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layouts[version]}:1.0",
                f"docker://{upstream.host}/library/app:latest",
            )

        await publish("one")
        async with FaultProxy(upstream.url).serving() as proxy:
            config = pull_through_config(pg_dsn, tmp_path, proxy.host, tag_ttl=0)
            async with live_registry(config) as zoll:
                url = f"{zoll.url}/v2/mirror/up/library/app/manifests/latest"

                assert await pulled(http, url) == digests["one"]
                gets = len(proxy.requests("GET", r"/v2/library/app/.*"))
                assert (
                    await pulled(http, url) == digests["one"]
                )  # asked, unchanged: nothing fetched
                assert len(proxy.requests("GET", r"/v2/library/app/.*")) == gets
                assert len(proxy.requests("HEAD", r"/v2/library/app/manifests/latest")) == 1

                await publish("two")
                assert await pulled(http, url) == digests["two"]  # the tag moved upstream

                proxy.add(Fault("HEAD", r"/v2/library/app/manifests/latest", times=50, status=503))
                proxy.add(Fault("GET", r"/v2/library/app/manifests/latest", times=50, status=503))
                assert await pulled(http, url) == digests["two"]  # the upstream is down: cached

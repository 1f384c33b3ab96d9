"""Real upstreams for the client: docker-registry (anonymous, htpasswd, token auth),
Zoll itself, and images built by buildah and pushed by skopeo."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.oci.client import RegistryClient, RegistryConfig, RetryPolicy
from registry.oci.digest import Digest
from tests.oci_client.faults import FaultProxy
from tests.oci_client.upstream import Distribution, running_distribution
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import LiveRegistry, live_registry, registry_config
from tests.support.tools import layout_index, skopeo

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.5, max_retry_after=10)


@dataclass(frozen=True)
class Images:
    """Images built once per session, as OCI layouts (tag `v1`)."""

    builder: Builder
    app: str
    app_layout: Path
    arm: str
    arm_layout: Path


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    work = tmp_path_factory.mktemp("client-images")
    builder = Builder(work)
    app = builder.build(
        "client-app",
        BUSYBOX_BASE + 'RUN echo "zoll client test" > /etc/zoll-client\n',
        layers=True,
    )
    arm = builder.build("client-app-arm", "FROM scratch\nCOPY rootfs/ /\n", platform="linux/arm64")
    return Images(
        builder,
        app,
        builder.push_oci_layout(app, work / "app", "v1"),
        arm,
        builder.push_oci_layout(arm, work / "arm", "v1"),
    )


def layout_digest(layout: Path) -> Digest:
    return Digest.parse(layout_index(layout)["manifests"][0]["digest"])


async def seed(upstream: str, images: Images, *extra: str) -> None:
    """skopeo pushes the app (OCI and Docker schema 2), buildah pushes a two-platform
    manifest list; `extra` are skopeo destination options such as --dest-creds."""
    dest = ["--dest-tls-verify=false", *extra]
    await skopeo(
        "copy", *dest, f"oci:{images.app_layout}:v1", f"docker://{upstream}/library/app:v1"
    )
    await skopeo(
        "copy",
        *dest,
        "--format",
        "v2s2",
        f"oci:{images.app_layout}:v1",
        f"docker://{upstream}/library/app:docker",
    )


async def seed_index(upstream: str, images: Images, name: str, fmt: str, *extra: str) -> None:
    builder = images.builder
    builder.run("manifest", "create", name)
    builder.run("manifest", "add", name, images.app)
    builder.run("manifest", "add", name, images.arm)
    await builder.arun(
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--format",
        fmt,
        *extra,
        name,
        f"docker://{upstream}/library/multi:{fmt}",
    )


@dataclass(frozen=True)
class Seeded:
    registry: Distribution
    app_digest: Digest


@pytest.fixture(scope="session")
async def anon(tmp_path_factory: pytest.TempPathFactory, images: Images) -> AsyncIterator[Seeded]:
    """An anonymous docker-registry holding library/app (v1 OCI, docker v2s2) and
    library/multi (oci and v2s2 lists)."""
    async with running_distribution(tmp_path_factory.mktemp("anon")) as registry:
        await seed(registry.host, images)
        await seed_index(registry.host, images, "localhost/multi-oci", "oci")
        await seed_index(registry.host, images, "localhost/multi-v2s2", "v2s2")
        yield Seeded(registry, layout_digest(images.app_layout))


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    """A client treating every loopback registry as insecure (plain HTTP)."""
    async with RegistryClient([RegistryConfig("127.0.0.1", insecure=True)], retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    """Zoll itself on the filesystem driver."""
    config = registry_config(pg_dsn, tmp_path / "zoll", "filesystem", None)
    async with live_registry(config) as live:
        yield live


def manifest_json(raw: bytes) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(raw)
    return loaded


@pytest.fixture
async def proxy(anon: Seeded) -> AsyncIterator[FaultProxy]:
    """A fault-injecting proxy in front of the anonymous docker-registry."""
    async with FaultProxy(anon.registry.url).serving() as running:
        yield running

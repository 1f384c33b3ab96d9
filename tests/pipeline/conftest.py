"""Pipeline fixtures: real images, a supplier key, a trust policy, an enforcing Zoll."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attest.keys import PrivateKey
from tests.support.buildah import Builder
from tests.support.servers import LiveRegistry, live_registry, registry_config

SUPPLIER_POLICY = """\
version: 1
policies:
  supplier:
    signers:
      supplier: {key: supplier.pub}
    require:
      signature: {signers: [supplier]}
      attestations:
        - predicate_type: https://cyclonedx.org/bom
          signers: [supplier]
        - predicate_type: https://slsa.dev/provenance/v1
          signers: [supplier]
repositories:
  - match: "opendesk/*"
    policy: supplier
"""

LABELS = {
    "org.opencontainers.image.source": "https://code.example.org/app",
    "org.opencontainers.image.revision": "4f1c2d9",
    "org.opencontainers.image.licenses": "EUPL-1.2",
    "org.opencontainers.image.version": "1.0.0",
    "io.zoll.probe.liveness": "http :8080/healthz",
}


def containerfile(user: str = "10001", marker: str = "") -> str:
    """An image meeting every hardening criterion (with `user` 0 it fails HC-18 only)."""
    labels = " ".join(f'{k}="{v}"' for k, v in LABELS.items())
    return (
        "FROM scratch\nCOPY rootfs/ /\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /etc /tmp /app && chmod 1777 /tmp && "
        "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:10001:10001::/app:/bin/sh\\n' > /etc/passwd"
        f" && echo '{marker}' > /app/marker\n"
        f'LABEL {labels}\nEXPOSE 8080\nUSER {user}\nCMD ["/app/run"]\n'
    )


@dataclass
class Supplier:
    key: PrivateKey
    policy: Path


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    return Builder(tmp_path_factory.mktemp("buildah"))


@pytest.fixture(scope="module")
def supplier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supplier]:
    folder = tmp_path_factory.mktemp("trust")
    key = PrivateKey.generate()
    (folder / "supplier.pub").write_text(key.public.pem())
    (folder / "trust.yaml").write_text(SUPPLIER_POLICY)
    yield Supplier(key, folder / "trust.yaml")


@pytest.fixture
async def enforcing_zoll(
    pg_dsn: str,
    tmp_path: Path,
    supplier: Supplier,
) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        attest={"trust_policy": str(supplier.policy)},
        namespaces=[{"prefix": "opendesk/", "admission": "enforce"}],
    )
    async with live_registry(config) as live:
        yield live

"""Several Zoll nodes in one test: each its own database (one PostgreSQL server), data
folder, port, keys and log origin."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from attest.keys import PrivateKey
from attest.tlog.cosignature import Cosigner
from attest.tlog.entries import admission_record
from attest.tlog.note import NoteVerifier
from registry.federation.identity import WITNESS_KEY_FILE, witness_name
from registry.federation.service import Federation
from tests.support.postgres import fresh_database
from tests.support.servers import LiveRegistry, live_registry, registry_config


def origin_of(name: str) -> str:
    return f"{name}.test/log"


def node_config(dsn: str, data_dir: Path, name: str, **overrides: Any) -> Any:
    federation = {"name": name, "poll_seconds": 0.2, "witness_seconds": 0.2}
    federation.update(overrides.pop("federation", {}))
    attest = {"log_origin": origin_of(name), **overrides.pop("attest", {})}
    return registry_config(
        dsn, data_dir, "filesystem", None, attest=attest, federation=federation, **overrides
    )


def federation_of(node: LiveRegistry) -> Federation:
    assert node.services.federation is not None
    return node.services.federation


@asynccontextmanager
async def nodes(
    admin_dsn: str, tmp_path: Path, *names: str, pipeline: bool = False, **overrides: Any
) -> AsyncIterator[dict[str, LiveRegistry]]:
    async with AsyncExitStack() as stack:
        started = {}
        for name in names:
            dsn = await fresh_database(admin_dsn)
            config = node_config(dsn, tmp_path / name, name, **overrides)
            started[name] = await stack.enter_async_context(
                live_registry(config, pipeline=pipeline)
            )
        yield started


async def pin(http: aiohttp.ClientSession, node: LiveRegistry, *others: LiveRegistry) -> None:
    """Pin `others` in `node` through the API, as an administrator would."""
    for other in others:
        async with http.post(
            f"{node.url}/api/v1/peers", json={"url": other.url, "insecure": True}
        ) as resp:
            assert resp.status == 200, await resp.text()


async def append_decisions(node: LiveRegistry, count: int, tag: str = "") -> None:
    """Log `count` admission decisions (what the pipeline logs per image)."""
    records = [
        admission_record(
            subject_digest="sha256:" + hashlib.sha256(f"{tag}{n}".encode()).hexdigest(),
            repository="demo/app",
            decision="admitted",
            reasons=[],
            decided_at=datetime.now(UTC),
        )
        for n in range(count)
    ]
    await node.services.log.append(records)


@dataclass
class NodeKeys:
    """Keys made before a node starts, so trust policies can name every node."""

    name: str
    attestation: PrivateKey
    witness: PrivateKey

    @property
    def log_key(self) -> str:
        return NoteVerifier.for_key(origin_of(self.name), self.attestation.public).vkey()

    @property
    def witness_key(self) -> str:
        return Cosigner(witness_name(origin_of(self.name)), self.witness.public).vkey()

    def install(self, data_dir: Path) -> Path:
        """Write the keys where the node will find them; return the attestation key file."""
        folder = data_dir / "federation"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / WITNESS_KEY_FILE).write_bytes(self.witness.pem())
        (folder / WITNESS_KEY_FILE).chmod(0o600)
        key_file = data_dir / "attestation-key.pem"
        key_file.write_bytes(self.attestation.pem())
        key_file.chmod(0o600)
        return key_file

    def signer_entry(self) -> dict[str, str]:
        return {
            "key_pem": self.attestation.public.pem(),
            "log_key": self.log_key,
            "witness_key": self.witness_key,
        }


def make_keys(*names: str) -> dict[str, NodeKeys]:
    return {
        n: NodeKeys(n, PrivateKey.generate("ecdsa-p256"), PrivateKey.generate("ed25519"))
        for n in names
    }

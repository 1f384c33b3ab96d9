"""Several Zoll nodes in one test: each its own database (one PostgreSQL server), data
folder, port, keys and log origin."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from attest.tlog.entries import admission_record
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

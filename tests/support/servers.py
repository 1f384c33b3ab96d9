"""Real servers for tests: SeaweedFS S3 and Zoll itself, on free loopback ports."""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from registry.config import Config, load_config
from registry.embedded.seaweedfs import EmbeddedSeaweed
from registry.federation.worker import FederationWorker
from registry.http.app import build_app
from registry.http.connections import GuardedSite
from registry.http.state import Registry
from registry.pipeline.runner import PipelineRunner
from registry.pipeline.services import PipelineServices
from registry.service import close_registry, open_registry

TEST_BUCKET = "zoll-tests"
"""The bucket every S3 test uses, each under a prefix of its own."""


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def settings(self) -> dict[str, Any]:
        """`storage.s3` for one test: the shared bucket, under a prefix of its own."""
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "bucket": TEST_BUCKET,
            "prefix": f"{uuid.uuid4().hex[:12]}/",
            "part_size": 5 * 1024 * 1024,
        }


@contextmanager
def running_seaweedfs() -> Iterator[S3Server]:
    with tempfile.TemporaryDirectory(prefix="zoll-s3-") as folder:
        weed = EmbeddedSeaweed(Path(folder))
        weed.start()
        try:
            yield S3Server(weed.endpoint, weed.access_key, weed.secret_key)
        finally:
            weed.stop()


def registry_config(
    dsn: str, data_dir: Path, driver: str, s3: S3Server | None, **overrides: Any
) -> Config:
    """A config for a test instance; S3 tests share one bucket, each under its own prefix."""
    storage: dict[str, Any] = {"driver": driver}
    if driver == "s3":
        assert s3 is not None
        storage["s3"] = s3.settings()
    base: dict[str, Any] = {
        "data_dir": str(data_dir),
        "database": {"dsn": dsn, "pool_min": 1, "pool_max": 10},
        "storage": storage,
        "log": {"level": "warning", "format": "json"},
        "auth": {"enabled": False},  # tests/auth turn it on (with `auth={...}`)
    }
    return load_config(environ={}, overrides=_merged(base, overrides))


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it, section by section at every depth."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class LiveRegistry:
    url: str
    host: str
    registry: Registry
    services: PipelineServices
    pipeline: PipelineRunner | None = None
    federation: FederationWorker | None = None

    @property
    def config(self) -> Config:
        return self.registry.config


@asynccontextmanager
async def live_registry(
    config: Config,
    *,
    pipeline: bool = False,
    federation_loops: bool | None = None,
    port: int = 0,
) -> AsyncIterator[LiveRegistry]:
    """Zoll serving `config` on a free loopback port until the block ends; with `pipeline`
    its job runner works too (tests that drive jobs themselves leave it off), and so do
    the federation's loops (witnessing, tiles, following) unless `federation_loops` says.
    `port` restarts a node where its peers knew it."""
    if federation_loops is None:
        federation_loops = pipeline
    registry = await open_registry(config)
    services = await PipelineServices.open(registry)
    runner = web.AppRunner(
        build_app(registry, services),
        access_log=None,
        keepalive_timeout=config.http.keepalive_timeout,
    )
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses its port
    sock.bind(("127.0.0.1", port))
    site = GuardedSite(runner, sock, config.http)  # as `zoll serve` does
    await site.start()
    host, port = sock.getsockname()[:2]
    jobs = PipelineRunner(services) if pipeline else None
    if jobs is not None:
        await jobs.start()
    federation = FederationWorker(services) if federation_loops else None
    if federation is not None:
        await federation.start()
    try:
        yield LiveRegistry(
            f"http://{host}:{port}", f"{host}:{port}", registry, services, jobs, federation
        )
    finally:
        if federation is not None:
            await federation.stop()
        if jobs is not None:
            await jobs.stop()
        await runner.cleanup()
        await services.aclose()
        await close_registry(registry)

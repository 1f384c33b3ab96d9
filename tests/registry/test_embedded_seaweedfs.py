"""The embedded SeaweedFS picks free ports; when another process takes one of them
before SeaweedFS binds it, `zoll serve` starts on other ports instead of failing. After
a restart it is ready only once it can read what it stored."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import registry.embedded.seaweedfs as seaweedfs
from registry.embedded.ports import free_port
from registry.embedded.seaweedfs import EmbeddedSeaweed
from registry.storage.s3_client import S3Client
from registry.storage.sigv4 import Credentials


def test_a_port_taken_between_choosing_and_binding_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taker = socket.socket()
    taker.bind(("127.0.0.1", 0))
    taker.listen()
    taken = taker.getsockname()[1]
    # The first start is handed the taken port for its S3 gRPC listener (the race lost).
    picks: Iterator[int] = iter([free_port() for _ in range(7)] + [taken])

    def racing_free_port() -> int:
        return next(picks, None) or free_port()

    monkeypatch.setattr(seaweedfs, "free_port", racing_free_port)
    server = EmbeddedSeaweed(tmp_path / "seaweedfs")
    try:
        endpoint = server.start()
        assert f":{taken}" not in endpoint
        assert b"address already in use" in (tmp_path / "seaweedfs" / "weed.log").read_bytes()
        assert next(picks, None) is None, "the taken port was handed out"
    finally:
        server.stop()
        taker.close()


async def test_objects_stored_before_a_restart_read_at_once_after_it(tmp_path: Path) -> None:
    """The S3 gateway answers before the volume server has re-registered its volumes with
    the master; a pull right after `zoll serve` restarted then got 503 ("volume 5 not
    found", seen in CI under load). The start now waits until every volume is known."""
    server = EmbeddedSeaweed(tmp_path / "seaweedfs")
    server.start()
    try:
        objects = {f"k{n}": os.urandom(1000 + n) for n in range(40)}  # spread over volumes
        async with _client(server) as client:
            await client.create_bucket()
            for key, data in objects.items():
                await client.put_object(key, data)
        assert len(list((tmp_path / "seaweedfs" / "data").glob("*.dat"))) > 1
        server.restart()
        async with _client(server, attempts=1) as client:  # no retry hides a failed read
            for key, data in objects.items():
                assert await client.get_bytes(key) == data
    finally:
        server.stop()


@asynccontextmanager
async def _client(server: EmbeddedSeaweed, attempts: int = 3) -> AsyncIterator[S3Client]:
    client = S3Client(
        server.endpoint,
        "restart",
        "us-east-1",
        Credentials(server.access_key, server.secret_key),
        max_attempts=attempts,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()

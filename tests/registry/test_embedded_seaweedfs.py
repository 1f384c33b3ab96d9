"""The embedded SeaweedFS picks free ports; when another process takes one of them
before SeaweedFS binds it, `zoll serve` starts on other ports instead of failing."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import registry.embedded.seaweedfs as seaweedfs
from registry.embedded.ports import free_port
from registry.embedded.seaweedfs import EmbeddedSeaweed


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

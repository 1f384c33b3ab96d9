"""`zoll serve` where something is in the way: the port of a running Zoll, a port held by
another program, a data folder another `zoll serve` runs from. Each is one clear sentence
before anything starts — no backends left running, no traceback — and the service that
was there first keeps every request."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.served import ZOLL, Served

pytestmark = pytest.mark.slow
NO_AUTH = {"ZOLL_AUTH__ENABLED": "false", "ZOLL_LOG__FORMAT": "json"}


@pytest.fixture(scope="module")
async def first(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Served, Path]]:
    """The Zoll that was there first: two workers sharing their port."""
    data_dir = tmp_path_factory.mktemp("first") / "zoll-data"
    served = await asyncio.to_thread(
        Served, data_dir, "--workers", "2", "--storage", "filesystem", env=NO_AUTH
    )
    try:
        yield served, data_dir
    finally:
        await asyncio.to_thread(served.stop)


def refused_start(data_dir: Path, port: int, *extra: str) -> tuple[int, str]:
    """Run `zoll serve` that must not start; its exit code and everything it printed.
    One that starts anyway is stopped as an operator would (SIGTERM stops its backends)."""
    proc = subprocess.Popen(
        [ZOLL, "serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **NO_AUTH},
    )
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
        raise AssertionError("it started:\n" + output) from None
    return proc.returncode, output


def assert_one_sentence(output: str) -> None:
    assert "Traceback" not in output and "Error:" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output


def nothing_started(data_dir: Path) -> None:
    """No embedded backend was started for the refused service (and none left running)."""
    assert not (data_dir / "postgres").exists(), list(data_dir.iterdir())
    assert not (data_dir / "seaweedfs").exists(), list(data_dir.iterdir())
    assert not (data_dir / "serve.json").exists()


async def test_a_second_zoll_on_the_port_of_a_running_one_is_refused(
    first: tuple[Served, Path], tmp_path: Path
) -> None:
    served, _ = first
    port = int(served.host.rsplit(":", 1)[1])
    second = tmp_path / "second"
    code, output = await asyncio.to_thread(refused_start, second, port, "--workers", "2")
    assert code == 2, output
    assert f"127.0.0.1:{port}" in output and "in use" in output, output
    assert_one_sentence(output)
    nothing_started(second)
    # every connection still reaches the first service
    async with aiohttp.ClientSession() as http:
        for _ in range(12):
            async with http.get(f"http://{served.host}/healthz") as r:
                assert r.status == 200


async def test_a_port_held_by_another_program_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        code, output = await asyncio.to_thread(refused_start, tmp_path / "data", port)
    assert code == 2, output
    assert f"127.0.0.1:{port}" in output and "in use" in output, output
    assert f"process {os.getpid()}" in output, output  # who holds it, when it can be told
    assert_one_sentence(output)
    nothing_started(tmp_path / "data")


async def test_the_same_data_folder_twice_is_one_sentence(
    first: tuple[Served, Path],
) -> None:
    served, data_dir = first
    code, output = await asyncio.to_thread(refused_start, data_dir, 0)
    assert code == 2, output
    assert f"process {served.proc.pid}" in output and served.host in output, output
    assert str(data_dir) in output, output
    assert_one_sentence(output)
    # the first service and its backends are untouched
    async with aiohttp.ClientSession() as http, http.get(f"http://{served.host}/readyz") as r:
        assert r.status == 200, await r.text()

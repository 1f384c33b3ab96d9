"""`zoll serve` as an operator runs it: embedded PostgreSQL and SeaweedFS, several worker
processes, a real push and pull, metrics, and a restart that keeps the data."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.served import ZOLL, Served
from tests.support.tools import layout_index, run, skopeo

pytestmark = pytest.mark.slow
NO_AUTH = {"ZOLL_AUTH__ENABLED": "false"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "zoll-data"


async def test_serve_embedded_multi_worker_push_pull_restart(
    data_dir: Path, tmp_path: Path
) -> None:
    builder = Builder(tmp_path / "buildah")
    image = builder.build("serve-test/app", BUSYBOX_BASE + "RUN echo served > /srv.txt\n")
    layout = builder.push_oci_layout(image, tmp_path / "layout", "1.0")
    digest = layout_index(layout)["manifests"][0]["digest"]

    served = await asyncio.to_thread(Served, data_dir, "--workers", "2", env=NO_AUTH)
    # Started without vulnerability data: HC-12 cannot be checked, and the start says so.
    assert any("no vulnerability data" in line for line in served.output), served.output
    try:
        ref = f"docker://{served.host}/demo/app:1.0"
        await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:1.0", ref)
        async with aiohttp.ClientSession() as http:
            for _ in range(8):  # requests land on both workers
                async with http.get(f"http://{served.host}/v2/demo/app/manifests/1.0") as r:
                    assert r.headers["Docker-Content-Digest"] == digest
            async with http.get(f"http://{served.host}/readyz") as r:
                assert r.status == 200
                ready = await r.json()
                assert ready["checks"] == {
                    "database": "ok",
                    "storage": "ok",
                    "workers": "ok",
                    "embedded postgres": "ok",
                    "embedded seaweedfs": "ok",
                }
                assert ready["vulnerability_data"]["records"] == 0  # and it says so:
                assert any("no vulnerability data" in w for w in ready["warnings"])
            async with http.get(f"http://{served.host}/metrics") as r:
                metrics = await r.text()
        requests = re.findall(
            r'zoll_http_requests_total\{method="GET",route="/v2/\{name\}/manifests/\{reference\}",'
            r'status="200"\} ([\d.]+)',
            metrics,
        )
        assert sum(float(x) for x in requests) >= 8  # aggregated across both workers
        # Operators' tools find the running embedded database and S3 on their own.
        for command in (["gc", "--grace", "0"], ["vulndb", "status"]):
            out = await run(ZOLL, *command, "--data-dir", str(data_dir), "--json")
            assert json.loads(out), command
        raw = await skopeo("inspect", "--raw", "--tls-verify=false", ref)
        assert json.loads(raw)["layers"]  # a tagged image survives a collection
    finally:
        assert await asyncio.to_thread(served.stop) == 0
    leftovers = subprocess.run(
        ["pgrep", "-f", str(data_dir)], capture_output=True, text=True, check=False
    ).stdout
    assert leftovers.strip() == "", "embedded PostgreSQL or SeaweedFS still running"
    assert (data_dir / "seaweedfs" / "s3-credentials.json").stat().st_mode & 0o077 == 0

    served = await asyncio.to_thread(Served, data_dir, env=NO_AUTH)
    try:
        raw = await skopeo(
            "inspect", "--raw", "--tls-verify=false", f"docker://{served.host}/demo/app:1.0"
        )
        assert json.loads(raw)["layers"]
        out = tmp_path / "back"
        await skopeo(
            "copy",
            "--src-tls-verify=false",
            f"docker://{served.host}/demo/app:1.0",
            f"oci:{out}:1.0",
        )
        assert layout_index(out)["manifests"][0]["digest"] == digest
    finally:
        assert await asyncio.to_thread(served.stop) == 0


async def test_serve_refuses_invalid_configuration(tmp_path: Path) -> None:
    config = tmp_path / "zoll.yaml"
    config.write_text("http:\n  port: 99999\nstorage:\n  driver: tape\n")
    proc = await asyncio.create_subprocess_exec(
        ZOLL,
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 2
    text = out.decode()
    assert "http.port" in text and "storage.driver" in text


async def test_serve_filesystem_pulls_whole_ranged_and_survives_dropped_clients(
    data_dir: Path,
) -> None:
    """Blob GETs from the filesystem driver go through the kernel's sendfile under uvloop:
    the bytes, a Range, and a client that hangs up mid-body must all come out right."""
    blob = os.urandom(24 * 1024 * 1024 + 17)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    served = await asyncio.to_thread(Served, data_dir, "--storage", "filesystem", env=NO_AUTH)
    base = f"http://{served.host}/v2/pulls/app/blobs"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.post(f"{base}/uploads/?digest={digest}", data=blob) as r:
                assert r.status == 201, await r.text()
            for _ in range(3):  # a client that reads a little, then hangs up
                reader, writer = await asyncio.open_connection(*served.host.split(":"))
                writer.write(f"GET /v2/pulls/app/blobs/{digest} HTTP/1.1\r\n".encode())
                writer.write(f"Host: {served.host}\r\n\r\n".encode())
                await writer.drain()
                await reader.readexactly(64 * 1024)
                writer.transport.abort()
            async with http.get(f"{base}/{digest}") as r:
                assert r.status == 200 and r.content_length == len(blob)
                assert hashlib.sha256(await r.read()).hexdigest() == digest.split(":")[1]
            async with http.get(f"{base}/{digest}", headers={"Range": "bytes=1000-2000999"}) as r:
                assert r.status == 206
                assert r.headers["Content-Range"] == f"bytes 1000-2000999/{len(blob)}"
                assert await r.read() == blob[1000:2001000]
            async with http.head(f"{base}/{digest}") as r:
                assert r.status == 200 and int(r.headers["Content-Length"]) == len(blob)
    finally:
        assert await asyncio.to_thread(served.stop) == 0


async def test_serve_refuses_an_unusable_trusted_root_or_trust_policy(tmp_path: Path) -> None:
    """Checked before anything starts: a clear message and exit 2, not a traceback from a
    worker that already runs."""
    root = tmp_path / "trusted_root.json"
    root.write_text("not JSON")
    policy = tmp_path / "trust.yaml"
    policy.write_text("require: {}\n")
    for attest, expected in (
        ({"trusted_roots": [str(root)]}, "trusted root trusted_root.json"),
        ({"trust_policy": str(policy)}, "requires nothing"),
    ):
        config = tmp_path / "zoll.yaml"
        config.write_text(json.dumps({"data_dir": str(tmp_path / "data"), "attest": attest}))
        proc = await asyncio.create_subprocess_exec(
            ZOLL,
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode()
        assert proc.returncode == 2, text
        assert expected in text and "attest." in text and "Traceback" not in text, text
        assert not (tmp_path / "data" / "postgres").exists()  # nothing was started

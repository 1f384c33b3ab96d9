"""Kill Zoll in the middle of a mirror run; restart; the run completes with no duplicate
work and no corrupt content."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml

from registry.embedded.postgres import running_dsn
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.served import ZOLL, Served
from tests.support.tools import layout_blob, layout_index, run

pytestmark = pytest.mark.slow
IMAGES = 4


@pytest.fixture(scope="module")
def big_upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Images sharing a base, each with its own 40 MB layer, so a copy takes a while."""
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    layout = tmp_path_factory.mktemp("upstream") / "layout"
    digests = {}
    for i in range(IMAGES):
        image = builder.build(
            f"crash/app-{i}",
            BUSYBOX_BASE + "COPY payload.bin /payload.bin\n",
            files={"payload.bin": os.urandom(40 * 1024 * 1024)},
            layers=True,
        )
        builder.push_oci_layout(image, layout, f"1.0.{i}")
    for m in layout_index(layout)["manifests"]:
        digests[m["annotations"]["org.opencontainers.image.ref.name"]] = m["digest"]
    return layout, digests


async def _jobs(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT state, count(*) AS n FROM jobs WHERE kind = 'mirror-image' GROUP BY 1"
        )
    finally:
        await conn.close()
    return {r["state"]: int(r["n"]) for r in rows}


async def test_killed_mirror_run_resumes_without_refetching(
    big_upstream: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    layout, digests = big_upstream
    data_dir = tmp_path / "zoll-data"
    mirror_set = tmp_path / "mirror.yaml"
    mirror_set.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "crash",
                "mirrors": [
                    {
                        "name": "app",
                        "source": f"oci:{layout}",
                        "target": "crash/app",
                        "tags": sorted(digests),
                    }
                ],
            }
        )
    )
    env = {"ZOLL_PIPELINE__CONCURRENCY": "1", "ZOLL_AUTH__ENABLED": "false"}
    served = await asyncio.to_thread(Served, data_dir, "--storage", "filesystem", env=env)
    dsn = running_dsn(data_dir / "postgres")
    assert dsn is not None
    await run(ZOLL, "mirror", "apply", str(mirror_set), "--data-dir", str(data_dir))
    deadline = time.monotonic() + 120
    while True:  # wait until the run is half-way, then kill the service outright
        states = await _jobs(dsn)
        if states.get("done", 0) >= 1 and states.get("done", 0) < IMAGES:
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.05)
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait()
    assert (await _jobs(dsn)).get("done", 0) < IMAGES  # really interrupted

    served = await asyncio.to_thread(Served, data_dir, "--storage", "filesystem", env=env)
    try:
        deadline = time.monotonic() + 180
        while (states := await _jobs(dsn)).get("done", 0) < IMAGES:
            assert not states.get("failed"), states
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.2)
        unique = {
            d["digest"]
            for manifest_digest in digests.values()
            for manifest in [json.loads(layout_blob(layout, manifest_digest))]
            for d in [manifest["config"], *manifest["layers"]]
        }
        conn = await asyncpg.connect(dsn)
        try:
            fetched = await conn.fetchval("SELECT sum(blobs_fetched) FROM mirror_images")
            # (the pipeline adds its attestations' blobs beside the images')
            stored = await conn.fetchval(
                "SELECT count(*) FROM blobs WHERE digest = ANY($1::text[])", sorted(unique)
            )
        finally:
            await conn.close()
        assert stored == len(unique)  # every blob stored
        assert fetched <= len(unique)  # none fetched twice, before or after the kill
        async with aiohttp.ClientSession() as http:
            for tag, digest in digests.items():
                async with http.get(f"http://{served.host}/v2/crash/app/manifests/{tag}") as r:
                    assert r.headers["Docker-Content-Digest"] == digest
            for blob in unique:
                async with http.get(f"http://{served.host}/v2/crash/app/blobs/{blob}") as r:
                    body = await r.read()
                assert "sha256:" + hashlib.sha256(body).hexdigest() == blob
    finally:
        assert await asyncio.to_thread(served.stop) == 0
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""

"""A `zoll serve` killed with -9 leaves its embedded PostgreSQL (daemonised by pg_ctl) and
SeaweedFS (its own session) running; its workers die with it. The next start adopts the
PostgreSQL and replaces the SeaweedFS (two servers on one folder would corrupt it), serves
everything acknowledged before the crash, and leaves nothing behind when it stops."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from registry.embedded.postgres import postmaster_pid, running_dsn
from registry.processes import alive
from tests.faults.conftest import audit_verifies, get_as_client, readyz_within
from tests.support.served import Served

pytestmark = pytest.mark.slow
NO_AUTH = {"ZOLL_AUTH__ENABLED": "false"}


def _leftovers(data_dir: Path) -> str:
    return subprocess.run(
        ["pgrep", "-af", str(data_dir)], capture_output=True, text=True, check=False
    ).stdout.strip()


async def test_the_next_start_takes_over_what_a_crashed_run_left(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "data"
    served = await asyncio.to_thread(Served, data_dir, env=NO_AUTH)
    blob = os.urandom(123_456)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    try:
        async with http.post(
            f"http://{served.host}/v2/crash/app/blobs/uploads/",
            params={"digest": digest},
            data=blob,
        ) as r:
            assert r.status == 201
        children = psutil.Process(served.proc.pid).children()
        workers = [p.pid for p in children if "weed" not in " ".join(p.cmdline())]
        weed = [p.pid for p in children if "weed" in " ".join(p.cmdline())]
        postgres = postmaster_pid(data_dir / "postgres")
        served.proc.send_signal(signal.SIGKILL)
        served.proc.wait()

        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in workers), "workers die with their supervisor"
        assert postgres is not None and alive(postgres), "the orphan the issue saw"
        assert weed and alive(weed[0])
    except BaseException:
        served.proc.kill()
        raise

    again = await asyncio.to_thread(Served, data_dir, env=NO_AUTH)
    try:
        assert not alive(weed[0]), "the orphaned SeaweedFS was stopped"
        await readyz_within(http, f"http://{again.host}", ready=True, seconds=30)
        assert await get_as_client(http, f"http://{again.host}/v2/crash/app/blobs/{digest}") == blob
        dsn = running_dsn(data_dir / "postgres")
        assert dsn is not None
        await audit_verifies(dsn)
    finally:
        assert await asyncio.to_thread(again.stop) == 0
    assert not alive(postgres), "the adopted PostgreSQL stops with the run that adopted it"
    assert _leftovers(data_dir) == ""

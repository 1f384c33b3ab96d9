"""Replicas sharing one data folder, as the Helm chart runs them (one ReadWriteMany
volume holds the signing keys for all), each `zoll serve` being process 1 of its own
container (PID and UTS namespaces: its own process numbers and host name), as the
image's `ENTRYPOINT ["zoll", "serve"]` starts it: both start with several workers, and a
worker killed in one replica makes that replica unready for a moment, never the other."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.faults.conftest import readyz_within
from tests.support.postgres import fresh_database
from tests.support.served import Served
from tests.support.servers import S3Server

pytestmark = pytest.mark.slow
SET_HOSTNAME = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
)


def _container(hostname: str) -> tuple[str, ...]:
    """What a container runtime does before it starts the image's entrypoint."""
    return (
        *("unshare", "--pid", "--fork", "--mount-proc", "--uts", "--kill-child=SIGTERM"),
        *(sys.executable, "-c", SET_HOSTNAME, hostname),
    )


def _supervisor(replica: Served) -> psutil.Process:
    """`zoll serve` itself: the child of `unshare`."""
    [child] = psutil.Process(replica.proc.pid).children()
    return child


def _inner_pid(process: psutil.Process) -> int:
    """Its process number inside its own PID namespace."""
    status = Path(f"/proc/{process.pid}/status").read_text()
    [line] = [x for x in status.splitlines() if x.startswith("NSpid:")]
    return int(line.split()[-1])


def _stop(replica: Served) -> None:
    if replica.proc.poll() is None:
        _supervisor(replica).send_signal(signal.SIGTERM)
    replica.proc.wait(timeout=60)


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas") / "data"


@pytest.fixture
def replicas(
    pg_admin_dsn: str, s3_server: S3Server, shared: Path
) -> Iterator[tuple[Served, Served]]:
    dsn = asyncio.run(fresh_database(pg_admin_dsn))
    env = {
        "ZOLL_DATABASE__DSN": dsn,
        "ZOLL_DATABASE__POOL_MIN": "1",
        "ZOLL_DATABASE__POOL_MAX": "4",
        "ZOLL_STORAGE__DRIVER": "s3",
        "ZOLL_STORAGE__S3__ENDPOINT": s3_server.endpoint,
        "ZOLL_STORAGE__S3__ACCESS_KEY": s3_server.access_key,
        "ZOLL_STORAGE__S3__SECRET_KEY": s3_server.secret_key,
        "ZOLL_STORAGE__S3__BUCKET": "zoll-tests",
        "ZOLL_STORAGE__S3__PREFIX": f"{uuid.uuid4().hex[:12]}/",
        "ZOLL_AUTH__ENABLED": "false",
        "ZOLL_PIPELINE__ENABLED": "false",
        "ZOLL_GC__ENABLED": "false",
    }
    first = Served(shared, "--workers", "2", env=env, wrap=_container("replica-a"))
    try:
        second = Served(shared, "--workers", "2", env=env, wrap=_container("replica-b"))
    except BaseException:
        _stop(first)
        raise
    try:
        yield first, second
    finally:
        _stop(first)
        _stop(second)


async def test_a_worker_lost_in_one_replica_leaves_the_other_ready(
    replicas: tuple[Served, Served], shared: Path
) -> None:
    first, second = replicas
    assert [_inner_pid(_supervisor(r)) for r in replicas] == [1, 1]
    async with aiohttp.ClientSession() as http:
        for replica in replicas:
            await readyz_within(http, f"http://{replica.host}", ready=True, seconds=30)
        assert len(_supervisor(first).children()) == 2, "both workers of process 1 run"
        worker = _supervisor(first).children()[0]
        os.kill(worker.pid, signal.SIGKILL)
        _, body = await readyz_within(http, f"http://{first.host}", ready=False, seconds=10)
        assert "running, restarting" in str(body["checks"])
        for _ in range(10):  # while the first replica replaces its worker
            async with http.get(f"http://{second.host}/readyz") as r:
                assert r.status == 200, await r.text()
            await asyncio.sleep(0.1)
        await readyz_within(http, f"http://{first.host}", ready=True, seconds=30)

    _stop(first)  # a replica that stops takes its status with it, and only its own
    assert sorted(p.name for p in shared.glob("supervisor*.json")) == [
        "supervisor-replica-b-1.json"
    ]

"""Real backends that the fault tests stop, pause, kill and restart: each module gets
its own SeaweedFS (never the session's shared one, which other tests rely on)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import boto3
import pytest

from registry.embedded.seaweedfs import EmbeddedSeaweed
from tests.support.served import ZOLL
from tests.support.servers import TEST_BUCKET, S3Server


class FaultySeaweed:
    """A SeaweedFS whose process the test controls; restarts keep its ports."""

    def __init__(self, folder: Path) -> None:
        self.weed = EmbeddedSeaweed(folder)

    @property
    def server(self) -> S3Server:
        return S3Server(self.weed.endpoint, self.weed.access_key, self.weed.secret_key)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.weed.pid is not None, "SeaweedFS is not running"
        os.killpg(self.weed.pid, sig)

    def pause(self) -> None:
        """SIGSTOP: the store stalls — connections open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: connections are refused until `restart`."""
        self._signal(signal.SIGKILL)
        self.weed.stop()

    def restart(self) -> None:
        self.weed.stop()
        self.weed.start()

    def warm(self) -> None:
        """Take a first write into the tests' bucket: SeaweedFS grows the bucket's volumes
        then, which takes seconds on a busy machine — longer than the stall tests' 3 s
        deadlines, which must measure stalls, not that."""
        client = boto3.client(
            "s3",
            endpoint_url=self.weed.endpoint,
            aws_access_key_id=self.weed.access_key,
            aws_secret_access_key=self.weed.secret_key,
            region_name="us-east-1",
        )
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=TEST_BUCKET)
        client.put_object(Bucket=TEST_BUCKET, Key="warm", Body=b"warm")
        client.delete_object(Bucket=TEST_BUCKET, Key="warm")

    def ensure_running(self) -> None:
        """Undo whatever the last test did to the store."""
        if self.weed.pid is not None:
            try:
                os.killpg(self.weed.pid, signal.SIGCONT)
            except ProcessLookupError:
                self.weed.stop()
        if self.weed.pid is None:
            self.weed.start()


@pytest.fixture(scope="module")
def faulty_s3() -> Iterator[FaultySeaweed]:
    with tempfile.TemporaryDirectory(prefix="zoll-faulty-s3-") as folder:
        store = FaultySeaweed(Path(folder))
        store.weed.start()
        store.warm()
        try:
            yield store
        finally:
            store.ensure_running()
            store.weed.stop()


@pytest.fixture
def s3_fault(faulty_s3: FaultySeaweed) -> Iterator[FaultySeaweed]:
    """The module's store, running at the start of each test and afterwards."""
    faulty_s3.ensure_running()
    yield faulty_s3
    faulty_s3.ensure_running()


async def audit_verifies(dsn: str) -> None:
    """`zoll audit verify` as an auditor runs it: the hash chain is intact."""
    proc = await asyncio.create_subprocess_exec(
        ZOLL,
        "audit",
        "verify",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "ZOLL_DATABASE__DSN": dsn},
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    report = json.loads(out)
    assert report["ok"], report


async def readyz_within(
    http: aiohttp.ClientSession, url: str, *, ready: bool, seconds: float
) -> tuple[float, dict[str, object]]:
    """Poll `url`/readyz until it says `ready` (or not); return how long that took and
    the last answer. Fails if it does not within `seconds`."""
    started = time.monotonic()
    body: dict[str, object] = {}
    while time.monotonic() - started < seconds:
        try:
            async with asyncio.timeout(seconds), http.get(f"{url}/readyz") as r:
                body = await r.json()
                if (r.status == 200) == ready:
                    return time.monotonic() - started, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            body = {"error": repr(exc)}
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz did not say ready={ready} within {seconds} s: {body}")


async def get_as_client(http: aiohttp.ClientSession, url: str, seconds: float = 20) -> bytes:
    """GET as registry clients do: a 503 is tried again after its Retry-After (capped at
    2 s) until `seconds` have passed. A SeaweedFS that just (re)started answers the
    readiness probe a moment before every volume serves reads."""
    deadline = time.monotonic() + seconds
    while True:
        async with http.get(url) as r:
            if r.status == 503 and time.monotonic() < deadline:
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 2))
                continue
            assert r.status == 200, await r.text()
            return await r.read()

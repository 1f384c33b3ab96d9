"""Retries through a proxy that injects 429/503, resets and dropped connections in
front of a real docker-registry."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from registry.oci.client import RegistryClient, UnavailableError
from registry.oci.digest import Digest
from tests.oci_client.conftest import Seeded
from tests.oci_client.faults import Fault, FaultProxy

BLOB_PATH = r"/v2/library/big/blobs/sha256:[0-9a-f]{64}"
MANIFEST_V1 = "/v2/library/app/manifests/v1"


@pytest.fixture(scope="module")
def big() -> bytes:
    return os.urandom(8 * 1024 * 1024 + 123)


async def _seed_big(anon: Seeded, client: RegistryClient, big: bytes) -> Digest:
    digest = Digest.of(big)
    await client.repository(anon.registry.host, "library/big").push_blob(big, digest, len(big))
    return digest


async def test_429_waits_at_least_retry_after(proxy: FaultProxy, client: RegistryClient) -> None:
    proxy.add(Fault("GET", MANIFEST_V1, status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    fetched = await client.repository(proxy.host, "library/app").get_manifest("v1")
    elapsed = time.monotonic() - started
    gets = proxy.requests("GET", MANIFEST_V1)
    assert [g.status for g in gets] == [429, 200]
    assert gets[1].at - gets[0].at >= 1.0 and elapsed >= 1.0
    assert fetched.digest == Digest.of(fetched.raw)


async def test_retry_after_as_http_date(proxy: FaultProxy, client: RegistryClient) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    proxy.add(Fault("GET", MANIFEST_V1, status=503, headers={"Retry-After": when}))
    await client.repository(proxy.host, "library/app").resolve("v1")  # HEAD, not faulted
    await client.repository(proxy.host, "library/app").get_manifest("v1")
    gets = proxy.requests("GET", MANIFEST_V1)
    assert [g.status for g in gets] == [503, 200]
    assert gets[1].at - gets[0].at >= 1.0  # the date has whole seconds: at least 1 s left


async def test_503_backs_off_then_gives_up(proxy: FaultProxy, client: RegistryClient) -> None:
    proxy.add(Fault("GET", MANIFEST_V1, status=503, times=2))
    await client.repository(proxy.host, "library/app").get_manifest("v1")
    gets = proxy.requests("GET", MANIFEST_V1)
    assert [g.status for g in gets] == [503, 503, 200]
    first, second = gets[1].at - gets[0].at, gets[2].at - gets[1].at
    assert first >= 0.025 and second >= 0.05  # equal jitter: at least half the backoff

    proxy.add(Fault("GET", MANIFEST_V1, status=503, times=10))
    with pytest.raises(UnavailableError) as exhausted:
        await client.repository(proxy.host, "library/app").get_manifest("v1")
    assert exhausted.value.attempts == 4 and exhausted.value.status == 503
    assert len(proxy.requests("GET", MANIFEST_V1)) == 3 + 4


async def test_retry_after_beyond_the_limit_fails_at_once(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    proxy.add(Fault("GET", MANIFEST_V1, status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="asked to wait 3600 s"):
        await client.repository(proxy.host, "library/app").get_manifest("v1")
    assert time.monotonic() - started < 1
    assert len(proxy.requests("GET", MANIFEST_V1)) == 1


async def test_reset_connections_are_retried(proxy: FaultProxy, client: RegistryClient) -> None:
    proxy.add(Fault("GET", MANIFEST_V1, reset=True, times=2))
    fetched = await client.repository(proxy.host, "library/app").get_manifest("v1")
    assert len(proxy.requests("GET", MANIFEST_V1)) == 3
    assert fetched.digest == Digest.of(fetched.raw)


async def test_dropped_blob_download_resumes_with_range(
    anon: Seeded, proxy: FaultProxy, client: RegistryClient, big: bytes
) -> None:
    digest = await _seed_big(anon, client, big)
    third = 3 * 1024 * 1024
    proxy.add(Fault("GET", BLOB_PATH, drop_after=third, times=2))
    got = bytearray()
    async for chunk in client.repository(proxy.host, "library/big").open_blob(digest):
        got += chunk
    assert bytes(got) == big
    ranges = [g.range for g in proxy.requests("GET", BLOB_PATH)]
    assert ranges == [None, f"bytes={third}-", f"bytes={2 * third}-"]


async def test_lost_upload_answer_is_checked_not_resent(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    """The registry stored the blob but the answer to the final PUT was lost: the client
    asks (HEAD) instead of sending the PUT again."""
    data = os.urandom(100_000)
    digest = Digest.of(data)
    uploads = r"/v2/library/up/blobs/uploads/.*"
    proxy.add(Fault("PUT", uploads, lose_response=True))
    pushed = await client.repository(proxy.host, "library/up").push_blob(data, digest, len(data))
    assert pushed.how == "uploaded"
    assert len(proxy.requests("PUT", uploads)) == 1
    assert [h.status for h in proxy.requests("HEAD", rf"/v2/library/up/blobs/{digest}")] == [
        404,
        200,
    ]


async def test_chunked_upload_resumes_from_the_registry_offset(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    """A PATCH reset before it reached the registry: the client asks the upload's status
    (`Range: 0-<last>`) and resends only that chunk."""
    data = os.urandom(5 * 256 * 1024 + 17)  # 6 chunks of 256 KiB
    digest = Digest.of(data)
    uploads = r"/v2/library/chunks/blobs/uploads/.*"
    proxy.add(Fault("PATCH", uploads, skip=2, reset=True))
    repo = client.repository(proxy.host, "library/chunks")
    pushed = await repo.push_blob(data, digest, len(data), chunk_size=256 * 1024)
    assert pushed.how == "uploaded"
    assert await repo.read_blob(digest, len(data)) == data
    statuses = [s.status for s in proxy.requests("PATCH", uploads)]
    assert statuses == [202, 202, None, 202, 202, 202, 202]
    assert [s.status for s in proxy.requests("GET", uploads)] == [204]
    assert len(proxy.requests("POST", uploads)) == 1


async def test_lost_patch_answer_restarts_the_upload_on_distribution(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    """distribution's upload URL carries a signed offset (`_state`); once a PATCH answer
    is lost, the old URL is refused. The client then starts a fresh session instead of
    resending into the old one."""
    data = os.urandom(3 * 256 * 1024)
    digest = Digest.of(data)
    uploads = r"/v2/library/lost/blobs/uploads/.*"
    proxy.add(Fault("PATCH", uploads, skip=1, lose_response=True))
    repo = client.repository(proxy.host, "library/lost")
    pushed = await repo.push_blob(data, digest, len(data), chunk_size=256 * 1024)
    assert pushed.how == "uploaded"
    assert await repo.read_blob(digest, len(data)) == data
    sessions = [p.path for p in proxy.requests("PATCH", uploads)]
    assert len(sessions) == 2 + 3 and len(set(sessions)) == 2
    assert sessions[2] != sessions[1]  # the third PATCH went to a new session
    assert len(proxy.requests("POST", r"/v2/library/lost/blobs/uploads/")) == 2


async def test_resolve_falls_back_to_get_when_head_is_refused(
    proxy: FaultProxy, client: RegistryClient
) -> None:
    proxy.add(Fault("HEAD", MANIFEST_V1, status=405))
    desc = await client.repository(proxy.host, "library/app").resolve("v1")
    assert [s.status for s in proxy.requests("HEAD", MANIFEST_V1)] == [405]
    fetched = proxy.requests("GET", MANIFEST_V1)
    assert [s.status for s in fetched] == [200]
    assert desc.digest == (await client.repository(proxy.host, "library/app").resolve("v1")).digest

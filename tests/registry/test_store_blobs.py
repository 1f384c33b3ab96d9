"""Content the service makes itself (attestation layers, configs) is stored in batches:
what is stored already is linked, the rest published, all of it readable and audited."""

from __future__ import annotations

import os

import aiohttp
import pytest

from registry.audit import EventFilter, events
from registry.content import store_blobs
from registry.oci.digest import Digest
from registry.oci.errors import ErrorCode, RegistryError
from tests.support.oci import push_blob, sha256
from tests.support.servers import LiveRegistry


async def test_a_batch_links_what_exists_and_publishes_the_rest(
    zoll: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    elsewhere = b'{"stored":"in another repository"}'
    await push_blob(http, zoll.url, "other", elsewhere)
    fresh = [b"envelope one", b"envelope two"]

    digests = await store_blobs(zoll.registry, "attached", [elsewhere, *fresh, fresh[0]])

    assert [str(d) for d in digests] == [sha256(b) for b in (elsewhere, *fresh, fresh[0])]
    for data in (elsewhere, *fresh):
        async with http.get(f"{zoll.url}/v2/attached/blobs/{sha256(data)}") as r:
            assert r.status == 200
            assert await r.read() == data
    pool = zoll.registry.pool
    assert await pool.fetchval("SELECT count(*) FROM upload_sessions") == 0
    found = await events(pool, EventFilter(repository="attached"), None, 50)
    actions = sorted((e.action, e.target) for e in found)
    assert actions == sorted(
        [("blob.link", sha256(elsewhere))] + [("blob.upload", sha256(b)) for b in fresh]
    )
    # The same batch again only links: nothing is written twice.
    keys = {o.key async for o in zoll.registry.driver.list_blobs()}
    again = await store_blobs(zoll.registry, "attached", fresh)
    assert again == [Digest.of(b) for b in fresh]
    assert {o.key async for o in zoll.registry.driver.list_blobs()} == keys
    assert not [u async for u, _ in zoll.registry.driver.list_uploads()]


@pytest.mark.parametrize("driver", ["filesystem"])  # the failure is injected into its writes
async def test_a_batch_the_storage_refuses_leaves_nothing_behind(
    zoll: LiveRegistry, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails part-way (a full disk, an I/O error on fsync) fails the batch
    with "unavailable"; no blob of it is recorded, readable or left half-written."""
    fresh = [b"layer one", b"layer two"]

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(RegistryError) as failed:
        await store_blobs(zoll.registry, "attached", fresh)
    monkeypatch.undo()

    assert failed.value.code is ErrorCode.UNAVAILABLE
    assert await zoll.registry.pool.fetchval("SELECT count(*) FROM blobs") == 0
    assert not [o async for o in zoll.registry.driver.list_blobs()]
    assert not [u async for u, _ in zoll.registry.driver.list_uploads()]
    for data in fresh:
        async with http.get(f"{zoll.url}/v2/attached/blobs/{sha256(data)}") as r:
            assert r.status == 404
    assert await store_blobs(zoll.registry, "attached", fresh) == [Digest.of(b) for b in fresh]

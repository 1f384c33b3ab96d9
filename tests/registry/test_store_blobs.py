"""Content the service makes itself (attestation layers, configs) is stored in batches:
what is stored already is linked, the rest published, all of it readable and audited."""

from __future__ import annotations

import aiohttp

from registry.audit import EventFilter, events
from registry.content import store_blobs
from registry.oci.digest import Digest
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

"""Publish this node's log as C2SP tlog-tiles in its object store, and serve them.

After each witness round the publisher writes every tile that changed since the last
publication (hash tiles from the stored subtrees, entry bundles from the leaves), then the
checkpoint with its cosignatures. Tiles are immutable: a full tile is written once, a
partial one under its width, and superseded partial tiles are deleted once the full one
exists. `/tlog/…` serves them from the store with long cache lifetimes, so a CDN (or an
auditor's cache) can carry the load; nothing there reads the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from attest.tlog.checkpoint import SignedCheckpoint
from attest.tlog.tiles import (
    TILE_WIDTH,
    Tile,
    TileError,
    encode_bundle,
    parse_tile_path,
    partial_tiles,
    tiles_between,
)
from registry.http.access import PUBLIC, requires
from registry.http.state import registry_of
from registry.logs import get_logger
from registry.storage.base import BlobDriver, BlobMissing

if TYPE_CHECKING:  # the federation's services wire `publish` into their cosigning
    from registry.federation.service import Federation

log = get_logger("zoll.federation")
PREFIX: Final = "tlog/"
"""Where the tiles live in the object store (and under which URL path they are served)."""
IMMUTABLE: Final = "public, max-age=31536000, immutable"


async def _tile_bytes(federation: Federation, log_id: int, tile: Tile) -> bytes:
    pool = federation.pool
    first, last = tile.first, tile.first + tile.width
    if tile.level < 0:
        rows = await pool.fetch(
            "SELECT body FROM tlog_leaves WHERE log_id = $1 AND idx >= $2 AND idx < $3 "
            "ORDER BY idx",
            log_id,
            first,
            last,
        )
        data = [bytes(r["body"]) for r in rows]
        assert len(data) == tile.width, f"leaves missing for {tile.path()}"
        return encode_bundle(data)
    if tile.level == 0:
        rows = await pool.fetch(
            "SELECT leaf_hash AS h FROM tlog_leaves WHERE log_id = $1 AND idx >= $2 "
            "AND idx < $3 ORDER BY idx",
            log_id,
            first,
            last,
        )
    else:
        rows = await pool.fetch(
            "SELECT hash AS h FROM tlog_nodes WHERE log_id = $1 AND level = $2 AND idx >= $3 "
            "AND idx < $4 ORDER BY idx",
            log_id,
            tile.tree_level,
            first,
            last,
        )
    hashes = [bytes(r["h"]) for r in rows]
    assert len(hashes) == tile.width, f"hashes missing for {tile.path()}"
    return b"".join(hashes)


CATCH_UP = TILE_WIDTH * TILE_WIDTH
"""Leaves one publishing transaction covers at most (65,536: two full tile levels). A
first publication of a large log, or one far behind, goes in steps, so no publisher
holds the log's lock for the whole backfill (the pipeline publishes before asking
witnesses and would wait meanwhile) and a crash loses one step, not all of it."""


def _next_stop(published: int, size: int) -> int:
    """Where the step after `published` ends: `size`, or the next multiple of CATCH_UP."""
    return min(size, (published // CATCH_UP + 1) * CATCH_UP)


async def publish(federation: Federation, driver: BlobDriver, signed: SignedCheckpoint) -> int:
    """Write the tiles up to `signed`'s size and then the checkpoint; return how many tiles
    were written. Idempotent: a crash halfway writes the last step's tiles again next time.
    Publishers take turns (a transaction lock per log, per step), so a smaller checkpoint
    never overwrites a larger one that another process published meanwhile."""
    log_id = await federation.log.log_id()
    size = signed.checkpoint.size
    written = 0
    passed: list[int] = []  # sizes published before, whose partial tiles are superseded
    while True:
        async with federation.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tlog-tiles'), $1)", log_id)
            published = (
                await conn.fetchval("SELECT size FROM tlog_tiles WHERE log_id = $1", log_id) or 0
            )
            if published > size:
                break  # another worker published further already
            stop = _next_stop(published, size)
            tiles = tiles_between(published, stop)
            for tile in tiles:
                await driver.put_object(
                    PREFIX + tile.path(), await _tile_bytes(federation, log_id, tile)
                )
            if stop == size:  # only a whole publication has a checkpoint to read it by
                await driver.put_object(PREFIX + "checkpoint", signed.to_text().encode())
            await conn.execute(
                """INSERT INTO tlog_tiles (log_id, size) VALUES ($1, $2)
                   ON CONFLICT (log_id) DO UPDATE SET size = $2, updated_at = now()""",
                log_id,
                stop,
            )
        passed.append(published)
        written += len(tiles)
        if stop == size:
            break
    kept = partial_tiles(size)
    for old in {tile for before in passed for tile in partial_tiles(before)}:
        # Superseded by a wider tile. A reader of the older checkpoint gets 404 for it and
        # reads the newer checkpoint instead (tlog-tiles clients must handle that).
        if old not in kept:
            await driver.delete(PREFIX + old.path())
    if written:
        log.info("log tiles published", size=size, tiles=written)
    return written


@requires(PUBLIC)
async def serve(request: web.Request) -> web.StreamResponse:
    """`GET /tlog/checkpoint` and `GET /tlog/tile/…` from the object store."""
    path = request.match_info["path"]
    if path == "checkpoint":
        content_type, cache = "text/plain; charset=utf-8", "no-cache"
    else:
        try:
            parse_tile_path(path)
        except TileError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        content_type, cache = "application/octet-stream", IMMUTABLE
    driver = registry_of(request).driver
    key = PREFIX + path
    size = await driver.stat(key)
    if size is None:
        raise web.HTTPNotFound(text=f"{path} is not published (yet)\n")
    response = web.StreamResponse(
        headers={"Content-Type": content_type, "Cache-Control": cache, "Content-Length": str(size)}
    )
    await response.prepare(request)
    try:
        async for chunk in driver.read(key):
            await response.write(chunk)
        await response.write_eof()
    except BlobMissing:
        pass  # replaced while being read: the client sees a short body and retries
    except ConnectionResetError:
        pass  # the client went away
    return response


def install(app: web.Application) -> None:
    app.router.add_get("/tlog/{path:(checkpoint|tile/.+)}", serve)

"""Blob reads and deletes: `/v2/<name>/blobs/<digest>`."""

from __future__ import annotations

from aiohttp import web

from registry.db import blobs as blob_rows
from registry.http import splice
from registry.http.access import repository, requires
from registry.http.sendfile import SendfileResponse
from registry.http.state import registry_of
from registry.http.v2.common import byte_range, head_response, parse_digest, repo_name
from registry.logs import get_logger
from registry.oci.errors import ErrorCode, RegistryError
from registry.storage.base import StorageError

log = get_logger("zoll.http")


def _touch_after(request: web.Request) -> float:
    return min(3600.0, registry_of(request).config.gc.grace_period / 2)


def _headers(digest: str) -> dict[str, str]:
    return {
        "Docker-Content-Digest": digest,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000",
    }


@requires(repository("pull"))
async def head_blob(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name, digest = repo_name(request), parse_digest(request.match_info["digest"])
    info = await blob_rows.in_repository(reg.pool, name, digest, _touch_after(request))
    if info is None:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    return await head_response(request, _headers(str(digest)), info.size)


@requires(repository("pull"))
async def get_blob(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name, digest = repo_name(request), parse_digest(request.match_info["digest"])
    info = await blob_rows.in_repository(reg.pool, name, digest, _touch_after(request))
    if info is None:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    headers = _headers(str(digest))
    wanted = byte_range(request, info.size)
    s3 = reg.config.storage.s3
    if (
        wanted is None
        and reg.driver.name == "s3"
        and s3.redirect
        and info.size >= s3.redirect_min_size
    ):
        url = await reg.driver.presign(info.storage_key)
        if url:
            raise web.HTTPTemporaryRedirect(url, headers={"Docker-Content-Digest": str(digest)})
    path = reg.driver.local_path(info.storage_key)
    if path is not None:
        # FileResponse does Range and If-None-Match/If-Range; the subclass does sendfile.
        return SendfileResponse(
            path,
            client_idle=reg.config.http.idle_timeout,
            headers=headers,
            chunk_size=1 << 20,
        )
    start, end = wanted if wanted is not None else (0, info.size - 1)
    resp = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    resp.content_length = max(end - start + 1, 0)
    if wanted:
        resp.headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    if not info.size:
        await resp.prepare(request)
        await resp.write_eof()
        return resp
    count = end - start + 1
    if count >= splice.MIN_SIZE and splice.usable(request):
        # The store's answer before the headers: one that does not answer is a 503.
        body = await reg.driver.socket_body(info.storage_key, start, count)
        if body is not None:
            return await splice.send(
                request,
                resp,
                body,
                count,
                reg.config.storage.idle_timeout,
                reg.config.http.idle_timeout,
            )
    chunks = reg.driver.read(info.storage_key, start, count)
    sent = 0
    try:
        # The first bytes before the headers: a store that does not answer is a 503.
        first = await anext(chunks)
        await resp.prepare(request)
        await resp.write(first)
        sent += len(first)
        async for chunk in chunks:
            await resp.write(chunk)
            sent += len(chunk)
        if sent != count:
            raise StorageError(f"the stored object ended after {sent} of {count} bytes")
    except Exception as exc:
        if not resp.prepared:
            raise
        # Headers are out: cut the connection, so the client sees a short body (and
        # retries) instead of a hang or a body that looks complete.
        log.error("blob read failed mid-body", digest=str(digest), error=repr(exc))
        if request.transport is not None:
            request.transport.abort()
        return resp
    finally:
        await chunks.aclose()
    await resp.write_eof()
    return resp


@requires(repository("delete"))
async def delete_blob(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    if not reg.config.delete_enabled:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled", status=405)
    name, digest = repo_name(request), parse_digest(request.match_info["digest"])
    if not await blob_rows.unlink(reg.pool, name, digest):
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": str(digest)})
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})

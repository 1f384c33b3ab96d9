"""Blob uploads: `/v2/<name>/blobs/uploads/` (POST) and `/v2/<name>/blobs/uploads/<id>`.

Supported flows: monolithic POST with ?digest=, POST then PUT, POST then PATCH… then PUT
(chunked with Content-Range, or streamed without), resumable status via GET, cancel via
DELETE, and cross-repository mount (?mount=&from=).
"""

from __future__ import annotations

from aiohttp import StreamReader, web

from registry.db import blobs as blob_rows
from registry.http.access import Access, repository, requires
from registry.http.state import registry_of
from registry.http.v2.common import (
    blob_location,
    content_range,
    parse_digest,
    repo_name,
    upload_location,
)
from registry.metrics import BLOB_BYTES_RECEIVED, BLOBS_PUBLISHED, DIGEST_MISMATCHES
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.names import is_valid_name


def _start_needs(request: web.Request) -> list[Access]:
    """Attest (pushers may, and attesters push their signatures' blobs) on the target; a
    cross-repository mount also needs pull on the source."""
    needs = [Access("repository", request.match_info["name"], "attest")]
    source = request.query.get("from")
    if "mount" in request.query and source:
        needs.append(Access("repository", source, "pull"))
    return needs


def _created(name: str, info: blob_rows.BlobInfo) -> web.Response:
    BLOBS_PUBLISHED.inc()
    return web.Response(
        status=201,
        headers={
            "Location": blob_location(name, info.digest),
            "Docker-Content-Digest": str(info.digest),
        },
    )


def _progress(name: str, upload_id: str, size: int, status: int) -> web.Response:
    return web.Response(
        status=status,
        headers={
            "Location": upload_location(name, upload_id),
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        },
    )


class RequestBody:
    """The request body as the chunks the server received: aiohttp's `readany()` joins
    everything buffered into one new bytes object (a big allocation and a copy per
    call), `readchunk()` hands the chunks over as they are."""

    def __init__(self, stream: StreamReader, declared: int | None = None) -> None:
        self._stream = stream
        self.declared = declared
        """Content-Length, when the client sent one: a blob the store cannot hold is
        refused before its body is read."""

    async def readany(self) -> bytes:
        while True:
            data, end_of_http_chunk = await self._stream.readchunk()
            if data or not end_of_http_chunk:
                return data  # b"" with no chunk boundary: the body has ended


def _has_body(request: web.Request) -> bool:
    return request.content_length not in (None, 0) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )


@requires(_start_needs)
async def start_upload(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount is not None:
        digest = parse_digest(mount, what="mount")
        info = None
        if source is not None and is_valid_name(source):
            info = await blob_rows.mount(reg.pool, source, name, digest)
        if info is not None:
            return _created(name, info)
        # Not mountable: the spec says fall back to a normal upload session.
    if "digest" in request.query:
        digest = parse_digest(request.query["digest"])
        try:
            info = await reg.uploads.monolithic(
                name, digest, RequestBody(request.content, request.content_length)
            )
        except RegistryError as err:
            if err.code is ErrorCode.DIGEST_INVALID:
                DIGEST_MISMATCHES.inc()
            raise
        BLOB_BYTES_RECEIVED.inc(info.size)
        return _created(name, info)
    state = await reg.uploads.start(name)
    resp = _progress(name, str(state.id), 0, 202)
    resp.headers["OCI-Chunk-Min-Length"] = str(reg.config.storage.s3.part_size)
    return resp


@requires(repository("attest"))
async def upload_status(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    state = await reg.uploads.status(name, request.match_info["upload"])
    return _progress(name, str(state.id), state.size, 204)


@requires(repository("attest"))
async def upload_chunk(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    state = await reg.uploads.append(
        name,
        request.match_info["upload"],
        RequestBody(request.content, request.content_length),
        content_range(request),
    )
    BLOB_BYTES_RECEIVED.inc(state.received)
    return _progress(name, str(state.id), state.size, 202)


@requires(repository("attest"))
async def finish_upload(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    digest = parse_digest(request.query.get("digest"))
    body = RequestBody(request.content, request.content_length) if _has_body(request) else None
    try:
        info = await reg.uploads.finish(
            name, request.match_info["upload"], digest, body, content_range(request)
        )
    except RegistryError as err:
        if err.code is ErrorCode.DIGEST_INVALID:
            DIGEST_MISMATCHES.inc()
        raise
    return _created(name, info)


@requires(repository("attest"))
async def cancel_upload(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    await reg.uploads.cancel(repo_name(request), request.match_info["upload"])
    return web.Response(status=204)

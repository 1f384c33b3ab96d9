"""Parsing shared by the /v2 handlers: names, digests, ranges, pagination, locations."""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode

from aiohttp import web

from registry.oci.digest import Digest, DigestError
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.names import is_valid_name

MAX_PAGE = 1000
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def repo_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not is_valid_name(name):
        raise RegistryError(ErrorCode.NAME_INVALID, detail={"name": name[:300]})
    return name


def parse_digest(raw: str | None, *, what: str = "digest") -> Digest:
    if not raw:
        raise RegistryError(ErrorCode.DIGEST_INVALID, f"{what} is required")
    try:
        return Digest.parse(raw)
    except DigestError as exc:
        raise RegistryError(
            ErrorCode.DIGEST_INVALID, str(exc), detail={"digest": raw[:200]}
        ) from exc


def content_range(request: web.Request) -> tuple[int, int] | None:
    """The inclusive byte range of a chunk (`Content-Range: <start>-<end>`), if given."""
    raw = request.headers.get("Content-Range")
    if raw is None:
        return None
    match = _CONTENT_RANGE.match(raw.strip())
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise RegistryError(ErrorCode.RANGE_INVALID, f"malformed Content-Range {raw[:80]!r}")
    return int(match.group(1)), int(match.group(2))


def byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The requested `Range` of a blob as (start, end inclusive), or None for all of it."""
    raw = request.headers.get("Range")
    if raw is None:
        return None
    match = _RANGE.match(raw.strip())
    bad = RegistryError(
        ErrorCode.RANGE_INVALID,
        f"unsatisfiable range {raw[:80]!r}",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if match is None or (not match.group(1) and not match.group(2)):
        raise bad
    if not match.group(1):  # suffix: the last N bytes
        length = int(match.group(2))
        if length == 0:
            raise bad
        return max(size - length, 0), size - 1
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        raise bad
    return start, min(end, size - 1)


def page_args(request: web.Request) -> tuple[int, str | None]:
    """`n` and `last` of a paginated listing."""
    raw_n = request.query.get("n")
    n = MAX_PAGE
    if raw_n is not None:
        if not raw_n.isdigit():
            raise RegistryError(ErrorCode.PAGINATION_NUMBER_INVALID, detail={"n": raw_n[:20]})
        n = min(int(raw_n), MAX_PAGE)
    return n, request.query.get("last")


def next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def blob_location(name: str, digest: Digest) -> str:
    return f"/v2/{name}/blobs/{digest}"


def upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{quote(upload_id)}"


def manifest_location(name: str, digest: Digest) -> str:
    return f"/v2/{name}/manifests/{digest}"


async def head_response(
    request: web.Request, headers: dict[str, str], size: int
) -> web.StreamResponse:
    """A bodiless answer that still announces the size of the content (HEAD, 304)."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_length = size
    await resp.prepare(request)
    await resp.write_eof()
    return resp

"""A small S3 client on aiohttp: the dozen calls the S3 driver makes, signed with SigV4.

Why not botocore/aiobotocore: they load S3's service model and endpoint rules (~20–40 MiB
per process) and copy each part on its way out, so an S3 worker held ~100 MiB more than
a filesystem one and proxied pulls ran at 0.4× (docs/benchmarks.md has the comparison).
This client signs with `registry.storage.sigv4`, sends request bodies as the chunks
they arrived in (`Body`: one bytes object, a sequence of them, never joined, or a stream
of them whose length is known) and hands response bodies over as they arrive.

Payloads are sent as `UNSIGNED-PAYLOAD`: the registry verifies every blob's digest before
it stores it, and hashing each part again only to sign it cost a core's time per
upload. Calls are retried (`max_attempts`) on connection errors, timeouts and the
statuses S3 asks clients to retry, with exponential backoff and jitter like the AWS
SDKs' standard mode; a body held in memory is sent again, a streamed one cannot be, so
its call is tried once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from registry.storage.base import SocketBody
from registry.storage.sigv4 import (
    Credentials,
    canonical_query,
    presign_url,
    quote_path,
    sign_headers,
)

Bytes = bytes | bytearray | memoryview
Body = Bytes | Sequence[Bytes] | AsyncIterable[Bytes]
"""A request body: bytes, the chunks of one (sent as they are, replayable for retries), or
a stream (sent once: a call with a stream body is not retried)."""
DELETE_BATCH = 1000
"""Keys one DeleteObjects request may name (S3's limit)."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"})
HEAD_LIMIT = 64 << 10
"""Bytes of response headers `get_object_socket` reads before it gives up."""


class S3Error(Exception):
    """S3 answered with an error (`status`, S3's `code`), or could not be reached (status 0)."""

    def __init__(self, operation: str, status: int, code: str, message: str) -> None:
        super().__init__(f"S3 {operation}: {status} {code} {message}".strip())
        self.status = status
        self.code = code

    @property
    def missing(self) -> bool:
        return self.status == 404 or self.code in ("NoSuchKey", "NoSuchUpload", "NotFound")


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    size: int
    modified: datetime


def _parse(data: bytes) -> ET.Element:
    """An S3 answer. S3 never sends a DOCTYPE, so one is refused: no entity can expand
    (the only XML attacks expat is open to), whatever the endpoint answers."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ET.ParseError("S3 answered with a DOCTYPE")
    return ET.fromstring(data)  # noqa: S314 (no DTD, see above)


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _tag(c) == name]


def _text(element: ET.Element, name: str, default: str = "") -> str:
    for child in element:
        if _tag(child) == name:
            return child.text or ""
    return default


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _length(body: Bytes | Sequence[Bytes]) -> int:
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    return sum(len(c) for c in body)


class S3Client:
    """Calls on one bucket of one endpoint (path-style addressing)."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        region: str,
        credentials: Credentials,
        *,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        connections: int = 64,
    ) -> None:
        parts = urlsplit(endpoint.rstrip("/"))
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        self.max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.calls = 0
        """Requests sent (retries included): tests count what an operation costs."""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300),
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type"),
            read_bufsize=1 << 20,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _path(self, key: str | None) -> str:
        path = f"{self._base_path}/{self.bucket}"
        if key is not None:
            path += "/" + key
        return quote_path(path)

    async def request(
        self,
        operation: str,
        method: str,
        key: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        length: int | None = None,
    ) -> aiohttp.ClientResponse:
        """One call, retried as configured (a stream body: sent once, `length` bytes);
        the caller reads and releases the response. Errors raise S3Error (status 0: the
        store could not be reached)."""
        assert self._session is not None, "S3Client.start() first"
        path = self._path(key)
        query = dict(query or {})
        attempts = self.max_attempts
        if isinstance(body, AsyncIterable):
            assert length is not None, "a stream body needs its length"
            attempts = 1
        elif body is not None:
            length = _length(body)
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            signed = sign_headers(
                self.credentials,
                self.region,
                method,
                self.endpoint,
                path,
                query,
                dict(headers or {}),
                content_length=length,
            )
            url = URL(self.endpoint + path + _query_string(query), encoded=True)
            try:
                resp = await self._session.request(
                    method, url, headers=signed, data=_payload(body), allow_redirects=False
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt < attempts:
                    await self._backoff(attempt)
                    continue
                raise S3Error(operation, 0, type(exc).__name__, str(exc)) from exc
            if resp.status < 300:
                return resp
            error = await self._error(operation, resp)
            if attempt < attempts and (resp.status in RETRY_STATUSES or error.code in RETRY_CODES):
                await self._backoff(attempt)
                continue
            raise error

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(random.random() * min(20.0, 0.1 * 2**attempt))

    @staticmethod
    async def _error(operation: str, resp: aiohttp.ClientResponse) -> S3Error:
        try:
            text = await resp.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError):
            text = ""
        finally:
            resp.release()
        code, message = "", resp.reason or ""
        if text.lstrip().startswith("<"):
            try:
                root = _parse(text.encode())
                code, message = _text(root, "Code"), _text(root, "Message", message)
            except ET.ParseError:
                pass
        return S3Error(operation, resp.status, code or str(resp.status), message)

    async def _xml(self, operation: str, resp: aiohttp.ClientResponse) -> ET.Element:
        try:
            data = await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise S3Error(operation, 0, type(exc).__name__, str(exc)) from exc
        finally:
            resp.release()
        try:
            return _parse(data) if data.strip() else ET.Element("Empty")
        except ET.ParseError as exc:
            raise S3Error(operation, resp.status, "MalformedXML", str(exc)) from exc

    async def _done(self, operation: str, method: str, key: str | None, **kw: Any) -> None:
        resp = await self.request(operation, method, key, **kw)
        try:
            await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise S3Error(operation, 0, type(exc).__name__, str(exc)) from exc
        finally:
            resp.release()

    # -- bucket --------------------------------------------------------------------------

    async def head_bucket(self) -> None:
        await self._done("HeadBucket", "HEAD", None)

    async def create_bucket(self) -> None:
        await self._done("CreateBucket", "PUT", None)

    # -- objects -------------------------------------------------------------------------

    async def put_object(self, key: str, body: Body) -> None:
        await self._done("PutObject", "PUT", key, body=body)

    async def head_object(self, key: str) -> int:
        """The object's size."""
        resp = await self.request("HeadObject", "HEAD", key)
        resp.release()
        return int(resp.headers.get("Content-Length", "0"))

    async def get_object(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> aiohttp.ClientResponse:
        """The response to stream the body from (release it when done)."""
        headers = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"
        return await self.request("GetObject", "GET", key, headers=headers)

    async def get_object_socket(self, key: str, offset: int, length: int) -> SocketBody | None:
        """GetObject of `length` bytes from `offset` on a connection of its own: the
        headers parsed here, the body left on the socket (`SocketBody`) for splice(2).
        None where that cannot work or the answer is not plainly the bytes asked for: a
        TLS endpoint (its socket carries ciphertext), an error status, a chunked body, a
        range S3 did not honour, a connection that fails. The caller then makes the
        ordinary call, which retries and maps errors. An object shorter than asked for
        gives a shorter `remaining`: the caller sees the short count."""
        parts = urlsplit(self.endpoint)
        if parts.scheme != "http" or not parts.hostname:
            return None
        path = self._path(key)
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        signed = sign_headers(
            self.credentials, self.region, "GET", self.endpoint, path, {}, headers
        )
        request = "".join(
            [f"GET {path} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in signed.items())]
        )
        self.calls += 1
        sock = await self._connect(parts.hostname, parts.port or 80)
        if sock is None:
            return None
        try:
            async with asyncio.timeout(self._timeout.sock_read):
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, f"{request}Connection: close\r\n\r\n".encode())
                received = b""
                while (end := received.find(b"\r\n\r\n")) < 0 and len(received) < HEAD_LIMIT:
                    piece = await loop.sock_recv(sock, HEAD_LIMIT)
                    if not piece:
                        break
                    received += piece
            body = _socket_body(sock, received, end, offset, length) if end >= 0 else None
        except (OSError, TimeoutError):
            body = None
        except BaseException:  # cancelled (the request's deadline): no socket is left open
            sock.close()
            raise
        if body is None:
            sock.close()
        return body

    async def _connect(self, host: str, port: int) -> socket.socket | None:
        """A connected non-blocking socket, or None; none is left open on any failure."""
        loop = asyncio.get_running_loop()
        sock: socket.socket | None = None
        try:
            async with asyncio.timeout(self._timeout.sock_connect):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                for family, kind, proto, _, address in infos:
                    sock = socket.socket(family, kind, proto)
                    sock.setblocking(False)
                    try:
                        await loop.sock_connect(sock, address)
                    except OSError:
                        sock.close()
                        sock = None
                        continue
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return sock
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if not isinstance(exc, OSError | TimeoutError):
                raise
        return None

    async def get_bytes(self, key: str) -> bytes:
        resp = await self.get_object(key)
        try:
            return await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise S3Error("GetObject", 0, type(exc).__name__, str(exc)) from exc
        finally:
            resp.release()

    async def delete_object(self, key: str) -> None:
        await self._done("DeleteObject", "DELETE", key)

    async def delete_objects(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete up to DELETE_BATCH keys in one request (DeleteObjects, quiet: S3 lists
        only the keys it failed to delete; a missing key counts as deleted). Returns
        key → S3's error code and message for each failure."""
        assert 0 < len(keys) <= DELETE_BATCH, "DeleteObjects takes 1 to 1,000 keys"
        root = ET.Element("Delete")
        ET.SubElement(root, "Quiet").text = "true"
        for key in keys:
            ET.SubElement(ET.SubElement(root, "Object"), "Key").text = key
        body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        headers = {
            # S3 requires an integrity check on this call; SigV4 does not sign the body
            # (UNSIGNED-PAYLOAD), so Content-MD5 it is.
            "Content-MD5": base64.b64encode(
                hashlib.md5(body, usedforsecurity=False).digest()
            ).decode(),
            "Content-Type": "application/xml",
        }
        resp = await self.request(
            "DeleteObjects", "POST", None, query={"delete": ""}, headers=headers, body=body
        )
        result = await self._xml("DeleteObjects", resp)
        return {
            _text(error, "Key"): f"{_text(error, 'Code')} {_text(error, 'Message')}".strip()
            for error in _children(result, "Error")
        }

    async def list_objects(self, prefix: str, page: int = 1000) -> AsyncIterator[Listed]:
        """Every object under `prefix` (ListObjectsV2, `page` objects a request; S3 gives
        at most 1,000)."""
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": str(page)}
            if token:
                query["continuation-token"] = token
            root = await self._xml(
                "ListObjectsV2", await self.request("ListObjectsV2", "GET", query=query)
            )
            for item in _children(root, "Contents"):
                yield Listed(
                    _text(item, "Key"),
                    int(_text(item, "Size", "0")),
                    _time(_text(item, "LastModified")),
                )
            token = _text(root, "NextContinuationToken") or None
            if _text(root, "IsTruncated") != "true" or not token:
                return

    # -- multipart -----------------------------------------------------------------------

    async def create_multipart_upload(self, key: str) -> str:
        resp = await self.request("CreateMultipartUpload", "POST", key, query={"uploads": ""})
        return _text(await self._xml("CreateMultipartUpload", resp), "UploadId")

    async def upload_part(
        self, key: str, upload_id: str, number: int, body: Body, length: int | None = None
    ) -> str:
        """The part's ETag."""
        resp = await self.request(
            "UploadPart",
            "PUT",
            key,
            query={"partNumber": str(number), "uploadId": upload_id},
            body=body,
            length=length,
        )
        resp.release()
        return resp.headers.get("ETag", "")

    async def complete_multipart_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        document = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{_escape(etag)}</ETag></Part>"
            for n, etag in parts
        )
        body = f"<CompleteMultipartUpload>{document}</CompleteMultipartUpload>".encode()
        resp = await self.request(
            "CompleteMultipartUpload",
            "POST",
            key,
            query={"uploadId": upload_id},
            headers={"Content-Type": "application/xml"},
            body=body,
        )
        root = await self._xml("CompleteMultipartUpload", resp)
        if _tag(root) == "Error":  # S3 may report a failed completion in a 200 body
            raise S3Error(
                "CompleteMultipartUpload", 200, _text(root, "Code"), _text(root, "Message")
            )

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        await self._done("AbortMultipartUpload", "DELETE", key, query={"uploadId": upload_id})

    async def list_multipart_uploads(self, prefix: str) -> list[tuple[str, datetime]]:
        """(key, initiated) of the multipart uploads in progress under `prefix` (first page:
        the driver lists these only to find abandoned uploads, again on every GC run)."""
        resp = await self.request(
            "ListMultipartUploads", "GET", query={"uploads": "", "prefix": prefix}
        )
        root = await self._xml("ListMultipartUploads", resp)
        return [(_text(u, "Key"), _time(_text(u, "Initiated"))) for u in _children(root, "Upload")]

    def presign_get(self, key: str, expires: int) -> str:
        return presign_url(
            self.credentials, self.region, "GET", self.endpoint, self._path(key), expires
        )


def _socket_body(
    sock: socket.socket, received: bytes, end: int, offset: int, length: int
) -> SocketBody | None:
    """The body after the headers `received[:end]`, if it is the range asked for with a
    Content-Length (S3 may answer 200 with the whole object to a range from 0)."""
    lines = received[:end].decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if len(status) < 2 or "transfer-encoding" in fields:
        return None
    try:
        announced = int(fields["content-length"])
    except (KeyError, ValueError):
        return None
    if announced < 0:
        return None
    if status[1] == "206":
        first = fields.get("content-range", "").removeprefix("bytes ").split("-", 1)[0]
        if first != str(offset):
            return None
    elif status[1] != "200" or offset:
        return None
    head = received[end + 4 : end + 4 + min(announced, length)]
    return SocketBody(sock, head, min(announced, length) - len(head))


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _query_string(query: Mapping[str, str]) -> str:
    text = canonical_query(query)
    return f"?{text}" if text else ""


def _payload(body: Body | None) -> Any:
    if body is None or isinstance(body, bytes | bytearray | memoryview | AsyncIterable):
        return body

    async def chunks() -> AsyncIterator[Bytes]:
        for chunk in body:
            yield chunk

    return chunks()

"""Blob files to the socket with the kernel's sendfile(2), under uvloop too.

aiohttp's `FileResponse` asks the event loop for `sendfile`; uvloop has none, so aiohttp
falls back to reading 1 MiB chunks into Python and writing them out, which halves pull
throughput. Here the bytes go file → socket inside the kernel: once the headers are out,
a thread waits for the socket to take more (poll) and calls `os.sendfile` until the range
is sent. The thread never touches the event loop; a stalled or vanished client ends it.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from registry.oci.consumers import ProcessThreadPool

STALL_SECONDS = 60.0
"""A client that takes no byte for this long is dropped (as distribution's write timeout;
the service passes `http.idle_timeout`)."""

_SENDERS = ProcessThreadPool(32, "sendfile")


def send_range(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    stop: threading.Event,
    client_idle: float = STALL_SECONDS,
) -> int:
    """Send `count` bytes of `file_fd` from `offset` to a non-blocking socket; return how
    many went. Raises ConnectionResetError when the peer goes away or takes nothing for
    `client_idle` seconds."""
    poller = select.poll()
    poller.register(sock_fd, select.POLLOUT)
    sent = 0
    idle = 0.0
    while sent < count and not stop.is_set():
        try:
            n = os.sendfile(sock_fd, file_fd, offset + sent, count - sent)
        except BlockingIOError:
            n = -1
        except OSError as exc:  # EPIPE, ECONNRESET: the client hung up
            raise ConnectionResetError(str(exc)) from exc
        if n == 0:
            break  # the file is shorter than announced: the caller sees a short count
        if n > 0:
            sent += n
            idle = 0.0
            continue
        events = poller.poll(1000)
        if not events:
            idle += 1.0
            if idle >= client_idle:
                raise ConnectionResetError(f"client took no data for {client_idle:g} s")
        elif any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
            raise ConnectionResetError("client closed the connection")
    return sent


def _send_and_close(
    sock_fd: int, file_fd: int, offset: int, count: int, stop: threading.Event, idle: float
) -> int:
    try:
        return send_range(sock_fd, file_fd, offset, count, stop, idle)
    finally:
        os.close(sock_fd)
        os.close(file_fd)


def raw_socket(request: web.BaseRequest) -> bool:
    """Whether bytes may go straight to the client's socket past the event loop: an open
    plain connection, not TLS (the raw socket would carry them unencrypted)."""
    transport = request.transport
    return (
        transport is not None
        and not transport.is_closing()
        and transport.get_extra_info("socket") is not None
        and transport.get_extra_info("sslcontext") is None
        and transport.get_extra_info("ssl_object") is None
    )


async def headers_sent(transport: asyncio.Transport) -> None:
    """Wait until the response headers have left the transport's buffer: a body sent
    past the event loop must follow them on the wire."""
    for _ in range(10_000):
        if transport.is_closing() or not transport.get_write_buffer_size():
            break
        await asyncio.sleep(0.001)
    if transport.is_closing() or transport.get_write_buffer_size():
        raise ConnectionResetError("Connection lost")


class SendfileResponse(web.FileResponse):
    """`FileResponse` (Range, conditional requests, HEAD) with a real sendfile path; a
    client that takes nothing for `client_idle` seconds is dropped."""

    def __init__(self, path: Path, *, client_idle: float = STALL_SECONDS, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._client_idle = client_idle

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        if transport is None or count == 0 or not raw_socket(request):
            return await super()._sendfile(request, fobj, offset, count)
        sock = transport.get_extra_info("socket")
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        await writer.drain()
        await headers_sent(transport)
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        # The thread gets its own descriptors and closes them: if the event loop closes
        # the connection (or the file) meanwhile, their numbers can go to another
        # client's socket, which must never receive this blob's bytes.
        client, blob = os.dup(sock.fileno()), os.dup(fobj.fileno())
        try:
            sent = await loop.run_in_executor(
                _SENDERS.get(),
                _send_and_close,
                client,
                blob,
                offset,
                count,
                stop,
                self._client_idle,
            )
        finally:
            stop.set()  # a cancelled request ends the thread within a second
        if sent != count:
            transport.close()  # a short body must not look like a complete one
            raise ConnectionResetError(f"blob file ended after {sent} of {count} bytes")
        await web.StreamResponse.write_eof(self)
        return writer

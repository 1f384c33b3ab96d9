"""Connections that cost the service without using it are closed: slowloris defence.

aiohttp waits for a request's headers as long as its keep-alive allows, and for a
request body or a client that reads nothing forever. Each worker therefore serves through
`GuardedSite`, whose connections (`GuardedRequestHandler`):
- must deliver a request's headers within `http.header_timeout` of connecting or of the
  request's first byte (a client trickling one header line at a time is cut);
- are closed when the client sends nothing for `http.idle_timeout` while the handler
  waits for its body, or takes no byte of the response for as long. The clock runs only
  while the server waits for the client, so a slow but progressing blob transfer is never
  cut, however long it takes (progress of a response counts the bytes the kernel still
  holds for the client, so a slow reader's every read is seen);
- number at most `http.max_connections_per_address` per client address and
  `http.max_connections` in all, per worker process: beyond, a new connection gets a 429
  or 503 and is closed at once, so one host cannot take every file descriptor.
The checks read a few of aiohttp's private attributes (`_messages`, `_request_count`,
`_current_request`, a StreamReader's `_waiter`); tests/faults/test_slow_clients.py pins
the behaviour, so an aiohttp upgrade that moves them fails there.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import struct
import termios
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from registry.config import HTTPConfig
from registry.logs import get_logger
from registry.metrics import CONNECTIONS_CLOSED

log = get_logger("zoll.http")
TOO_MANY_FROM_YOU = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)
TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class ConnectionGuard:
    """One worker's open connections by client address, and the limits."""

    def __init__(self, config: HTTPConfig) -> None:
        self.config = config
        self.per_address: collections.Counter[str] = collections.Counter()
        self.open = 0
        self.tick = max(0.25, min(5.0, config.header_timeout / 4, config.idle_timeout / 4))

    def admit(self, address: str | None) -> bytes | None:
        """None if a new connection from `address` may stay, else the answer to send."""
        if self.open >= self.config.max_connections:
            CONNECTIONS_CLOSED.labels("max_connections").inc()
            return TOO_MANY
        if address is not None and (
            self.per_address[address] >= self.config.max_connections_per_address
        ):
            CONNECTIONS_CLOSED.labels("per_address").inc()
            return TOO_MANY_FROM_YOU
        self.open += 1
        if address is not None:
            self.per_address[address] += 1
        return None

    def release(self, address: str | None) -> None:
        self.open -= 1
        if address is not None:
            self.per_address[address] -= 1
            if self.per_address[address] <= 0:
                del self.per_address[address]


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with header and idle deadlines and admission."""

    def __init__(self, manager: Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._admitted = False
        self._address: str | None = None
        self._header_since: float | None = None
        self._idle_since = 0.0
        self._buffered = 0
        self._queued = (0, 0)
        self._ticker: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        refusal = self._guard.admit(self._address)
        if refusal is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal)
            self.force_close()  # closes once the answer is written
            return
        self._admitted = True
        now = self._loop.time()
        self._header_since = now
        self._idle_since = now
        self._ticker = self._loop.call_at(now + self._guard.tick, self._check)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._admitted:
            self._admitted = False
            self._guard.release(self._address)
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self._current_request is None and not self._messages

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        self._idle_since = now
        if self._header_since is None and self._between_requests():
            self._header_since = now  # the first bytes of the next request
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:
            self._header_since = None

    def _waiting_for_client(self) -> bool:
        """The handler waits for body bytes, or the client has not taken what was sent."""
        request = self._current_request
        if request is not None and getattr(request.content, "_waiter", None) is not None:
            return True
        return self._buffered > 0

    def _check(self) -> None:
        self._ticker = None
        transport = self.transport
        if transport is None or self._force_close:
            return
        now = self._loop.time()
        config = self._guard.config
        if (
            self._header_since is not None
            and self._between_requests()
            and now - self._header_since >= config.header_timeout
        ):
            self._cut("header_timeout")
            return
        buffered = transport.get_write_buffer_size()
        queued = (buffered, _kernel_unsent(transport))
        if queued != self._queued:  # the client took bytes (or more were queued)
            self._queued = queued
            self._idle_since = now
        self._buffered = buffered
        if not self._waiting_for_client():
            self._idle_since = now  # the clock runs only while the client is awaited
        elif now - self._idle_since >= config.idle_timeout:
            self._cut("idle_timeout")
            return
        self._ticker = self._loop.call_at(now + self._guard.tick, self._check)

    def _cut(self, reason: str) -> None:
        CONNECTIONS_CLOSED.labels(reason).inc()
        log.info("connection closed", reason=reason, remote=self._address)
        self.force_close()


def _kernel_unsent(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel still holds for the client (sent but not acknowledged, or not
    sent): it changes as soon as the client reads, while the transport's own buffer only
    moves when the kernel's has a third free, which a slow reader may take long to free."""
    sock = transport.get_extra_info("socket")
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return 0
    return int(struct.unpack("i", raw)[0])


class GuardedSite(web.SockSite):
    """A SockSite whose connections are `GuardedRequestHandler`s."""

    def __init__(self, runner: web.AppRunner, sock: Any, config: HTTPConfig) -> None:
        super().__init__(runner, sock, backlog=1024)
        self.guard = ConnectionGuard(config)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = dict(server._kwargs)

        def connection() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, self.guard, loop=loop, **kwargs)

        self._server = await loop.create_server(connection, sock=self._sock, backlog=1024)

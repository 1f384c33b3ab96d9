"""A reverse proxy in front of a real registry that misbehaves on purpose.

Faults match a method and a path pattern and fire a given number of times:
- `status`: answer with that status (and headers such as Retry-After) without forwarding;
- `drop_after`: forward, then cut the connection after that many body bytes;
- `flip_at`: forward, with the byte at that offset of the body inverted;
- `lose_response`: forward (the registry processes the request), then close the
  connection without answering, as a crashed load balancer would;
- `reset`: close the connection without forwarding (the registry never sees it).
Everything else is passed through unchanged, `Host` included, so the registry's
`Location` headers point back at the proxy.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
}


@dataclass
class Fault:
    method: str
    path: str
    """A regular expression the request path must fully match."""
    times: int = 1
    skip: int = 0
    """Matching requests to let through before the fault fires."""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    flip_at: int | None = None
    lose_response: bool = False
    reset: bool = False

    def fires(self, request: web.Request) -> bool:
        """Whether this fault applies to `request` (counting it when it matches)."""
        if self.times <= 0 or request.method != self.method:
            return False
        if re.fullmatch(self.path, request.path) is None:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    status: int | None
    at: float
    fault: bool


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    host: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def add(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def requests(self, method: str, pattern: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.fullmatch(pattern, s.path)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        firing = [f for f in self.faults if f.fires(request)]
        fault = firing[0] if firing else None
        if fault is not None:
            fault.times -= 1
        record = Seen(
            request.method,
            request.path,
            request.headers.get("Range"),
            None,
            time.monotonic(),
            fault is not None,
        )
        self.seen.append(record)
        if fault is not None and fault.status is not None:
            record.status = fault.status
            body = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}'
            return web.Response(
                status=fault.status,
                headers={"Content-Type": "application/json", **fault.headers},
                body=body,
            )
        if fault is not None and fault.reset:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = request.content if request.body_exists else None
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                headers=headers,
                data=data,
                allow_redirects=False,
            ) as upstream,
        ):
            record.status = upstream.status
            if fault is not None and fault.lose_response:
                await upstream.read()
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            offset = 0
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                if fault is not None and fault.flip_at is not None:
                    at = fault.flip_at - offset
                    if 0 <= at < len(chunk):
                        chunk = chunk[:at] + bytes([chunk[at] ^ 0xFF]) + chunk[at + 1 :]
                drop = fault.drop_after if fault is not None else None
                if drop is not None and offset + len(chunk) >= drop:
                    await response.write(chunk[: drop - offset])
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(chunk)
                offset += len(chunk)
            await response.write_eof()
            return response

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FaultProxy]:
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.host = f"{host}:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()

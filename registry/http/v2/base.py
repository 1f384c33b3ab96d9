"""`GET /v2/`: the version check every client starts with."""

from __future__ import annotations

from aiohttp import web

from registry.http.access import SIGNED_IN, requires


@requires(SIGNED_IN)
async def version_check(request: web.Request) -> web.Response:
    return web.json_response({})

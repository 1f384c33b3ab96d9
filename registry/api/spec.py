"""`/api/v1/openapi.json`: the API describes itself."""

from __future__ import annotations

from aiohttp import web

from registry import __version__
from registry.api.router import API
from registry.http.access import PUBLIC, requires

_CACHE: dict[str, bytes] = {}


@requires(PUBLIC)
async def openapi_json(request: web.Request) -> web.Response:
    if "doc" not in _CACHE:
        import json

        doc = API.openapi(title="Zoll API", version=__version__)
        _CACHE["doc"] = json.dumps(doc, indent=1).encode()
    return web.Response(body=_CACHE["doc"], content_type="application/json")

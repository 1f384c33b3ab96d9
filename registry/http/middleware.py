"""Request ids, structured access logs and Prometheus request metrics."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web

from registry.http.errors import Handler
from registry.http.state import REQUEST_ID
from registry.logs import get_logger
from registry.metrics import REQUEST_SECONDS, REQUESTS

log = get_logger("zoll.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (the client's, if sane), log it and count it."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        if request.path.startswith("/v2"):
            response.headers.update(API_VERSION)
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        REQUESTS.labels(request.method, route, str(status)).inc()
        REQUEST_SECONDS.labels(request.method, route).observe(elapsed)
        if route not in ("/metrics", "/healthz", "/readyz"):
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=status,
                ms=round(elapsed * 1000, 2),
                remote=request.remote,
            )
        structlog.contextvars.unbind_contextvars("request_id")

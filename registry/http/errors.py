"""Render failures in the protocol's own format.

`/v2` errors use the OCI error body and status codes. Anything unexpected becomes a 500
with code UNKNOWN and the request id, so an operator can find the log line; database or
storage outages become 503 UNAVAILABLE.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from registry.api.router import ApiError
from registry.http.state import request_id
from registry.logs import get_logger
from registry.oci.errors import ErrorCode, RegistryError
from registry.storage.base import StorageError

log = get_logger("zoll.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(err: RegistryError, request: web.Request) -> web.Response:
    # aiohttp sends no body for HEAD but keeps the Content-Length of this one.
    return web.Response(
        status=err.status,
        body=json.dumps(err.body()).encode(),
        content_type="application/json",
        headers=err.headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as err:
        return error_response(err, request)
    except ApiError as err:
        return err.response()
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status in (404, 405):
            return ApiError(exc.status, exc.reason, f"{request.method} {request.path}").response()
        if exc.status == 404 and request.path.startswith("/v2/"):
            return error_response(
                RegistryError(ErrorCode.NAME_UNKNOWN, "no such endpoint", status=404), request
            )
        if exc.status == 405 and request.path.startswith("/v2/"):
            return error_response(
                RegistryError(ErrorCode.UNSUPPORTED, "method not allowed", status=405), request
            )
        raise
    except (
        StorageError,
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
        asyncpg.exceptions.InsufficientResourcesError,  # too many connections
        asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby: failing over
        OSError,
    ) as exc:
        log.error("backend unavailable", error=str(exc), exc_type=type(exc).__name__)
        return _internal(ErrorCode.UNAVAILABLE, request, "storage or database unavailable")
    except asyncpg.PostgresError as exc:
        log.exception("database error", detail=getattr(exc, "detail", None))
        return _internal(ErrorCode.UNKNOWN, request, "internal error")
    except Exception:
        log.exception("unhandled error")
        return _internal(ErrorCode.UNKNOWN, request, "internal error")


def _internal(code: ErrorCode, request: web.Request, message: str) -> web.Response:
    detail: dict[str, Any] = {"request_id": request_id(request)}
    if request.path.startswith("/api/"):
        status = code.status
        return ApiError(status, message, None, request_id=detail["request_id"]).response()
    return error_response(RegistryError(code, message, detail), request)

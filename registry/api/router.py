"""Declare /api/v1 operations once; routes and the OpenAPI document both come from that.

An operation names its path, its parameters, the pydantic model it returns and the
accesses it needs. The handler returns the model; the router renders it as JSON. Errors
are RFC 9457 problem documents (`application/problem+json`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from registry.db.pool import flush_commits
from registry.http.access import PUBLIC, Needs, requires
from registry.http.state import registry_of

ApiHandler = Callable[[web.Request], Awaitable[BaseModel | web.StreamResponse]]
H = TypeVar("H", bound=ApiHandler)


class ApiError(Exception):
    """An error the API reports as a problem document."""

    def __init__(self, status: int, title: str, detail: str | None = None, **extra: Any) -> None:
        super().__init__(f"{status} {title}: {detail or ''}")
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail:
            out["detail"] = self.detail
        out.update(self.extra)
        return out

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body()).encode(),
            content_type="application/problem+json",
        )


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["path", "query"]
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass
class Operation:
    method: str
    path: str
    route: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    name: str
    summary: str
    description: str
    tag: str
    response: type[BaseModel] | None
    params: tuple[Param, ...]
    errors: dict[int, str]
    content_type: str = "application/json"
    body: type[BaseModel] | None = None
    """The JSON request body, if the operation takes one."""
    public: bool = False


class ApiRouter:
    """Collects operations; `install(app)` adds routes, `openapi()` documents them."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        needs: Needs,
        response: type[BaseModel] | None,
        params: tuple[Param, ...] = (),
        errors: dict[int, str] | None = None,
        route: str | None = None,
        content_type: str = "application/json",
        body: type[BaseModel] | None = None,
    ) -> Callable[[H], H]:
        """Register a handler. `route` is the aiohttp pattern when it differs from `path`
        (e.g. names with slashes); the docstring becomes the description."""

        def register(fn: H) -> H:
            async def handler(request: web.Request) -> web.StreamResponse:
                try:
                    result = await fn(request)
                except ApiError as err:
                    return err.response()
                registry = registry_of(request)
                if registry.config.relaxed_pipeline:  # auditors may anchor what they see
                    await flush_commits(registry.pool)
                if isinstance(result, web.StreamResponse):
                    return result
                body = result.model_dump_json(by_alias=True)
                return web.Response(body=body.encode(), content_type="application/json")

            requires(needs)(handler)
            self.operations.append(
                Operation(
                    method.upper(),
                    path,
                    route or path,
                    handler,
                    fn.__name__,
                    summary,
                    (fn.__doc__ or "").strip(),
                    tag,
                    response,
                    params,
                    {400: "Invalid request", **(errors or {})},
                    content_type,
                    body,
                    needs is PUBLIC,
                )
            )
            return fn

        return register

    def install(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.route, op.handler)

    def openapi(self, *, title: str, version: str) -> dict[str, Any]:
        models = {op.response for op in self.operations if op.response is not None}
        models |= {op.body for op in self.operations if op.body is not None}
        models.add(Problem)
        _, schema = models_json_schema(
            [(m, "serialization") for m in sorted(models, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}",
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            responses: dict[str, Any] = {}
            ok: dict[str, Any] = {"description": op.summary}
            if op.response is not None:
                ok["content"] = {
                    op.content_type: {
                        "schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}
                    }
                }
            responses["200"] = ok
            errors = dict(op.errors)
            if not op.public:
                errors.setdefault(401, "Credentials or a bearer token are needed")
                errors.setdefault(403, "The caller's grants do not allow this")
            for status, text in sorted(errors.items()):
                responses[str(status)] = {
                    "description": text,
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
            entry: dict[str, Any] = {} if not op.public else {"security": []}
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                        }
                    },
                }
            paths.setdefault(op.path, {})[op.method.lower()] = entry | {
                "operationId": op.name,
                "summary": op.summary,
                "description": op.description,
                "tags": [op.tag],
                "parameters": [
                    {
                        "name": p.name,
                        "in": p.location,
                        "required": p.required or p.location == "path",
                        "description": p.description,
                        "schema": p.schema,
                    }
                    for p in op.params
                ],
                "responses": responses,
            }
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schema.get("$defs", {}),
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "a token from /token (Docker token flow)",
                    },
                    "basic": {"type": "http", "scheme": "basic"},
                },
            },
            "security": [{"bearer": []}, {"basic": []}],
        }


API = ApiRouter()
"""The one router every /api/v1 module registers with."""


def registry_wide_only(request: web.Request, why: str) -> None:
    """Refuse auditors of some namespaces where the answer spans all of them."""
    from registry.auth.caller import caller_of

    caller = caller_of(request)
    if caller is not None and caller.grants.audit_namespaces() is not None:
        raise ApiError(403, "Forbidden", f"{why}: registry-wide auditors only")


def limit_param(default: int = 100) -> Param:
    return Param(
        "limit",
        "query",
        f"page size (1–1000, default {default})",
        {"type": "integer", "minimum": 1, "maximum": 1000, "default": default},
    )


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "Invalid parameter", f"{name} must be an integer from {low} to {high}")
    return int(raw)

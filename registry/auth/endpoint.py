"""`/token`: the token server every registry client speaks.

- `GET /token?service=…&scope=…` with Basic credentials, or without any for an anonymous
  token (Docker token spec);
- `POST /token` with a form `grant_type=password&username=…&password=…&scope=…`
  (OAuth2, what containerd sends first).

The token carries, per requested resource, the requested actions the caller may do: an
unknown or forbidden scope is not an error, it is simply not granted (the registry then
answers 401/403/404 for the request that needs it). Wrong credentials are 401 (GET) or
400 `invalid_grant` (POST), and are audited; failed logins back off (registry.auth.ratelimit).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from registry.auth.caller import Caller
from registry.auth.ratelimit import RateLimited
from registry.auth.service import (
    AuthService,
    BadAuthorization,
    LoginFailed,
    parse_basic,
    source_of,
)
from registry.auth.tokens import ResourceScope, ScopeError, parse_scopes
from registry.http.access import PUBLIC, requires
from registry.http.state import registry_of

MAX_FORM_BYTES = 64 * 1024


def grantable(caller: Caller, scopes: list[ResourceScope]) -> list[ResourceScope]:
    """Each requested resource with the requested actions the caller may do ('*' = all)."""
    out = []
    for scope in scopes:
        if scope.type == "repository":
            allowed = caller.grants.repository_actions(scope.name)
        elif scope.type == "registry":
            allowed = caller.grants.registry_actions()
            if scope.name == "catalog":
                allowed = allowed & {"catalog"}
        else:
            continue
        wanted = sorted(allowed) if "*" in scope.actions else scope.actions
        if "push" in wanted and "push" not in allowed and "attest" in allowed:
            # Clients ask for push to upload signatures; attesters get what they may do.
            wanted = tuple(dict.fromkeys("attest" if a == "push" else a for a in wanted))
        granted = tuple(a for a in wanted if a in allowed)
        if granted:
            out.append(ResourceScope(scope.type, scope.name, granted))
    return out


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def _oci_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"errors": [{"code": code, "message": message}]}, headers)


def _service(request: web.Request) -> AuthService:
    service = registry_of(request).auth
    if service is None:
        raise web.HTTPNotFound(text="authentication is disabled on this registry")
    return service


async def _issue(
    service: AuthService, caller: Caller, scopes: list[ResourceScope]
) -> tuple[str, int, str, list[ResourceScope]]:
    await service.signing_ready()
    granted = grantable(caller, scopes)
    issued = service.tokens.issue(
        caller.name, caller.principal.id, granted, caller.principal.secret_version
    )
    at = datetime.fromtimestamp(issued.issued_at, UTC).isoformat().replace("+00:00", "Z")
    return issued.token, issued.expires_in, at, granted


@requires(PUBLIC)
async def token_get(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    source = source_of(request)
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    name: str | None = None
    try:
        if header and scheme.lower() == "basic":
            name, password = parse_basic(value)
        elif header:
            return _oci_error(400, "UNSUPPORTED", "use Basic credentials (or none) for /token")
        wanted_service = request.query.get("service")
        if wanted_service is not None and wanted_service != service.config.service:
            return _oci_error(400, "DENIED", f"this token server is for {service.config.service!r}")
        scopes = parse_scopes(request.query.getall("scope", []))
        if name is None:
            caller = await service.anonymous_caller()
        else:
            principal = await service.check_password(name, password, source)
            caller = Caller(principal, await service.effective_grants(principal), "basic")
    except ScopeError as exc:
        return _oci_error(400, "DENIED", str(exc))
    except BadAuthorization as exc:
        return _oci_error(400, "UNAUTHORIZED", exc.reason)
    except LoginFailed:
        return _oci_error(
            401,
            "UNAUTHORIZED",
            "invalid credentials",
            {"WWW-Authenticate": f'Basic realm="{service.config.service}"'},
        )
    except RateLimited as exc:
        await service.denials.refused("rate_limited", "login", detail={"path": "/token"})
        return _oci_error(429, "TOOMANYREQUESTS", exc.what, {"Retry-After": str(exc.retry_after)})
    token, expires_in, issued_at, _ = await _issue(service, caller, scopes)
    return _json(
        200,
        {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at},
        {"Cache-Control": "no-store"},
    )


def _oauth_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": error, "error_description": description}, headers)


async def _form(request: web.Request) -> dict[str, list[str]] | None:
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        return None
    body = await request.content.read(MAX_FORM_BYTES + 1)
    if len(body) > MAX_FORM_BYTES:
        return None
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=200)


@requires(PUBLIC)
async def token_post(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    source = source_of(request)
    try:
        form = await _form(request)
    except ValueError:
        return _oauth_error(400, "invalid_request", "malformed form")
    if form is None:
        return _oauth_error(413, "invalid_request", f"form larger than {MAX_FORM_BYTES} bytes")

    def field(key: str) -> str | None:
        values = form.get(key)
        return values[0] if values else None

    grant_type = field("grant_type")
    if grant_type != "password":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=password is supported")
    name, password = field("username"), field("password")
    if not name or password is None:
        return _oauth_error(400, "invalid_request", "username and password are required")
    try:
        wanted_service = field("service")
        if wanted_service is not None and wanted_service != service.config.service:
            return _oauth_error(
                400, "invalid_request", f"this token server is for {service.config.service!r}"
            )
        scopes = parse_scopes(form.get("scope", []))
        principal = await service.check_password(name, password, source)
    except ScopeError as exc:
        return _oauth_error(400, "invalid_scope", str(exc))
    except LoginFailed:
        return _oauth_error(400, "invalid_grant", "invalid credentials")
    except RateLimited as exc:
        await service.denials.refused("rate_limited", "login", detail={"path": "/token"})
        return _oauth_error(429, "slow_down", exc.what, {"Retry-After": str(exc.retry_after)})
    caller = Caller(principal, await service.effective_grants(principal), "basic")
    token, expires_in, issued_at, granted = await _issue(service, caller, scopes)
    return _json(
        200,
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "issued_at": issued_at,
            "scope": " ".join(s.text() for s in granted),
        },
        {"Cache-Control": "no-store"},
    )

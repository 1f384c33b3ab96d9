"""Authorisation of every request against what its route declares (`registry.http.access`).

Runs after the request id is assigned. Routes that declare nothing are refused; public
routes (`/healthz`, `/token`, the OpenAPI document) pass; everything else needs a caller
whose grants — and token, if one was presented — allow each declared access. How refusals
are answered (401 / 403 / 404) is explained in `registry.auth.decision`.

A cross-repository mount whose caller may not pull the source is not refused: the mount
parameters are dropped and the request becomes a plain upload session, as the
distribution spec allows, so nothing about the source repository leaks.
"""

from __future__ import annotations

import json

import structlog
from aiohttp import web
from multidict import CIMultiDict, MultiDict

from registry.audit import Actor, bind_actor
from registry.auth.accounts import ANONYMOUS
from registry.auth.caller import CALLER, Caller
from registry.auth.decision import Verdict, decide
from registry.auth.ratelimit import RateLimited
from registry.auth.service import AuthService, BadAuthorization, LoginFailed, source_of
from registry.auth.sessions import is_page, page_refusal
from registry.http.access import Access, needed
from registry.http.errors import Handler
from registry.http.state import registry_of, request_id
from registry.oci.errors import ErrorCode, RegistryError

METRICS = Access("registry", "*", "metrics")


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _streams_own_body(path: str) -> bool:
    """Blob uploads stream and manifests have their own limit (http.max_manifest_bytes)."""
    return path.startswith("/v2/") and ("/blobs/uploads" in path or "/manifests/" in path)


def challenge_scope(accesses: list[Access]) -> str:
    """The `scope` of a challenge: every access the request needs, actions merged per
    resource. Repositories ask for push along with pull, so clients that keep the first
    token they get (oras-py) can push with it; /token grants only what the caller may."""
    merged: dict[tuple[str, str], list[str]] = {}
    for access in accesses:
        if access.action == "login":
            continue
        if access.type == "repository":
            extra = (
                ["pull", "push"]
                if access.action in ("pull", "push", "attest")
                else ["pull", access.action]
            )
        elif access.name == "catalog":
            extra = ["*"]
        else:
            extra = [access.action]
        actions = merged.setdefault((access.type, access.name), [])
        actions.extend(a for a in extra if a not in actions)
    return " ".join(f"{t}:{n}:{','.join(a)}" for (t, n), a in merged.items())


def _challenge(
    service: AuthService, request: web.Request, scope: str | None, error: str | None
) -> str:
    parts = [f'realm="{service.realm(request)}"', f'service="{service.config.service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def _respond(
    request: web.Request,
    status: int,
    code: ErrorCode,
    message: str,
    detail: object = None,
    headers: CIMultiDict[str] | None = None,
) -> web.Response:
    hdrs: CIMultiDict[str] = headers or CIMultiDict()
    if _is_api(request):
        body: dict[str, object] = {"type": "about:blank", "title": message, "status": status}
        if detail is not None:
            body["detail"] = detail if isinstance(detail, str) else json.dumps(detail)
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/problem+json",
            headers=hdrs,
        )
    err = RegistryError(code, message, detail, status=status)
    hdrs["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(err.body()).encode(), headers=hdrs)


def _unauthorized(
    service: AuthService,
    request: web.Request,
    message: str,
    access: Access | None = None,
    error: str | None = None,
    wanted: list[Access] | None = None,
) -> web.Response:
    hdrs: CIMultiDict[str] = CIMultiDict()
    scope = challenge_scope(wanted or ([access] if access else []))
    hdrs.add("WWW-Authenticate", _challenge(service, request, scope or None, error))
    if _is_api(request):
        hdrs.add("WWW-Authenticate", f'Basic realm="{service.config.service}"')
    detail = (
        [{"Type": access.type, "Name": access.name, "Action": access.action}]
        if access is not None and access.action != "login"
        else None
    )
    return _respond(request, 401, ErrorCode.UNAUTHORIZED, message, detail, hdrs)


def _refusal(
    service: AuthService,
    request: web.Request,
    verdict: Verdict,
    access: Access,
    wanted: list[Access],
) -> web.Response:
    if verdict is Verdict.CHALLENGE:
        return _unauthorized(service, request, "authentication required", access, None, wanted)
    if verdict is Verdict.INSUFFICIENT_SCOPE:
        message = "token lacks the scope this needs"
        return _unauthorized(service, request, message, access, "insufficient_scope", wanted)
    if verdict is Verdict.HIDE:
        if _is_api(request):
            return _respond(request, 404, ErrorCode.NAME_UNKNOWN, "No such repository", access.name)
        return _respond(
            request,
            404,
            ErrorCode.NAME_UNKNOWN,
            ErrorCode.NAME_UNKNOWN.message,
            {"name": access.name},
        )
    return _respond(
        request,
        403,
        ErrorCode.DENIED,
        ErrorCode.DENIED.message,
        [{"Type": access.type, "Name": access.name, "Action": access.action}],
    )


def _optional_mount(
    request: web.Request, needs: list[Access], caller: Caller
) -> tuple[web.Request, list[Access]]:
    """Split off the source pull of a cross-repository mount; drop the mount if not allowed."""
    source = request.query.get("from")
    if request.method != "POST" or "mount" not in request.query or not source:
        return request, needs
    optional = [a for a in needs if a == Access("repository", source, "pull")]
    if not optional:
        return request, needs
    rest = [a for a in needs if a not in optional]
    if all(caller.can(a) for a in optional):
        return request, rest
    query = MultiDict(request.query)
    query.popall("mount", None)
    query.popall("from", None)
    return request.clone(rel_url=request.rel_url.with_query(query)), rest


async def _audit(
    service: AuthService,
    request: web.Request,
    reason: str,
    wanted: Access | str,
    message: str | None = None,
) -> None:
    """Leave the refusal in the audit log (grouped and bounded: registry/auth/denials.py)."""
    detail: dict[str, object] = {"method": request.method, "path": request.path[:200]}
    if message:
        detail["message"] = message[:200]
    repository = None
    if isinstance(wanted, Access):
        repository = wanted.name if wanted.type == "repository" else None
        wanted = f"{wanted.type}:{wanted.name}:{wanted.action}"
    await service.denials.refused(reason, wanted, repository=repository, detail=detail)


def late_refusal(
    request: web.Request, access: Access, denied: RegistryError
) -> web.Response | None:
    """For an access a handler finds it needs only once it has read the request (an
    attester's manifest that is not attestation material needs push): None when the
    caller may, `denied` raised when a signed-in caller may not, else the answer the
    middleware would have given (a challenge for a token with the scope)."""
    caller = request.get(CALLER)
    service = registry_of(request).auth
    if caller is None or service is None:
        return None  # authentication is off: everything is allowed
    verdict = decide(caller, [access]).verdict
    if verdict is Verdict.ALLOW:
        return None
    if verdict is Verdict.DENY:
        raise denied
    return _refusal(service, request, verdict, access, [access])


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Keep-alive requests share one task (and its context): rebind on every request.
    source, rid = source_of(request), request_id(request)
    bind_actor(Actor(ANONYMOUS, "anonymous", source, rid))
    structlog.contextvars.bind_contextvars(principal=ANONYMOUS)
    structlog.contextvars.unbind_contextvars("refused")
    if request.match_info.http_exception is not None:
        return await handler(request)  # no such route: the error middleware answers
    reg = registry_of(request)
    needs = needed(request)
    if needs is None:
        return _respond(request, 403, ErrorCode.DENIED, "this route declares no access rule")
    limit = reg.config.auth.max_body_bytes
    if (
        request.content_length is not None
        and request.content_length > limit
        and not _streams_own_body(request.path)
    ):
        return _respond(
            request, 413, ErrorCode.SIZE_INVALID, f"request body larger than {limit} bytes"
        )
    service = reg.auth
    page = is_page(request.path)  # pages always learn who looks (catalogues filter by it)
    if (
        service is None
        or (not needs and not page)
        or (reg.config.auth.public_metrics and needs == [METRICS])
    ):
        return await handler(request)  # authentication off, or a public route
    try:
        caller = await service.caller(request)
    except LoginFailed:
        return _unauthorized(service, request, "invalid credentials")
    except BadAuthorization as exc:
        await _audit(
            service,
            request,
            "invalid_token" if exc.token else "bad_authorization",
            "credentials",
            exc.reason,
        )
        return _unauthorized(
            service, request, exc.reason, error="invalid_token" if exc.token else None
        )
    except RateLimited as exc:
        await _audit(service, request, "rate_limited", "login", exc.what)
        return _respond(
            request,
            429,
            ErrorCode.TOOMANYREQUESTS,
            exc.what,
            headers=CIMultiDict({"Retry-After": str(exc.retry_after)}),
        )
    # Who asked, for the log line of this request, allowed or refused.
    bind_actor(Actor(caller.name, caller.principal.kind, source, rid))
    structlog.contextvars.bind_contextvars(principal=caller.name)
    wanted = needs
    request, needs = _optional_mount(request, needs, caller)
    decision = decide(caller, needs)
    if decision.verdict is not Verdict.ALLOW:
        assert decision.access is not None
        refused = decision.access
        structlog.contextvars.bind_contextvars(
            refused=f"{refused.type} {refused.name}: {refused.action}"
        )
        if decision.verdict is not Verdict.CHALLENGE:  # a challenge is the protocol's first step
            bind_actor(Actor(caller.name, caller.principal.kind, source, rid))
            await _audit(service, request, decision.verdict.value, decision.access)
        if page:
            request[CALLER] = caller  # the error page shows who is signed in
            raise page_refusal(request, decision.verdict)  # rendered by the page middleware
        return _refusal(service, request, decision.verdict, decision.access, wanted)
    request[CALLER] = caller
    return await handler(request)

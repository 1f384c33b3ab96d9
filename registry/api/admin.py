"""`/api/v1/admin`: users, robots and grants (admins on `*` only).

Secrets are returned once, by the call that creates or resets them, with
`Cache-Control: no-store`; listings never include them. Every change is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from registry.api.router import API, ApiError, Param
from registry.auth import accounts
from registry.auth.accounts import AccountError, NoSuchPrincipal, Principal, PrincipalExists
from registry.auth.passwords import Hasher
from registry.auth.roles import GrantError
from registry.http.access import registry_wide
from registry.http.state import Registry, registry_of

ADMIN = registry_wide("admin")
NAME_PARAM = Param("name", "path", "principal name (`alice`, `robot+ci`, `anonymous`)")
Body = TypeVar("Body", bound=BaseModel)


class GrantModel(BaseModel):
    namespace: str = Field(description="`*` or a repository path prefix such as `opendesk`")
    role: str = Field(description="reader, pusher, attester, auditor, admin or monitor")


class PrincipalInfo(BaseModel):
    name: str
    kind: str
    disabled: bool
    expires_at: datetime | None = None
    description: str
    created_at: datetime | None = None
    created_by: str
    grants: list[GrantModel]


class PrincipalList(BaseModel):
    principals: list[PrincipalInfo]


class NewUser(BaseModel):
    name: str
    password: str | None = Field(None, description="omit to have one generated (returned once)")
    description: str = ""
    grants: list[GrantModel] = []


class NewRobot(BaseModel):
    name: str = Field(description="`ci` becomes `robot+ci`")
    description: str = ""
    expires_at: datetime | None = None
    grants: list[GrantModel] = []


class Created(BaseModel):
    principal: PrincipalInfo
    secret: str | None = None
    """The password or robot secret, shown only in this response (None if you chose it)."""


class PrincipalUpdate(BaseModel):
    disabled: bool


class SecretReset(BaseModel):
    password: str | None = Field(None, description="users only; omit to generate one")


class SecretIssued(BaseModel):
    name: str
    secret: str | None = None


class Deleted(BaseModel):
    name: str


def info(p: Principal) -> PrincipalInfo:
    return PrincipalInfo(
        name=p.name,
        kind=p.kind,
        disabled=p.disabled,
        expires_at=p.expires_at,
        description=p.description,
        created_at=p.created_at,
        created_by=p.created_by,
        grants=[GrantModel(namespace=g.namespace, role=g.role) for g in p.grants.grants],
    )


async def read_body(request: web.Request, model: type[Body]) -> Body:
    limit = registry_of(request).config.auth.max_body_bytes
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "Request body too large", f"at most {limit} bytes")
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(400, "Invalid request body", problems) from None


def _hasher(reg: Registry) -> Hasher:
    if reg.auth is not None:
        return reg.auth.hasher
    return Hasher(reg.config.auth.scrypt_log2_n, reg.config.auth.kdf_concurrency)


def _forget(reg: Registry, name: str) -> None:
    if reg.auth is not None:
        reg.auth.forget(name)


def _account_error(exc: Exception) -> ApiError:
    if isinstance(exc, NoSuchPrincipal):
        return ApiError(404, "No such principal", str(exc))
    if isinstance(exc, PrincipalExists):
        return ApiError(409, "Principal exists", str(exc))
    return ApiError(400, "Invalid request", str(exc))


async def _load(reg: Registry, name: str) -> Principal:
    found = await accounts.load(reg.pool, name)
    if found is None:
        raise ApiError(404, "No such principal", name[:100])
    return found


def _secret_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=model.model_dump_json().encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _pairs(grants: list[GrantModel]) -> tuple[tuple[str, str], ...]:
    return tuple((g.namespace, g.role) for g in grants)


@API.operation(
    "GET",
    "/api/v1/admin/principals",
    summary="Users, robots and the anonymous principal, with their grants",
    tag="admin",
    needs=ADMIN,
    response=PrincipalList,
)
async def list_principals(request: web.Request) -> PrincipalList:
    """Everyone who can be granted something. Secrets are never listed."""
    found = await accounts.load_all(registry_of(request).pool)
    return PrincipalList(principals=[info(p) for p in found])


@API.operation(
    "GET",
    "/api/v1/admin/principals/{name}",
    summary="One principal",
    tag="admin",
    needs=ADMIN,
    response=PrincipalInfo,
    params=(NAME_PARAM,),
    errors={404: "No such principal"},
)
async def get_principal(request: web.Request) -> PrincipalInfo:
    """A principal with its grants."""
    return info(await _load(registry_of(request), request.match_info["name"]))


@API.operation(
    "POST",
    "/api/v1/admin/users",
    summary="Create a user",
    tag="admin",
    needs=ADMIN,
    response=Created,
    body=NewUser,
    errors={409: "A principal with that name exists"},
)
async def create_user(request: web.Request) -> web.StreamResponse:
    """A person's account; a generated password is returned in this response only."""
    reg = registry_of(request)
    body = await read_body(request, NewUser)
    try:
        principal, secret = await accounts.create_user(
            reg.pool,
            _hasher(reg),
            body.name,
            body.password,
            grants=_pairs(body.grants),
            description=body.description,
        )
    except (AccountError, GrantError) as exc:
        raise _account_error(exc) from None
    _forget(reg, principal.name)
    return _secret_response(Created(principal=info(principal), secret=secret), 201)


@API.operation(
    "POST",
    "/api/v1/admin/robots",
    summary="Create a robot account for a build system",
    tag="admin",
    needs=ADMIN,
    response=Created,
    body=NewRobot,
    errors={409: "A principal with that name exists"},
)
async def create_robot(request: web.Request) -> web.StreamResponse:
    """Named `robot+<name>`; its secret is returned in this response only and stored
    only as a slow hash."""
    reg = registry_of(request)
    body = await read_body(request, NewRobot)
    try:
        principal, secret = await accounts.create_robot(
            reg.pool,
            _hasher(reg),
            body.name,
            grants=_pairs(body.grants),
            description=body.description,
            expires_at=body.expires_at,
        )
    except (AccountError, GrantError) as exc:
        raise _account_error(exc) from None
    _forget(reg, principal.name)
    return _secret_response(Created(principal=info(principal), secret=secret), 201)


@API.operation(
    "DELETE",
    "/api/v1/admin/principals/{name}",
    summary="Delete a user or robot",
    tag="admin",
    needs=ADMIN,
    response=Deleted,
    params=(NAME_PARAM,),
    errors={404: "No such principal"},
)
async def delete_principal(request: web.Request) -> Deleted:
    """Its grants go with it; tokens it holds stop working."""
    reg = registry_of(request)
    name = request.match_info["name"]
    try:
        await accounts.remove(reg.pool, name)
    except AccountError as exc:
        raise _account_error(exc) from None
    _forget(reg, name)
    return Deleted(name=name)


@API.operation(
    "PATCH",
    "/api/v1/admin/principals/{name}",
    summary="Disable or enable a user or robot",
    tag="admin",
    needs=ADMIN,
    response=PrincipalInfo,
    params=(NAME_PARAM,),
    body=PrincipalUpdate,
    errors={404: "No such principal"},
)
async def update_principal(request: web.Request) -> PrincipalInfo:
    """A disabled principal cannot log in, and its tokens stop working."""
    reg = registry_of(request)
    name = request.match_info["name"]
    body = await read_body(request, PrincipalUpdate)
    try:
        await accounts.set_disabled(reg.pool, name, body.disabled)
    except AccountError as exc:
        raise _account_error(exc) from None
    _forget(reg, name)
    return info(await _load(reg, name))


@API.operation(
    "POST",
    "/api/v1/admin/principals/{name}/secret",
    summary="Set a new password or robot secret",
    tag="admin",
    needs=ADMIN,
    response=SecretIssued,
    params=(NAME_PARAM,),
    body=SecretReset,
    errors={404: "No such principal"},
)
async def reset_secret(request: web.Request) -> web.StreamResponse:
    """The old secret stops working (within `auth.principal_cache` seconds everywhere)."""
    reg = registry_of(request)
    name = request.match_info["name"]
    body = await read_body(request, SecretReset)
    try:
        secret = await accounts.reset_secret(reg.pool, _hasher(reg), name, body.password)
    except AccountError as exc:
        raise _account_error(exc) from None
    _forget(reg, name)
    return _secret_response(SecretIssued(name=name, secret=secret))


@API.operation(
    "POST",
    "/api/v1/admin/principals/{name}/grants",
    summary="Grant a role on a namespace",
    tag="admin",
    needs=ADMIN,
    response=PrincipalInfo,
    params=(NAME_PARAM,),
    body=GrantModel,
    errors={404: "No such principal"},
)
async def add_grant(request: web.Request) -> PrincipalInfo:
    """Granting `reader` to `anonymous` makes a namespace publicly pullable."""
    reg = registry_of(request)
    name = request.match_info["name"]
    body = await read_body(request, GrantModel)
    try:
        await accounts.add_grant(reg.pool, name, body.namespace, body.role)
    except (AccountError, GrantError) as exc:
        raise _account_error(exc) from None
    _forget(reg, name)
    return info(await _load(reg, name))


@API.operation(
    "DELETE",
    "/api/v1/admin/principals/{name}/grants",
    summary="Revoke a role on a namespace",
    tag="admin",
    needs=ADMIN,
    response=PrincipalInfo,
    params=(
        NAME_PARAM,
        Param("namespace", "query", "the namespace of the grant", required=True),
        Param("role", "query", "the role of the grant", required=True),
    ),
    errors={404: "No such principal or grant"},
)
async def remove_grant(request: web.Request) -> PrincipalInfo:
    """Takes effect at once in this worker, within `auth.principal_cache` seconds in others."""
    reg = registry_of(request)
    name = request.match_info["name"]
    namespace, role = request.query.get("namespace"), request.query.get("role")
    if not namespace or not role:
        raise ApiError(400, "Invalid request", "namespace and role are required")
    try:
        removed = await accounts.remove_grant(reg.pool, name, namespace, role)
    except (AccountError, GrantError) as exc:
        raise _account_error(exc) from None
    if not removed:
        raise ApiError(404, "No such grant", f"{name} has no {role} on {namespace}")
    _forget(reg, name)
    return info(await _load(reg, name))

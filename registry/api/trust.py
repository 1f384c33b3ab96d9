"""`/api/v1/admin/trust-policy`: which trust policy is in force, and reloading it.

A reload reads the configured file, refuses it (422, nothing changes) when it is not a
valid policy, and otherwise tells every worker of every service on this database to read
it again (NOTIFY); each then judges again the images whose policy changed. `zoll serve`
does the same for its own workers on SIGHUP.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, Field

from attest.trust_policy import TrustPolicyError
from registry import audit
from registry.api.router import API, ApiError
from registry.http.access import registry_wide
from registry.http.state import registry_of
from registry.logs import get_logger
from registry.pipeline.services import services_of
from registry.pipeline.trust import RELOAD_CHANNEL, PolicyInForce, load_policy

ADMIN = registry_wide("admin")
log = get_logger("zoll.pipeline")


class TrustPolicyInForce(BaseModel):
    path: str | None = Field(None, description="the configured file (attest.trust_policy)")
    sha256: str = Field(description="of the file; `none` without one")
    policies: dict[str, str] = Field(description="policy name → digest of what it says")


class TrustPolicyReload(TrustPolicyInForce):
    previous: str = Field(description="sha256 of the file in force before")
    changed: bool = Field(description="whether any policy changed (its images are judged again)")


def _described(policy: PolicyInForce) -> TrustPolicyInForce:
    path = None if policy.path is None else str(policy.path)
    return TrustPolicyInForce(path=path, sha256=policy.sha256, policies=dict(policy.parts))


@API.operation(
    "GET",
    "/api/v1/admin/trust-policy",
    summary="The trust policy in force in the worker that answers",
    tag="admin",
    needs=ADMIN,
    response=TrustPolicyInForce,
)
async def trust_policy(request: web.Request) -> TrustPolicyInForce:
    """The digest of the policy file this worker judges with, and of each policy in it."""
    return _described(services_of(request).trust_policy)


@API.operation(
    "POST",
    "/api/v1/admin/trust-policy/reload",
    summary="Read the trust policy file again, in every worker",
    tag="admin",
    needs=ADMIN,
    response=TrustPolicyReload,
    errors={422: "The file is not a valid trust policy (the one in force stays)"},
)
async def reload_trust_policy(request: web.Request) -> TrustPolicyReload:
    """Checks the file here first: a broken one is refused with the reason and changes
    nothing. Otherwise every worker of every service on this database reads it again
    (the answer comes before they all have) and judges again the images whose policy
    changed — what applies to their repository, or what it says."""
    services = services_of(request)
    before = services.trust_policy
    try:
        after = await asyncio.to_thread(load_policy, services.config.attest.trust_policy)
    except (TrustPolicyError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("trust policy not reloaded", error=reason, sha256=before.sha256)
        raise ApiError(422, "Invalid trust policy", reason) from None
    pool = registry_of(request).pool
    await audit.record_now(
        pool,
        "trust_policy.reload",
        detail={"sha256": after.sha256, "previous": before.sha256},
    )
    if services.config.pipeline.enabled:  # every worker's runner listens, this one's too
        await pool.execute("SELECT pg_notify($1, 'trust-policy')", RELOAD_CHANNEL)
    else:  # no runner, no verification to redo: this worker takes it
        services.trust_policy = after
    changed = (before.sha256, before.parts) != (after.sha256, after.parts)
    return TrustPolicyReload(
        **_described(after).model_dump(), previous=before.sha256, changed=changed
    )

"""The trust policies Zoll verified against, by the digest its VSAs name, so an auditor can
check that digest and see every key and layout that was trusted (attest.policy_document)."""

from __future__ import annotations

from aiohttp import web

from registry.api.router import API, ApiError, Param
from registry.http.access import registry_wide
from registry.http.state import registry_of

DIGEST = Param(
    "digest",
    "path",
    "sha256:<hex> as in a VSA's policy",
    {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
)


@API.operation(
    "GET",
    "/api/v1/trust-policies/{digest}",
    route="/api/v1/trust-policies/{digest:sha256:[0-9a-f]{64}}",
    summary="A trust policy document that was in force, by its digest",
    tag="pipeline",
    needs=registry_wide("audit"),
    response=None,
    params=(DIGEST,),
    errors={404: "Zoll never used a trust policy with that digest"},
)
async def trust_policy_document(request: web.Request) -> web.Response:
    """The document's exact bytes (their SHA-256 is the digest): the policy file and every
    file it refers to, each base64 with its own SHA-256. Every policy Zoll was started
    with stays retrievable."""
    digest = request.match_info["digest"]
    found = await registry_of(request).pool.fetchval(
        "SELECT document FROM trust_policy_documents WHERE sha256 = $1",
        digest.removeprefix("sha256:"),
    )
    if found is None:
        raise ApiError(404, "No such trust policy", digest)
    return web.Response(body=bytes(found), content_type="application/json")

"""Listings: tags of a repository, the catalog, and referrers of a manifest.

Each is a page of `n` (default and at most 1000) after `last`, with a `Link` header to
the next page, read in index order: a page costs the same however large the registry.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web

from registry.db import manifests as manifest_rows
from registry.db import repositories
from registry.http.access import registry_wide, repository, requires
from registry.http.state import registry_of
from registry.http.v2.common import next_link, page_args, parse_digest, repo_name
from registry.oci import mediatypes as mt
from registry.oci.errors import ErrorCode, RegistryError


@requires(repository("pull"))
async def list_tags(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    n, last = page_args(request)
    tags = await manifest_rows.tag_page(reg.pool, name, last, n + 1)
    if tags is None:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name})
    headers = {}
    if n and len(tags) > n:
        tags = tags[:n]
        headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    return web.json_response({"name": name, "tags": tags[:n]}, headers=headers)


@requires(registry_wide("catalog"))
async def catalog(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    n, last = page_args(request)
    names = await repositories.page(reg.pool, last, n + 1)
    headers = {}
    if n and len(names) > n:
        names = names[:n]
        headers["Link"] = next_link("/v2/_catalog", n, names[-1])
    return web.json_response({"repositories": names[:n]}, headers=headers)


@requires(repository("pull"))
async def referrers(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    subject = parse_digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType")
    n, last = page_args(request)
    found = await manifest_rows.referrer_page(reg.pool, name, subject, artifact_type, last, n + 1)
    headers = {"Content-Type": mt.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if n and len(found) > n:
        found = found[:n]
        query = {"n": n, "last": found[-1]["digest"]}
        if artifact_type is not None:
            query["artifactType"] = artifact_type
        headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    found = found[:n]
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    return web.Response(body=json.dumps(body).encode(), headers=headers)

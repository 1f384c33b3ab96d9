"""Manifests: `/v2/<name>/manifests/<tag|digest>` (HEAD, GET, PUT, DELETE)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from registry.auth.caller import caller_of
from registry.auth.middleware import late_refusal
from registry.content import store_manifest
from registry.db import manifests as manifest_rows
from registry.http.access import Access, repository, requires
from registry.http.state import registry_of, request_id
from registry.http.v2.attestations import attestation_problem
from registry.http.v2.common import head_response, manifest_location, parse_digest, repo_name
from registry.mirror import pullthrough
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest, is_digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.manifest import Manifest, ManifestError, parse_manifest
from registry.oci.names import is_valid_tag
from registry.pipeline.jobs import JobQueue
from registry.pipeline.services import services_of
from registry.pipeline.stages import cancel_deleted


def _accepted(request: web.Request) -> set[str] | None:
    """Media types the client accepts, or None when it accepts anything."""
    values = request.headers.getall("Accept", [])
    types = {mt.base(part) for value in values for part in value.split(",") if part.strip()}
    if not types or "*/*" in types:
        return None
    return types


def _reference(request: web.Request) -> tuple[str, bool]:
    """(reference, is_digest) with syntax checked."""
    reference = request.match_info["reference"]
    if is_digest(reference):
        return str(parse_digest(reference)), True
    if not is_valid_tag(reference):
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"tag": reference[:200]})
    return reference, False


def _not_acceptable(stored: manifest_rows.StoredManifest, accepted: set[str]) -> bool:
    return (
        stored.media_type not in accepted
        and not (
            # Docker and OCI image manifests are interchangeable for every client we know.
            stored.media_type in mt.IMAGE_MANIFESTS and accepted & mt.IMAGE_MANIFESTS
        )
        and not (stored.media_type in mt.INDEXES and accepted & mt.INDEXES)
    )


async def _load(request: web.Request) -> manifest_rows.StoredManifest:
    reg = registry_of(request)
    name = repo_name(request)
    reference, by_digest = _reference(request)
    stored = await manifest_rows.get(reg.pool, name, reference, by_digest=by_digest)
    rule = reg.config.pull_through_rule(name)
    if rule is not None:
        svc = services_of(request)
        if stored is None:
            fetched = await pullthrough.fetch(svc, rule, name, reference)
        elif not by_digest and pullthrough.due(rule, name, reference):
            fetched = await pullthrough.revalidate(svc, rule, name, reference, stored.digest)
        else:
            fetched = False
        if fetched:
            stored = await manifest_rows.get(reg.pool, name, reference, by_digest=by_digest)
    if stored is None:
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
    _admission_gate(request, name, stored)
    accepted = _accepted(request)
    if not by_digest and accepted is not None and _not_acceptable(stored, accepted):
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"manifest is {stored.media_type}, which the Accept header does not allow",
            status=404,
        )
    return stored


def _admission_gate(request: web.Request, name: str, stored: manifest_rows.StoredManifest) -> None:
    """In an `enforce` namespace only admitted images (and artifacts about them) are served
    — except to the build systems that put them there: callers whose grants let them
    push or attest in the repository read quarantined manifests too, to learn a digest
    and to sign it (docs/auth.md, "What a build system may read")."""
    if registry_of(request).config.namespace(name).admission != "enforce":
        return
    if stored.state in ("admitted", "exempt"):
        return
    caller = caller_of(request)
    if caller is not None and any(
        caller.may(Access("repository", name, action)) for action in ("push", "attest")
    ):
        return
    reasons = stored.reasons or ["the image has not been evaluated yet"]
    raise RegistryError(
        ErrorCode.DENIED,
        f"{name}@{stored.digest} is {stored.state or 'not evaluated'}: {reasons[0]}",
        detail={"digest": str(stored.digest), "state": stored.state, "reasons": reasons},
    )


def _headers(stored: manifest_rows.StoredManifest) -> dict[str, str]:
    return {
        "Content-Type": stored.media_type,
        "Docker-Content-Digest": str(stored.digest),
        "ETag": f'"{stored.digest}"',
    }


@requires(repository("pull"))
async def get_manifest(request: web.Request) -> web.StreamResponse:
    stored = await _load(request)
    headers = _headers(stored)
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        return await head_response(request, headers, len(stored.content))
    return web.Response(status=200, body=stored.content, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise RegistryError(
            ErrorCode.MANIFEST_INVALID, f"manifest is larger than {limit} bytes", status=413
        )
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise RegistryError(
                ErrorCode.MANIFEST_INVALID, f"manifest is larger than {limit} bytes", status=413
            )
    return bytes(buf)


async def _attester_refusal(
    request: web.Request, name: str, manifest: Manifest, tags: list[str]
) -> web.StreamResponse | None:
    """Callers who may only attest push attestation material (docs/auth.md)."""
    caller = caller_of(request)
    if caller is None or caller.can(Access("repository", name, "push")):
        return None
    problem = await attestation_problem(registry_of(request).pool, name, manifest, tags)
    if problem is None:
        return None
    denied = RegistryError(
        ErrorCode.DENIED,
        f"this manifest needs push; attest allows only attestation material: {problem}",
        [{"Type": "repository", "Name": name, "Action": "push"}],
    )
    return late_refusal(request, Access("repository", name, "push"), denied)


@requires(repository("attest"))
async def put_manifest(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    name = repo_name(request)
    reference = request.match_info["reference"]
    tags = request.query.getall("tag", [])
    expected: Digest | None = None
    if is_digest(reference):
        expected = parse_digest(reference)
    else:
        tags = [reference, *tags]
    for tag in tags:
        if not is_valid_tag(tag):
            raise RegistryError(ErrorCode.TAG_INVALID, detail={"tag": tag[:200]})
    raw = await _read_limited(request, reg.config.http.max_manifest_bytes)
    try:
        manifest = parse_manifest(raw, request.headers.get("Content-Type"))
    except ManifestError as exc:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, str(exc)) from exc
    if expected is not None:
        if expected.algorithm != manifest.digest.algorithm:
            manifest = dataclasses.replace(manifest, digest=Digest.of(raw, expected.algorithm))
        if manifest.digest != expected:
            raise RegistryError(
                ErrorCode.DIGEST_INVALID,
                detail={"expected": str(expected), "received": str(manifest.digest)},
            )
    refusal = await _attester_refusal(request, name, manifest, tags)
    if refusal is not None:
        return refusal
    await store_manifest(reg, name, manifest, tags, request_id=request_id(request))
    headers = {
        "Location": manifest_location(name, manifest.digest),
        "Docker-Content-Digest": str(manifest.digest),
    }
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    return web.Response(status=201, headers=headers)


@requires(repository("delete"))
async def delete_manifest(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    if not reg.config.delete_enabled:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled", status=405)
    name = repo_name(request)
    reference, by_digest = _reference(request)
    rid = request_id(request)
    if by_digest:
        try:
            found = await manifest_rows.delete(reg.pool, name, Digest.parse(reference), rid)
            if found:  # its queued pipeline stages end now, not when they come due
                await cancel_deleted(JobQueue(reg.pool), name, reference)
        except manifest_rows.ManifestInUse as exc:
            raise RegistryError(
                ErrorCode.DENIED,
                "manifest is referenced by an index; delete the index first",
                detail={"indexes": exc.parents},
                status=409,
            ) from exc
    else:
        found = await manifest_rows.delete_tag(reg.pool, name, reference, rid)
    if not found:
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, detail={"reference": reference})
    return web.Response(status=202)

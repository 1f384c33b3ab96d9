"""Every endpoint × every role × anonymous: the exact status.

The table below is the authorisation contract. Rows are endpoints (each prepared so that
an allowed caller gets the endpoint's success status), columns are callers: no
credentials, one principal per role on the namespace `opendesk`, a monitor on `*`, a
reader of another namespace ("stranger") and an admin on `*` ("root"). Each principal
runs the whole table twice: with Basic credentials on every request, and the way OCI
clients do it — unauthenticated first, then a token for the challenge's scope from
/token, then the request again with that token.

A second test checks that callers who cannot see `opendesk` get byte-identical answers
for an existing repository and one that does not exist.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from registry.http.app import build_app
from registry.oci import mediatypes as mt
from registry.pipeline.runner import PipelineRunner
from tests.auth.conftest import Accounts, basic
from tests.support.oci import Image, push_blob, push_image, sha256
from tests.support.pipeline import drain
from tests.support.servers import LiveRegistry

CALLERS = (
    "none",
    "reader",
    "pusher",
    "attester",
    "auditor",
    "nsadmin",
    "monitor",
    "stranger",
    "root",
)
GRANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "reader": (("opendesk", "reader"),),
    "pusher": (("opendesk", "pusher"),),
    "attester": (("opendesk", "attester"),),
    "auditor": (("opendesk", "auditor"),),
    "nsadmin": (("opendesk", "admin"),),
    "monitor": (("*", "monitor"),),
    "stranger": (("other", "reader"),),
    "root": (("*", "admin"),),
}
REPO = "opendesk/app"
GHOST = "opendesk/ghost"


@dataclass
class Req:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """What the setup pushed, and a root session to prepare each request."""

    url: str
    root: aiohttp.ClientSession
    image: Image
    other_blob: str
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    async def upload_id(self, repo: str) -> str:
        async with self.root.post(f"{self.url}/v2/{REPO}/blobs/uploads/") as r:
            assert r.status == 202, await r.text()
            location = r.headers["Location"]
        return location.rsplit("/", 1)[1].replace(REPO, repo)

    async def victim(self) -> str:
        name = self.unique("victim")
        async with self.root.post(
            f"{self.url}/api/v1/admin/users",
            json={"name": name, "grants": [{"namespace": "x", "role": "reader"}]},
        ) as r:
            assert r.status == 201, await r.text()
        return name


Make = Callable[[World, str], Awaitable[Req]]


def simple(method: str, template: str, **kw: Any) -> Make:
    async def make(w: World, repo: str) -> Req:
        digest = w.image.digest
        layer = sha256(w.image.layers[0])
        return Req(method, template.format(repo=repo, digest=digest, layer=layer), **kw)

    return make


async def _put_manifest(w: World, repo: str) -> Req:
    return Req(
        "PUT",
        f"/v2/{repo}/manifests/v2",
        w.image.manifest(),
        {"Content-Type": w.image.media_type},
    )


async def _blob(w: World, data: bytes, media_type: str) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": await push_blob(w.root, w.url, REPO, data),
        "size": len(data),
    }


async def _cosign_manifest(w: World, layer: bytes, layer_type: str) -> bytes:
    """A manifest the way cosign writes `.sig`/`.att`: image config, signature layers."""
    config = json.dumps({"rootfs": {"type": "layers"}, "nonce": w.unique("n")}).encode()
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": await _blob(w, config, mt.OCI_CONFIG),
        "layers": [await _blob(w, layer, layer_type)],
    }
    return json.dumps(body).encode()


def _cosign_put(suffix: str, *, known: bool = True) -> Make:
    async def make(w: World, repo: str) -> Req:
        digest = w.image.digest if known else sha256(w.unique("nothing").encode())
        tag = digest.replace(":", "-") + suffix
        raw = await _cosign_manifest(w, w.unique("payload").encode(), mt.COSIGN_SIMPLESIGNING)
        return Req("PUT", f"/v2/{repo}/manifests/{tag}", raw, {"Content-Type": mt.OCI_MANIFEST})

    return make


def _referrer_put(tag: str | None = None) -> Make:
    """An OCI 1.1 referrer (a sigstore bundle about the image), by digest or under `tag`."""

    async def make(w: World, repo: str) -> Req:
        body = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": await _blob(w, b"{}", mt.OCI_EMPTY),
            "layers": [await _blob(w, w.unique("bundle").encode(), "application/json")],
            "subject": w.image.descriptor(),
        }
        raw = json.dumps(body).encode()
        return Req(
            "PUT",
            f"/v2/{repo}/manifests/{tag or sha256(raw)}",
            raw,
            {"Content-Type": mt.OCI_MANIFEST},
        )

    return make


async def _image_as_signature(w: World, repo: str) -> Req:
    """A runnable image under a `.sig` tag is still an image, not attestation material."""
    image = Image.random(layers=1, size=64)
    for blob in (image.config, *image.layers):
        await push_blob(w.root, w.url, REPO, blob)
    tag = w.image.digest.replace(":", "-") + ".sig"
    return Req(
        "PUT", f"/v2/{repo}/manifests/{tag}", image.manifest(), {"Content-Type": image.media_type}
    )


async def _image_with_subject(w: World, repo: str) -> Req:
    """A runnable image with a `subject` is still an image."""
    image = Image.random(layers=1, size=64, subject=w.image.descriptor())
    for blob in (image.config, *image.layers):
        await push_blob(w.root, w.url, REPO, blob)
    return Req(
        "PUT",
        f"/v2/{repo}/manifests/{image.digest}",
        image.manifest(),
        {"Content-Type": image.media_type},
    )


async def _delete_tag(w: World, repo: str) -> Req:
    tag = w.unique("del-")
    async with w.root.put(
        f"{w.url}/v2/{REPO}/manifests/{tag}",
        data=w.image.manifest(),
        headers={"Content-Type": w.image.media_type},
    ) as r:
        assert r.status == 201
    return Req("DELETE", f"/v2/{repo}/manifests/{tag}")


async def _delete_manifest(w: World, repo: str) -> Req:
    image = Image.random(layers=1, size=64)
    await push_image(w.root, w.url, REPO, image, w.unique("gone-"))
    return Req("DELETE", f"/v2/{repo}/manifests/{image.digest}")


async def _delete_blob(w: World, repo: str) -> Req:
    digest = await push_blob(w.root, w.url, REPO, w.unique("blob-").encode())
    return Req("DELETE", f"/v2/{repo}/blobs/{digest}")


async def _mount_same(w: World, repo: str) -> Req:
    target = repo + "-copy"
    layer = sha256(w.image.layers[0])
    return Req("POST", f"/v2/{target}/blobs/uploads/?mount={layer}&from={repo}")


async def _mount_other(w: World, repo: str) -> Req:
    return Req("POST", f"/v2/{repo}/blobs/uploads?mount={w.other_blob}&from=other/app")


async def _upload_status(w: World, repo: str) -> Req:
    return Req("GET", f"/v2/{repo}/blobs/uploads/{await w.upload_id(repo)}")


async def _upload_patch(w: World, repo: str) -> Req:
    return Req("PATCH", f"/v2/{repo}/blobs/uploads/{await w.upload_id(repo)}", b"chunk")


async def _upload_put(w: World, repo: str) -> Req:
    data = w.unique("finished-").encode()
    upload = await w.upload_id(repo)
    return Req("PUT", f"/v2/{repo}/blobs/uploads/{upload}?digest={sha256(data)}", data)


async def _upload_cancel(w: World, repo: str) -> Req:
    return Req("DELETE", f"/v2/{repo}/blobs/uploads/{await w.upload_id(repo)}")


async def _new_user(w: World, _repo: str) -> Req:
    body = {"name": w.unique("newuser"), "password": "a-long-password-1"}
    return Req("POST", "/api/v1/admin/users", json.dumps(body).encode())


async def _new_robot(w: World, _repo: str) -> Req:
    body = {"name": w.unique("bot"), "grants": [{"namespace": "opendesk", "role": "pusher"}]}
    return Req("POST", "/api/v1/admin/robots", json.dumps(body).encode())


async def _disable(w: World, _repo: str) -> Req:
    body = json.dumps({"disabled": True}).encode()
    return Req("PATCH", f"/api/v1/admin/principals/{await w.victim()}", body)


async def _remove(w: World, _repo: str) -> Req:
    return Req("DELETE", f"/api/v1/admin/principals/{await w.victim()}")


async def _reset(w: World, _repo: str) -> Req:
    return Req("POST", f"/api/v1/admin/principals/{await w.victim()}/secret", b"{}")


async def _grant(w: World, _repo: str) -> Req:
    body = json.dumps({"namespace": "opendesk", "role": "reader"}).encode()
    return Req("POST", f"/api/v1/admin/principals/{await w.victim()}/grants", body)


async def _revoke(w: World, _repo: str) -> Req:
    victim = await w.victim()
    return Req("DELETE", f"/api/v1/admin/principals/{victim}/grants?namespace=x&role=reader")


async def _checkpoint_at(w: World, _repo: str) -> Req:
    async with w.root.get(f"{w.url}/api/v1/log/checkpoint") as r:
        size = (await r.text()).splitlines()[1]
    return Req("GET", f"/api/v1/log/checkpoint/{size}")


def _mirror_set(name: str) -> bytes:
    entry = {"name": "app", "source": "oci:/nowhere", "target": "opendesk/app", "tags": ["1"]}
    return json.dumps({"version": 1, "name": name, "mirrors": [entry]}).encode()


async def _apply_set(w: World, _repo: str) -> Req:
    return Req("POST", "/api/v1/mirror/sets", _mirror_set(w.unique("set")))


async def _set_progress(w: World, _repo: str) -> Req:
    name = w.unique("set")
    async with w.root.post(f"{w.url}/api/v1/mirror/sets", data=_mirror_set(name)) as r:
        assert r.status == 200, await r.text()
    return Req("GET", f"/api/v1/mirror/sets/{name}/progress")


PULL = (401, 200, 200, 200, 200, 200, 404, 404, 200)
PUSH = (401, 403, 201, 403, 403, 201, 404, 404, 201)
ATTEST = (401, 403, 201, 201, 403, 201, 404, 404, 201)
"""Attestation material: pushers and attesters."""
DELETE = (401, 403, 403, 403, 403, 202, 404, 404, 202)
CATALOG = (401, 403, 403, 403, 403, 403, 403, 403, 200)
AUDIT = (401, 403, 403, 403, 200, 200, 403, 403, 200)
ADMIN = (401, 403, 403, 403, 403, 403, 403, 403, 200)
CREATE = (401, 403, 403, 403, 403, 403, 403, 403, 201)
OPEN = (200,) * 9
UNKNOWN = (401, 404, 404, 404, 404, 404, 404, 404, 404)
UNKNOWN_ADMIN = (401, 403, 403, 403, 403, 403, 403, 403, 404)
"""Allowed callers see 404 too: there is no result for the image (no trust policy here)."""


def _unknown_log_checkpoint() -> bytes:
    from attest.keys import PrivateKey
    from attest.tlog.checkpoint import Checkpoint, sign_checkpoint
    from attest.tlog.hashing import EMPTY_ROOT

    signed = sign_checkpoint(Checkpoint("nobody.test/log", 0, EMPTY_ROOT), PrivateKey.generate())
    return b"old 0\n\n" + signed.to_text().encode()


_UNKNOWN_LOG_CHECKPOINT = _unknown_log_checkpoint()


def upload(status: int) -> tuple[int, ...]:
    """Blob uploads: attesters push the blobs of their signatures and attestations."""
    return (401, 403, status, status, 403, status, 404, 404, status)


#  route (method + canonical path), how to make the request, expected status per caller:
#           none reader pusher attester auditor nsadmin monitor stranger root
MATRIX: list[tuple[str, Make, tuple[int, ...]]] = [
    ("GET /v2/", simple("GET", "/v2/"), (401, 200, 200, 200, 200, 200, 200, 200, 200)),
    ("GET /v2", simple("GET", "/v2"), (401, 200, 200, 200, 200, 200, 200, 200, 200)),
    ("GET /v2/_catalog", simple("GET", "/v2/_catalog"), CATALOG),
    ("GET /v2/{name}/tags/list", simple("GET", "/v2/{repo}/tags/list"), PULL),
    ("HEAD /v2/{name}/manifests/{reference}", simple("HEAD", "/v2/{repo}/manifests/v1"), PULL),
    ("GET /v2/{name}/manifests/{reference}", simple("GET", "/v2/{repo}/manifests/v1"), PULL),
    ("PUT /v2/{name}/manifests/{reference}", _put_manifest, PUSH),
    ("PUT /v2/{name}/manifests/{reference}", _cosign_put(".sig"), ATTEST),
    ("PUT /v2/{name}/manifests/{reference}", _cosign_put(".att"), ATTEST),
    ("PUT /v2/{name}/manifests/{reference}", _cosign_put(".sbom"), ATTEST),
    ("PUT /v2/{name}/manifests/{reference}", _cosign_put(".sig", known=False), PUSH),
    ("PUT /v2/{name}/manifests/{reference}", _referrer_put(), ATTEST),
    ("PUT /v2/{name}/manifests/{reference}", _referrer_put(tag="v9"), PUSH),
    ("PUT /v2/{name}/manifests/{reference}", _image_as_signature, PUSH),
    ("PUT /v2/{name}/manifests/{reference}", _image_with_subject, PUSH),
    ("DELETE /v2/{name}/manifests/{reference}", _delete_tag, DELETE),
    ("DELETE /v2/{name}/manifests/{reference}", _delete_manifest, DELETE),
    ("GET /v2/{name}/blobs/{digest}", simple("GET", "/v2/{repo}/blobs/{layer}"), PULL),
    ("HEAD /v2/{name}/blobs/{digest}", simple("HEAD", "/v2/{repo}/blobs/{layer}"), PULL),
    ("DELETE /v2/{name}/blobs/{digest}", _delete_blob, DELETE),
    ("POST /v2/{name}/blobs/uploads/", simple("POST", "/v2/{repo}/blobs/uploads/"), upload(202)),
    ("POST /v2/{name}/blobs/uploads/", _mount_same, upload(201)),
    # The caller may not pull other/app: the mount quietly becomes a plain upload (202).
    ("POST /v2/{name}/blobs/uploads", _mount_other, (401, 403, 202, 202, 403, 202, 404, 404, 201)),
    ("GET /v2/{name}/blobs/uploads/{upload}", _upload_status, upload(204)),
    ("PATCH /v2/{name}/blobs/uploads/{upload}", _upload_patch, upload(202)),
    ("PUT /v2/{name}/blobs/uploads/{upload}", _upload_put, upload(201)),
    ("DELETE /v2/{name}/blobs/uploads/{upload}", _upload_cancel, upload(204)),
    ("GET /v2/{name}/referrers/{digest}", simple("GET", "/v2/{repo}/referrers/{digest}"), PULL),
    ("GET /api/v1/repositories", simple("GET", "/api/v1/repositories"), CATALOG),
    (
        "GET /api/v1/repositories/{name}/images",
        simple("GET", "/api/v1/repositories/{repo}/images"),
        PULL,
    ),
    (
        "GET /api/v1/repositories/{name}/tag-history",
        simple("GET", "/api/v1/repositories/{repo}/tag-history"),
        PULL,
    ),
    ("GET /api/v1/images/{name}@{digest}", simple("GET", "/api/v1/images/{repo}@{digest}"), PULL),
    (
        "GET /api/v1/images/{name}@{digest}/status",
        simple("GET", "/api/v1/images/{repo}@{digest}/status"),
        PULL,
    ),
    (
        "GET /api/v1/images/{name}@{digest}/hardening",
        simple("GET", "/api/v1/images/{repo}@{digest}/hardening"),
        PULL,
    ),
    (
        "GET /api/v1/images/{name}@{digest}/sbom",
        simple("GET", "/api/v1/images/{repo}@{digest}/sbom"),
        PULL,
    ),
    (
        "GET /api/v1/images/{name}@{digest}/sbom/supplier",
        simple("GET", "/api/v1/images/{repo}@{digest}/sbom/supplier"),
        PULL,
    ),
    (
        "GET /api/v1/images/{name}@{digest}/verification",
        simple("GET", "/api/v1/images/{repo}@{digest}/verification"),
        UNKNOWN,
    ),
    (
        "GET /api/v1/images/{name}@{digest}/log",
        simple("GET", "/api/v1/images/{repo}@{digest}/log"),
        PULL,
    ),
    (
        "GET /api/v1/trust-policies/{digest}",
        simple("GET", f"/api/v1/trust-policies/sha256:{'0' * 64}"),
        (401, 403, 403, 403, 404, 404, 403, 403, 404),  # no trust policy here: allowed → 404
    ),
    (
        "GET /api/v1/images/{name}@{digest}/attestations",
        simple("GET", "/api/v1/images/{repo}@{digest}/attestations"),
        PULL,
    ),
    (
        "GET /api/v1/pipeline/jobs",
        simple("GET", "/api/v1/pipeline/jobs"),
        AUDIT,  # job counts only: no names or digests of other namespaces
    ),
    ("GET /api/v1/keys", simple("GET", "/api/v1/keys"), OPEN),
    ("GET /api/v1/log/checkpoint", simple("GET", "/api/v1/log/checkpoint"), OPEN),
    ("GET /api/v1/log/checkpoint/{size}", _checkpoint_at, OPEN),
    ("GET /api/v1/log/entries", simple("GET", "/api/v1/log/entries?limit=2"), OPEN),
    ("GET /api/v1/log/entries/{index}", simple("GET", "/api/v1/log/entries/0"), OPEN),
    ("GET /api/v1/log/proof/inclusion", simple("GET", "/api/v1/log/proof/inclusion?index=0"), OPEN),
    (
        "GET /api/v1/log/proof/inclusion/{index}",
        simple("GET", "/api/v1/log/proof/inclusion/0"),
        OPEN,
    ),
    (
        "GET /api/v1/log/proof/consistency",
        simple("GET", "/api/v1/log/proof/consistency?old=1"),
        OPEN,
    ),
    ("GET /api/v1/audit", simple("GET", "/api/v1/audit"), AUDIT),
    ("GET /api/v1/audit/head", simple("GET", "/api/v1/audit/head"), AUDIT),
    ("GET /api/v1/admin/principals", simple("GET", "/api/v1/admin/principals"), ADMIN),
    (
        "GET /api/v1/admin/principals/{name}",
        simple("GET", "/api/v1/admin/principals/root"),
        ADMIN,
    ),
    ("POST /api/v1/admin/users", _new_user, CREATE),
    ("POST /api/v1/admin/robots", _new_robot, CREATE),
    ("PATCH /api/v1/admin/principals/{name}", _disable, ADMIN),
    ("DELETE /api/v1/admin/principals/{name}", _remove, ADMIN),
    ("POST /api/v1/admin/principals/{name}/secret", _reset, ADMIN),
    ("POST /api/v1/admin/principals/{name}/grants", _grant, ADMIN),
    ("DELETE /api/v1/admin/principals/{name}/grants", _revoke, ADMIN),
    ("GET /api/v1/admin/trust-policy", simple("GET", "/api/v1/admin/trust-policy"), ADMIN),
    (
        "POST /api/v1/admin/trust-policy/reload",
        simple("POST", "/api/v1/admin/trust-policy/reload"),
        ADMIN,
    ),
    ("POST /api/v1/mirror/sets", _apply_set, ADMIN),
    ("GET /api/v1/mirror/sets", simple("GET", "/api/v1/mirror/sets"), ADMIN),  # + root auditor
    ("GET /api/v1/mirror/sets/{name}/progress", _set_progress, ADMIN),
    ("GET /api/v1/openapi.json", simple("GET", "/api/v1/openapi.json"), OPEN),
    ("GET /api/v1/node", simple("GET", "/api/v1/node"), OPEN),
    ("GET /api/v1/peers", simple("GET", "/api/v1/peers"), ADMIN),  # + root auditor
    # Pinning needs a peer to fetch a card from: nobody may try but root (502: no peer).
    (
        "POST /api/v1/peers",
        simple("POST", "/api/v1/peers", body=b'{"url": "http://127.0.0.1:9/", "insecure": true}'),
        (401, 403, 403, 403, 403, 403, 403, 403, 502),
    ),
    ("DELETE /api/v1/peers/{name}", simple("DELETE", "/api/v1/peers/nobody"), UNKNOWN_ADMIN),
    ("GET /api/v1/federation/forks", simple("GET", "/api/v1/federation/forks"), OPEN),
    ("GET /api/v1/federation/tags", simple("GET", "/api/v1/federation/tags"), ADMIN),
    # The witness is public (the checkpoint's signature is its authentication); an
    # unknown log is 404 for everyone, as c2sp.org/tlog-witness says.
    (
        "POST /witness/add-checkpoint",
        simple("POST", "/witness/add-checkpoint", body=_UNKNOWN_LOG_CHECKPOINT),
        (404,) * 9,
    ),
    # Public, like the log API; in this world nothing was published yet (no witness round).
    ("GET /tlog/{path}", simple("GET", "/tlog/checkpoint"), (404,) * 9),
    ("GET /token", simple("GET", "/token?service=zoll"), OPEN),
    ("POST /token", simple("POST", "/token", body=b"grant_type=refresh_token"), (400,) * 9),
    ("GET /healthz", simple("GET", "/healthz"), OPEN),
    ("GET /readyz", simple("GET", "/readyz"), OPEN),
    ("GET /metrics", simple("GET", "/metrics"), (401, 403, 403, 403, 403, 403, 200, 403, 200)),
]

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


async def send(
    http: aiohttp.ClientSession,
    base: str,
    req: Req,
    auth: str | None,
    mode: str,
) -> tuple[int, bytes, dict[str, str]]:
    """One request as a caller: Basic on every request, or the bearer token dance."""
    headers = dict(req.headers)
    if mode == "basic" and auth:
        headers["Authorization"] = auth
    async with http.request(req.method, base + req.path, data=req.body, headers=headers) as r:
        body = await r.read()
        status, challenge = r.status, r.headers.get("WWW-Authenticate", "")
        answer = (status, body, dict(r.headers))
    if mode == "basic" or status != 401 or not challenge.startswith("Bearer "):
        return answer
    params = dict(_CHALLENGE.findall(challenge))
    query = {"service": params["service"]}
    if "scope" in params:
        query["scope"] = params["scope"]
    token_headers = {"Authorization": auth} if auth else {}
    async with http.get(params["realm"], params=query, headers=token_headers) as t:
        assert t.status == 200, await t.text()
        token = (await t.json())["token"]
    headers["Authorization"] = f"Bearer {token}"
    async with http.request(req.method, base + req.path, data=req.body, headers=headers) as r:
        return r.status, await r.read(), dict(r.headers)


@pytest.fixture
async def world(secured: LiveRegistry, people: Accounts) -> World:
    for name, grants in GRANTS.items():
        await people.user(name, *grants)
    root = people.session("root")
    image = Image.random(layers=2, size=512)
    await push_image(root, secured.url, REPO, image, "v1")
    await push_image(root, secured.url, "other/app", image, "v1")
    other_blob = await push_blob(root, secured.url, "other/app", b"only in other/app")
    # Run the pipeline so the image has its reports, attestations and log entries.
    await drain(PipelineRunner(secured.services))
    return World(secured.url, root, image, other_blob)


def test_matrix_covers_every_route(secured: LiveRegistry) -> None:
    routes = {
        f"{route.method} {route.resource.canonical}"
        for route in build_app(secured.registry).router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # Web pages and badges have a matrix of their own (tests/ui/test_access.py).
        and not route.resource.canonical.startswith(("/ui", "/badges/"))
        and route.resource.canonical != "/"
    }
    covered = {key for key, _, _ in MATRIX}
    missing = sorted(routes - covered)
    assert missing == [], f"add these routes to the matrix: {missing}"


@pytest.mark.parametrize("mode", ["basic", "bearer"])
async def test_every_endpoint_every_role(
    world: World, people: Accounts, http: aiohttp.ClientSession, mode: str
) -> None:
    wrong: list[str] = []
    try:
        for key, make, expected in MATRIX:
            for caller, status in zip(CALLERS, expected, strict=True):
                if caller == "none" and mode == "bearer":
                    continue  # the anonymous token dance has its own test
                req = await make(world, REPO)
                auth = None if caller == "none" else basic(caller, people.passwords[caller])
                got, body, _ = await send(http, world.url, req, auth, mode)
                if got != status:
                    wrong.append(
                        f"{key} {req.path} as {caller}: {got}, expected {status}: {body[:200]!r}"
                    )
    finally:
        await world.root.close()
    assert wrong == []


async def test_hidden_repositories_answer_like_missing_ones(
    world: World, people: Accounts, http: aiohttp.ClientSession
) -> None:
    """Callers who cannot pull from `opendesk` learn nothing about what exists there."""
    differences = []
    try:
        for caller in ("none", "monitor", "stranger"):
            auth = None if caller == "none" else basic(caller, people.passwords[caller])
            for key, make, _ in MATRIX:
                if not key.split(" ", 1)[1].startswith(
                    ("/v2/{name}", "/api/v1/repositories/{", "/api/v1/images")
                ):
                    continue
                existing = await send(http, world.url, await make(world, REPO), auth, "bearer")
                missing = await send(http, world.url, await make(world, GHOST), auth, "bearer")
                normalised = [
                    (
                        status,
                        body.replace(b"ghost", b"app"),
                        headers.get("WWW-Authenticate", "").replace("ghost", "app"),
                    )
                    for status, body, headers in (existing, missing)
                ]
                if normalised[0] != normalised[1]:
                    differences.append(f"{key} as {caller}: {normalised}")
                assert existing[0] in (401, 404), f"{key} as {caller}: {existing[0]}"
    finally:
        await world.root.close()
    assert differences == []

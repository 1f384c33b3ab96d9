"""The aiohttp application: middleware and routes.

Repository names contain slashes, so routes match the name greedily and the resource
keyword (`blobs`, `manifests`, `tags`, `referrers`) at the end decides the handler.
Upload routes come before blob routes so `uploads` is never read as a digest.
"""

from __future__ import annotations

from aiohttp import web

from registry.api import admin as _admin  # noqa: F401  (registers operations)
from registry.api import audit as _audit  # noqa: F401
from registry.api import image_log as _image_log  # noqa: F401
from registry.api import images as _images  # noqa: F401
from registry.api import mirror as _mirror_api  # noqa: F401
from registry.api import pipeline as _pipeline_api  # noqa: F401
from registry.api import repositories as _repositories  # noqa: F401
from registry.api import transparency as _transparency  # noqa: F401
from registry.api import trust as _trust  # noqa: F401
from registry.api import trust_policies as _trust_policies  # noqa: F401
from registry.api.federation import install_witness
from registry.api.router import API
from registry.api.spec import openapi_json
from registry.auth import endpoint as token_endpoint
from registry.auth.denials import denial_flusher
from registry.auth.middleware import authorize
from registry.federation import replicate as _replicate  # noqa: F401  (registers its job)
from registry.federation.tiles import install as install_tiles
from registry.http import ops
from registry.http.errors import error_middleware
from registry.http.middleware import request_context
from registry.http.state import REGISTRY, Registry
from registry.http.v2 import base, blobs, listings, manifests, uploads
from registry.mirror import jobs as _mirror_jobs  # noqa: F401  (registers mirror jobs)
from registry.pipeline import runner as _pipeline  # noqa: F401  (registers the push hook)
from registry.pipeline.services import SERVICES, PipelineServices
from registry.ui import install as install_pages
from registry.ui import page_errors

NAME = "{name:[^{}]+?}"


def build_app(registry: Registry, services: PipelineServices | None = None) -> web.Application:
    app = web.Application(
        middlewares=[request_context, error_middleware, page_errors, authorize],
        client_max_size=registry.config.http.max_manifest_bytes + 1,
        handler_args={"max_field_size": 16384},
    )
    app[REGISTRY] = registry
    if registry.auth is not None:
        app.cleanup_ctx.append(denial_flusher(registry.auth.denials))
    if services is not None:
        app[SERVICES] = services
    r = app.router
    r.add_get("/v2/", base.version_check)
    r.add_get("/v2", base.version_check)
    r.add_get("/v2/_catalog", listings.catalog)
    r.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    r.add_post(f"/v2/{NAME}/blobs/uploads", uploads.start_upload)
    upload = f"/v2/{NAME}/blobs/uploads/{{upload}}"
    r.add_get(upload, uploads.upload_status, allow_head=False)
    r.add_patch(upload, uploads.upload_chunk)
    r.add_put(upload, uploads.finish_upload)
    r.add_delete(upload, uploads.cancel_upload)
    blob = f"/v2/{NAME}/blobs/{{digest}}"
    r.add_head(blob, blobs.head_blob)
    r.add_get(blob, blobs.get_blob, allow_head=False)
    r.add_delete(blob, blobs.delete_blob)
    manifest = f"/v2/{NAME}/manifests/{{reference}}"
    r.add_get(manifest, manifests.get_manifest)  # HEAD shares the handler
    r.add_put(manifest, manifests.put_manifest)
    r.add_delete(manifest, manifests.delete_manifest)
    r.add_get(f"/v2/{NAME}/tags/list", listings.list_tags)
    r.add_get(f"/v2/{NAME}/referrers/{{digest}}", listings.referrers)
    r.add_get("/token", token_endpoint.token_get)
    r.add_post("/token", token_endpoint.token_post)
    r.add_get("/api/v1/openapi.json", openapi_json)
    API.install(app)
    install_witness(app)
    install_tiles(app)
    r.add_get("/healthz", ops.healthz)
    r.add_get("/readyz", ops.readyz)
    r.add_get("/metrics", ops.metrics)
    install_pages(app)  # /ui/ and /badges/ (docs/ui.md)
    return app

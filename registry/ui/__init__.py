"""Web pages and badges: people see why an image is trusted, in a browser.

Server-rendered pages under `/ui/` (Jinja2 templates, plain CSS, a little JavaScript where
it earns its place: the in-browser verifier, the SBOM filter, live mirror progress) and
badges under `/badges/`. Every page declares its needs like an API route and is
authorised by the same middleware with the same grants; the caller of a page is the
login session's principal (registry.auth.sessions). See docs/ui.md.
"""

from __future__ import annotations

from aiohttp import web

from registry.http.access import PUBLIC, requires
from registry.ui import badges, catalogue, image, log, login, operations
from registry.ui.pages import page_errors, static

__all__ = ["install", "page_errors"]

NAME = "{name:[^{}@]+?}"
IMAGE = "{name:[^{}@]+}@{digest:[^/{}]+}"


async def _to_catalogue(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


def install(app: web.Application) -> None:
    """Add the pages and badges to the application (its middlewares must include
    `page_errors` before authorisation)."""
    r = app.router
    r.add_get("/", requires(PUBLIC)(_to_catalogue))
    r.add_get("/ui", requires(PUBLIC)(_to_catalogue))
    r.add_get("/ui/static/{file}", requires(PUBLIC)(static))
    r.add_get("/ui/", catalogue.home)
    r.add_get("/ui/search", catalogue.search)
    r.add_get("/ui/n/{ns}", catalogue.namespace)
    r.add_get(f"/ui/r/{IMAGE}/attestations.json", image.attestations_json)
    r.add_get(f"/ui/r/{IMAGE}", image.image_page)
    r.add_get(f"/ui/r/{NAME}", catalogue.repository_page)
    r.add_get("/ui/log", log.log_page)
    r.add_get("/ui/log/entries/{index:\\d+}", log.entry_page)
    r.add_get("/ui/mirror", operations.mirror_page)
    r.add_get("/ui/mirror/{name}/progress.json", operations.mirror_progress_json)
    r.add_get("/ui/audit", operations.audit_page)
    r.add_get("/ui/people", operations.people_page)
    r.add_post("/ui/people/public", operations.set_public)
    r.add_get("/ui/login", login.login_form)
    r.add_post("/ui/login", login.login)
    r.add_post("/ui/logout", login.logout)
    r.add_get(f"/badges/{NAME}/{{ref:[^/{{}}]+}}/{{kind:[a-z]+}}.{{ext:svg|json}}", badges.badge)

"""The catalogue: namespaces → repositories → images with their state, and search.

Everything listed is filtered to what the viewer may pull (public namespaces for a
visitor who is not signed in); a repository page needs pull like the API's listing.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from registry.api.repositories import path_name
from registry.http.access import PUBLIC, repository
from registry.http.state import registry_of
from registry.oci.names import is_valid_name
from registry.pipeline import catalogue
from registry.ui.pages import page, readable, render

PAGE = 50


def _link(path: str, **query: str) -> str:
    return f"{path}?{urlencode(query)}"


@page(PUBLIC)
async def home(request: web.Request) -> web.StreamResponse:
    """Namespaces the viewer may read."""
    after = request.query.get("after", "")[:256]
    rows = await catalogue.namespaces(registry_of(request).pool, readable(request), after, PAGE + 1)
    more = rows[PAGE - 1].name if len(rows) > PAGE else None
    return await render(
        request,
        "catalogue.html",
        title="Catalogue",
        namespaces=rows[:PAGE],
        next_url=_link("/ui/", after=more) if more else None,
    )


@page(PUBLIC)
async def namespace(request: web.Request) -> web.StreamResponse:
    """The repositories of one namespace, with their images by state."""
    name = request.match_info["ns"]
    if not is_valid_name(name) or "/" in name:
        raise web.HTTPNotFound()
    after = request.query.get("after", "")[:256]
    rows = await catalogue.repositories(
        registry_of(request).pool, name, readable(request), after, PAGE + 1
    )
    if not rows and not after:
        raise web.HTTPNotFound()  # no such namespace, or nothing in it the viewer may read
    more = rows[PAGE - 1].name if len(rows) > PAGE else None
    return await render(
        request,
        "namespace.html",
        title=name,
        namespace=name,
        repositories=rows[:PAGE],
        states=catalogue.STATES,
        next_url=_link(f"/ui/n/{name}", after=more) if more else None,
    )


@page(repository("pull"))
async def repository_page(request: web.Request) -> web.StreamResponse:
    """A repository's images, newest first, optionally in one state."""
    name = path_name(request)
    state = request.query.get("state")
    if state not in catalogue.STATES:
        state = None
    cursor = catalogue.parse_image_cursor(request.query.get("before"))
    rows = await catalogue.images(registry_of(request).pool, name, state, cursor, PAGE + 1)
    more = catalogue.image_cursor(rows[PAGE - 1]) if len(rows) > PAGE else None
    query = {"state": state} if state else {}
    return await render(
        request,
        "repository.html",
        title=name,
        name=name,
        namespace=name.split("/", 1)[0],
        images=rows[:PAGE],
        state=state,
        states=catalogue.STATES,
        next_url=_link(f"/ui/r/{name}", **query, before=more) if more else None,
    )


@page(PUBLIC)
async def search(request: web.Request) -> web.StreamResponse:
    """Images by digest, vulnerability id or package; repositories by name."""
    raw = request.query.get("q", "").strip()
    pool = registry_of(request).pool
    visible = readable(request)
    repositories: list[str] = []
    found: list[catalogue.ImageRow] = []
    next_url = None
    query = catalogue.Search.of(raw) if raw else None
    if query is not None:
        after_id, _, after_digest = request.query.get("after", "0|").partition("|")
        after = (int(after_id) if after_id.isdigit() else 0, after_digest)
        rows = await catalogue.search(pool, query, visible, after, PAGE + 1)
        found = [row for _, row in rows[:PAGE]]
        if len(rows) > PAGE:
            rid, last = rows[PAGE - 1]
            next_url = _link("/ui/search", q=raw, after=catalogue.search_cursor(last, rid))
        if query.by == "package" and not request.query.get("after"):
            repositories = await catalogue.repositories_named(pool, raw, visible, PAGE)
    return await render(
        request,
        "search.html",
        title=f"Search: {raw}" if raw else "Search",
        q=raw,
        by=query.by if query else None,
        term=query.text if query else "",
        repositories=repositories,
        images=found,
        next_url=next_url,
    )

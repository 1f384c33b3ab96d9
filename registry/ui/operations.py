"""Pages for operators and auditors: mirror sets with live progress, the audit log, and
who may do what (people, robots, grants; which namespaces are public).

They reuse the API's handlers, so they answer the same to the same people: mirror sets
and the audit log need `audit` (auditors of some namespaces see their events only, and
no mirror sets), the people view `admin` on `*`.
"""

from __future__ import annotations

from aiohttp import web

from registry.api import admin as admin_api
from registry.api import audit as audit_api
from registry.api import mirror as mirror_api
from registry.api.router import ApiError
from registry.auth import accounts
from registry.auth.accounts import ANONYMOUS, AccountError
from registry.auth.roles import GrantError
from registry.http.access import registry_wide
from registry.http.state import registry_of
from registry.mirror import progress
from registry.mirror.store import applied_at, load_set
from registry.ui.pages import check_csrf, page, render

AUDIT = registry_wide("audit")
ADMIN = registry_wide("admin")


@page(AUDIT)
async def mirror_page(request: web.Request) -> web.StreamResponse:
    """Every mirror set: its entries, the images they brought with their state, the
    failures; the page follows the progress of each set live."""
    overview = await mirror_api.mirror_status(request)
    pool = registry_of(request).pool
    sets = []
    for set_name in sorted({e.set_name for e in overview.entries}):
        since = await applied_at(pool, set_name)
        report = await progress.set_report(pool, await load_set(pool, set_name))
        sets.append(
            {
                "name": set_name,
                "applied_at": since,
                "pending": report["wanted"] - report["ended"],
                "done": report["ended"],
                "entries": [e for e in overview.entries if e.set_name == set_name],
                "images": report["images"],
                "failed": report["failed"],
            }
        )
    return await render(request, "mirror.html", title="Mirror sets", sets=sets, jobs=overview.jobs)


@page(AUDIT)
async def mirror_progress_json(request: web.Request) -> web.StreamResponse:
    """The API's progress long poll (`?wait=`), for the page's script."""
    result = await mirror_api.mirror_progress(request)
    return web.Response(
        body=result.model_dump_json().encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@page(AUDIT)
async def audit_page(request: web.Request) -> web.StreamResponse:
    """The audit log with the API's filters; events of the viewer's namespaces only."""
    found = await audit_api.list_events(request)
    query = {k: v for k, v in request.query.items() if k != "before"}
    older = None
    if found.next is not None:
        older = str(request.rel_url.with_query({**query, "before": str(found.next)}))
    return await render(
        request,
        "audit.html",
        title="Audit log",
        page=found,
        filters={k: request.query.get(k, "") for k in ("actor", "action", "repository")},
        older=older,
    )


@page(ADMIN)
async def people_page(request: web.Request) -> web.StreamResponse:
    listed = await admin_api.list_principals(request)
    anonymous = next((p for p in listed.principals if p.name == ANONYMOUS), None)
    public = sorted(
        g.namespace for g in (anonymous.grants if anonymous else []) if g.role == "reader"
    )
    return await render(
        request,
        "people.html",
        title="People and grants",
        users=[p for p in listed.principals if p.kind == "user"],
        robots=[p for p in listed.principals if p.kind == "robot"],
        public=public,
        message=request.query.get("done", ""),
    )


@page(ADMIN)
async def set_public(request: web.Request) -> web.StreamResponse:
    """Make a namespace publicly readable, or private again: the `reader` grant of the
    `anonymous` principal, as `zoll users grant anonymous reader NS` does (audited)."""
    form = await check_csrf(request)
    reg = registry_of(request)
    namespace = str(form.get("namespace", "")).strip()
    public = form.get("public") == "yes"
    try:
        if public:
            await accounts.add_grant(reg.pool, ANONYMOUS, namespace, "reader")
        else:
            await accounts.remove_grant(reg.pool, ANONYMOUS, namespace, "reader")
    except (AccountError, GrantError) as exc:
        raise ApiError(400, "Invalid namespace", str(exc)) from None
    if reg.auth is not None:
        reg.auth.forget(ANONYMOUS)
    done = f"{namespace} is {'public' if public else 'private'} now"
    raise web.HTTPSeeOther(str(request.rel_url.with_path("/ui/people").with_query(done=done)))

"""Logging in and out of the web pages with the same accounts as the API and `docker login`.

The password is checked by the same code as Basic credentials (so failed logins back off
and are audited the same way); a success starts a session (registry.auth.sessions).
"""

from __future__ import annotations

from aiohttp import web

from registry.auth import sessions
from registry.auth.ratelimit import RateLimited
from registry.auth.service import LoginFailed, source_of
from registry.http.access import PUBLIC
from registry.http.state import registry_of
from registry.ui.pages import check_csrf, page, render, signed_in


def _next(raw: object) -> str:
    """Only a page of this site may follow a login (no open redirect)."""
    target = raw if isinstance(raw, str) else ""
    if sessions.is_page(target.split("?", 1)[0]) and not target.startswith("//"):
        return target
    return "/ui/"


@page(PUBLIC)
async def login_form(request: web.Request) -> web.StreamResponse:
    if signed_in(request):
        raise web.HTTPSeeOther(_next(request.query.get("next")))
    return await render(
        request,
        "login.html",
        title="Log in",
        next=_next(request.query.get("next")),
        error=None,
        username="",
    )


@page(PUBLIC)
async def login(request: web.Request) -> web.StreamResponse:
    reg = registry_of(request)
    form = await check_csrf(request)
    target = _next(form.get("next"))
    if reg.auth is None:
        raise web.HTTPSeeOther(target)
    name = str(form.get("username", ""))[:128]
    password = str(form.get("password", ""))
    try:
        principal = await reg.auth.check_password(name, password, source_of(request))
    except (LoginFailed, RateLimited) as exc:
        message = (
            f"Too many failed logins: try again in {exc.retry_after} seconds."
            if isinstance(exc, RateLimited)
            else "Wrong user name or password."
        )
        return await render(
            request,
            "login.html",
            status=429 if isinstance(exc, RateLimited) else 401,
            title="Log in",
            next=target,
            error=message,
            username=name,
        )
    token, _ = await sessions.start(
        reg.pool,
        principal.id,
        principal.secret_version,
        reg.config.auth.session_ttl,
        source_of(request),
    )
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        sessions.SESSION_COOKIE,
        token,
        path="/",
        max_age=int(reg.config.auth.session_ttl),
        httponly=True,
        samesite="Lax",
        secure=sessions.secure_cookies(request, reg.config.http.public_url),
    )
    response.del_cookie(sessions.LOGIN_CSRF_COOKIE, path="/ui/")
    raise response


@page(PUBLIC)
async def logout(request: web.Request) -> web.StreamResponse:
    if request.get(sessions.SESSION) is not None:  # a live session: only its own forms
        await check_csrf(request)
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token:
        await sessions.end(registry_of(request).pool, token)
    response = web.HTTPSeeOther("/ui/")
    response.del_cookie(sessions.SESSION_COOKIE, path="/")
    raise response

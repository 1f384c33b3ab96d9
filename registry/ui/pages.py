"""What every page shares: the templates, who is looking, CSRF tokens, error pages.

A page declares what it needs like any route (`page(needs)` = `requires(needs)`), so the
authorisation middleware decides with the caller's grants exactly as for the API; the
caller of a page is the session cookie's principal (registry.auth.sessions). Handlers
reuse the /api/v1 handlers and queries, and turn their problem documents into pages.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from registry.api.router import ApiError
from registry.auth.caller import Caller, caller_of
from registry.auth.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION,
    is_page,
    same_token,
    secure_cookies,
)
from registry.db.pool import flush_commits
from registry.http.access import Access, Needs, requires
from registry.http.errors import Handler
from registry.http.state import registry_of, request_id

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
"""Pages run only their own scripts and styles (no inline code), and are never framed."""
_NEW_LOGIN_CSRF = web.RequestKey("zoll_login_csrf", str)


@cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("registry.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = short_digest
    env.filters["when"] = when
    env.filters["size"] = human_size
    env.globals["static"] = static_url
    return env


def short_digest(digest: str | None, length: int = 12) -> str:
    if not digest:
        return ""
    algo, _, value = digest.partition(":")
    return f"{algo}:{value[:length]}" if value else digest[:length]


def when(moment: datetime | str | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
        return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@cache
def _static_versions() -> dict[str, str]:
    folder = resources.files("registry.ui").joinpath("static")
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:12]
        for f in folder.iterdir()
        if f.is_file()
    }


def static_url(name: str) -> str:
    """The URL of a static file, with its content hash so browsers may cache it for good."""
    return f"/ui/static/{name}?v={_static_versions().get(name, '0')}"


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in _static_versions():
        raise web.HTTPNotFound()
    data = resources.files("registry.ui").joinpath("static", name).read_bytes()
    kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
    return web.Response(
        body=data,
        content_type=kind.get(name.rsplit(".", 1)[-1], "application/octet-stream"),
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=31536000, immutable", **SECURITY_HEADERS},
    )


def page(needs: Needs) -> Callable[[PageHandler], Handler]:
    """Declare a page's needs (as the API does) and turn API errors into error pages."""

    def wrap(fn: PageHandler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                return await fn(request)
            except ApiError as err:
                raise _http_error(err.status, err.detail or err.title) from None

        handler.__name__ = fn.__name__
        handler.__doc__ = fn.__doc__
        requires(needs)(handler)
        return handler

    return wrap


def _http_error(status: int, text: str) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        429: web.HTTPTooManyRequests,
    }
    return kinds.get(status, web.HTTPInternalServerError)(text=text)


def viewer(request: web.Request) -> Caller | None:
    """Who is looking (None: authentication is off, everything is visible)."""
    return caller_of(request)


def auth_enabled(request: web.Request) -> bool:
    return registry_of(request).auth is not None


def signed_in(request: web.Request) -> bool:
    caller = viewer(request)
    return caller is not None and caller.via != "none" and not caller.principal.is_anonymous


def may(request: web.Request, access: Access) -> bool:
    caller = viewer(request)
    return caller is None or caller.can(access)


def readable(request: web.Request) -> tuple[str, ...] | None:
    """The namespaces the viewer may pull from (None = all): what catalogues show."""
    caller = viewer(request)
    return None if caller is None else caller.grants.readable_namespaces()


def csrf_token(request: web.Request) -> str:
    """The token forms of this page carry: the session's, or (before login) the one in
    the login cookie, created on first use."""
    session = request.get(SESSION)
    if session is not None:
        return str(session.csrf)
    token = request.get(_NEW_LOGIN_CSRF)
    if token is not None:
        return str(token)
    made = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    request[_NEW_LOGIN_CSRF] = made
    return made


async def check_csrf(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """Read a posted form and refuse it (403) unless it carries this session's token."""
    form = await request.post()
    given = form.get("csrf")
    session = request.get(SESSION)
    expected = session.csrf if session is not None else request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not isinstance(given, str) or not same_token(expected, given):
        raise web.HTTPForbidden(text="The form has expired or did not come from this site.")
    return form


async def render(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    """A page from `template` with what the layout needs (who is signed in, menus)."""
    reg = registry_of(request)
    if reg.config.relaxed_pipeline:  # what auditors see is on disk, as the API promises
        await flush_commits(reg.pool)
    caller = viewer(request)
    body = (
        templates()
        .get_template(template)
        .render(
            request=request,
            user=caller.name if caller is not None and signed_in(request) else None,
            auth=auth_enabled(request),
            csrf=csrf_token(request),
            can_audit=may(request, Access("registry", "*", "audit")),
            can_admin=may(request, Access("registry", "*", "admin")),
            **context,
        )
    )
    response = web.Response(text=body, status=status, content_type="text/html")
    _remember_login_csrf(request, response)
    return response


def _remember_login_csrf(request: web.Request, response: web.StreamResponse) -> None:
    token = request.get(_NEW_LOGIN_CSRF)
    if token is not None and request.cookies.get(LOGIN_CSRF_COOKIE) != token:
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            token,
            path="/ui/",
            httponly=True,
            samesite="Strict",
            secure=secure_cookies(request, registry_of(request).config.http.public_url),
        )


@web.middleware
async def page_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals and errors of pages as pages (the API keeps its problem documents), and
    the security headers on every page."""
    if not is_page(request.path):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/badges/"):
            raise
        response = await _error_page(request, exc.status, exc.reason, exc.text or "")
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def _error_page(request: web.Request, status: int, reason: str, text: str) -> web.Response:
    default = f"{status}: {reason}"
    detail = "" if text.strip() == default else text
    if status == 404:
        detail = detail or "There is nothing here, or you may not see it."
    try:
        return await render(
            request,
            "error.html",
            status=status,
            title=reason,
            code=status,
            detail=detail,
            request_id=request_id(request),
        )
    except Exception:  # the layout itself failed: still answer in plain words
        return web.Response(text=f"{status} {reason}\n{detail}\n", status=status)

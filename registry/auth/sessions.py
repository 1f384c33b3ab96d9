"""Browser sessions for the web pages: a login with the same accounts, kept in a cookie.

The cookie (`zoll_session`: HttpOnly, SameSite=Lax, Secure behind TLS) holds 32 random
bytes; PostgreSQL keeps only their SHA-256 with the principal, the principal's secret
version (a password change ends its sessions, as it ends its tokens), the expiry and
the session's CSRF token. The cookie authenticates the web pages and badges only
(`is_page`): `/v2` and `/api/v1` never read it, so no other site can make a signed-in
browser change anything through the API.

A browser's request is then authorised exactly like an API request, by the same grants
and the same `decide()`; only the refusals look different (`page_refusal`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import asyncpg
from aiohttp import web

from registry.auth.decision import Verdict

SESSION_COOKIE = "zoll_session"
LOGIN_CSRF_COOKIE = "zoll_login_csrf"
PAGE_PREFIXES = ("/ui/", "/badges/")


def is_page(path: str) -> bool:
    """Web pages and badges: answered as HTML or SVG, authenticated by the cookie."""
    return path == "/ui" or path.startswith(PAGE_PREFIXES)


def is_badge(path: str) -> bool:
    return path.startswith("/badges/")


@dataclass(frozen=True)
class Session:
    principal: str
    principal_id: int
    secret_version: str
    csrf: str
    expires_at: datetime


SESSION = web.RequestKey("zoll_session", Session)
"""The session a page request came with, set by AuthService.caller."""


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def start(
    pool: asyncpg.Pool,
    principal_id: int,
    secret_version: str,
    lifetime: float,
    source: str | None,
) -> tuple[str, Session]:
    """A new session; returns the cookie value (shown once, stored only hashed)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    row = await pool.fetchrow(
        """WITH gone AS (DELETE FROM auth_sessions WHERE expires_at < now())
           INSERT INTO auth_sessions (token_hash, principal_id, secret_version, csrf,
                                      expires_at, source)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING (SELECT name FROM auth_principals WHERE id = $2) AS name""",
        _hash(token),
        principal_id,
        secret_version,
        csrf,
        expires,
        source,
    )
    assert row is not None
    return token, Session(row["name"], principal_id, secret_version, csrf, expires)


async def find(pool: asyncpg.Pool, token: str) -> Session | None:
    """The live session of a cookie value, or None (unknown, expired, principal gone)."""
    if not token or len(token) > 128:
        return None
    row = await pool.fetchrow(
        """SELECT p.name, s.principal_id, s.secret_version, s.csrf, s.expires_at
           FROM auth_sessions s JOIN auth_principals p ON p.id = s.principal_id
           WHERE s.token_hash = $1 AND s.expires_at > now()""",
        _hash(token),
    )
    if row is None:
        return None
    return Session(
        row["name"], row["principal_id"], row["secret_version"], row["csrf"], row["expires_at"]
    )


async def end(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute("DELETE FROM auth_sessions WHERE token_hash = $1", _hash(token))


def same_token(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def secure_cookies(request: web.BaseRequest, public_url: str | None) -> bool:
    """Cookies get `Secure` when the browser talks TLS: to this server, or to the proxy
    in front of it (`http.public_url` is https)."""
    return request.secure or (public_url or "").startswith("https://")


def page_refusal(request: web.BaseRequest, verdict: Verdict) -> web.HTTPException:
    """How a refused page request is answered: a visitor who is not signed in is sent to
    the login page; a repository the caller may not read is not found (as in the API,
    nothing about private names leaks); a badge the caller may not read is never
    served, and is not found either."""
    if is_badge(request.path):
        return web.HTTPNotFound()
    if verdict is Verdict.CHALLENGE:
        return web.HTTPSeeOther(f"/ui/login?next={quote(request.path_qs, safe='/')}")
    if verdict is Verdict.HIDE:
        return web.HTTPNotFound()
    return web.HTTPForbidden()

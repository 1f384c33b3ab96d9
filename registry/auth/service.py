"""Authentication for one worker process: credentials and tokens → a `Caller`.

Principals and their grants are cached for `auth.principal_cache` seconds (changes made
through this process take effect at once; other workers see them within that time).
A verified Basic credential is remembered for `auth.basic_cache` seconds under an HMAC of
name and password with a per-process key, so API clients using Basic auth pay the slow
hash once, not per request; changing the secret invalidates the entry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import NoReturn

import asyncpg
from aiohttp import web

from registry import audit
from registry.auth import accounts, keyshare, sessions
from registry.auth.accounts import ANONYMOUS, Principal
from registry.auth.caller import Caller
from registry.auth.denials import DenialLog
from registry.auth.keys import TokenKeyring
from registry.auth.passwords import Hasher
from registry.auth.ratelimit import BackOff, LoginThrottle
from registry.auth.roles import Grants
from registry.auth.tokens import TokenAuthority, TokenClaims, TokenError, UnknownKey
from registry.config import Config
from registry.logs import get_logger

log = get_logger("zoll.auth")
MAX_NAME = 128


class LoginFailed(Exception):
    """Wrong, unknown, disabled or expired credentials (the client learns no more)."""


class BadAuthorization(Exception):
    """An Authorization header that cannot be parsed, or a token that is not accepted."""

    def __init__(self, reason: str, *, token: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token = token


@dataclass
class _Cached:
    principal: Principal | None
    until: float


@dataclass
class _BasicHit:
    name: str
    secret_hash: str
    until: float


def source_of(request: web.BaseRequest) -> str:
    return request.remote or "unknown"


def parse_basic(header: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(header.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadAuthorization("malformed Basic credentials") from None
    name, sep, password = raw.partition(":")
    if not sep or not name:
        raise BadAuthorization("malformed Basic credentials")
    return name, password


class AuthService:
    """Everything authentication needs in one worker: keys, caches, limits."""

    def __init__(self, config: Config, pool: asyncpg.Pool, keyring: TokenKeyring) -> None:
        self.config = config.auth
        self.public_url = config.http.public_url
        self.pool = pool
        self.keyring = keyring
        self.tokens = TokenAuthority(
            keyring,
            issuer=self.config.issuer,
            service=self.config.service,
            ttl=self.config.token_ttl,
        )
        self.hasher = Hasher(self.config.scrypt_log2_n, self.config.kdf_concurrency)
        limits = self.config.limits
        self.throttle = LoginThrottle(
            pool,
            BackOff(
                limits.failed_logins, limits.lockout, limits.max_lockout, limits.failure_memory
            ),
        )
        self.denials = DenialLog(pool, self.config.denial_window, self.config.denial_events)
        self._principals: dict[str, _Cached] = {}
        self._bearers: dict[str, tuple[Caller, float]] = {}
        self._effective: dict[int, tuple[Principal, Principal | None, Grants]] = {}
        self._basic: dict[bytes, _BasicHit] = {}
        self._basic_key = secrets.token_bytes(32)

    # Principals ----------------------------------------------------------------

    async def principal(self, name: str) -> Principal | None:
        now = time.monotonic()
        hit = self._principals.get(name)
        if hit is not None and hit.until > now:
            return hit.principal
        found = await accounts.load(self.pool, name)
        if len(self._principals) > 10000:
            self._principals.clear()
        self._principals[name] = _Cached(found, now + self.config.principal_cache)
        return found

    def forget(self, name: str | None = None) -> None:
        """Drop cached principals (all of them, or one) after a change."""
        if name is None or name == ANONYMOUS:  # anonymous grants are part of everyone's
            self._principals.clear()
        else:
            self._principals.pop(name, None)
        self._bearers.clear()

    async def effective_grants(self, principal: Principal) -> Grants:
        """A principal may do what it was granted and what anonymous callers may."""
        if principal.is_anonymous:
            return principal.grants
        anonymous = await self.principal(ANONYMOUS)
        known = self._effective.get(principal.id)
        if known is not None and known[0] is principal and known[1] is anonymous:
            return known[2]  # same cached rows: same grants (and their memo)
        extra = anonymous.grants.grants if anonymous is not None else ()
        grants = Grants(principal.grants.grants + extra)
        if len(self._effective) > 10000:
            self._effective.clear()
        self._effective[principal.id] = (principal, anonymous, grants)
        return grants

    async def anonymous_caller(self) -> Caller:
        anonymous = await self.principal(ANONYMOUS)
        assert anonymous is not None, "migration 0300 creates the anonymous principal"
        return Caller(anonymous, anonymous.grants, "none")

    # Passwords -------------------------------------------------------------------

    def _basic_key_of(self, name: str, password: str) -> bytes:
        return hmac.new(self._basic_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    async def check_password(self, name: str, password: str, source: str) -> Principal:
        """The principal if the credentials are right; LoginFailed (audited) otherwise,
        RateLimited while the name or address has too many recent failures."""
        name = name[:MAX_NAME]
        key = self._basic_key_of(name, password)
        now = time.monotonic()
        principal = await self.principal(name)
        hit = self._basic.get(key)
        if (
            hit is not None
            and hit.until > now
            and principal is not None
            and principal.secret_hash == hit.secret_hash
            and principal.usable()
        ):
            return principal  # verified recently: no slow hash, and no guessing either
        await self.throttle.before_login(source, name)
        stored = principal.secret_hash if principal is not None else None
        if not await self.hasher.verify(password, stored):
            reason = "unknown principal" if principal is None else "wrong secret"
            await self._failed(name, source, reason)
        assert principal is not None and principal.secret_hash is not None
        if not principal.usable():
            await self._failed(name, source, "disabled" if principal.disabled else "expired")
        if len(self._basic) > 10000:
            self._basic.clear()
        self._basic[key] = _BasicHit(name, principal.secret_hash, now + self.config.basic_cache)
        return principal

    async def _failed(self, name: str, source: str, reason: str) -> NoReturn:
        await self.throttle.failed(source, name)
        log.warning("login failed", principal=name, source=source, reason=reason)
        await audit.record_now(self.pool, "login.failure", target=name, detail={"reason": reason})
        raise LoginFailed(reason)

    # Tokens ----------------------------------------------------------------------

    async def verify_token(self, token: str) -> TokenClaims:
        if self.keyring.stale():
            await self.reload_keys()
        try:
            return self.tokens.verify(token)
        except UnknownKey as unknown:
            # Issued by another instance of this database, or signed with a key another
            # worker of this one just made: both are published in the database.
            shared = await keyshare.lookup(self.pool, unknown.kid)
            if shared is not None:
                self.keyring.remember(shared)
            elif self.keyring.may_rescan_for_unknown_kid():
                await asyncio.to_thread(self.keyring.scan)
            else:
                raise
            return self.tokens.verify(token)

    async def signing_ready(self) -> None:
        """Rescan (and rotate by age) before signing if it is time."""
        if self.keyring.stale():
            await self.reload_keys()

    async def reload_keys(self) -> None:
        """Rescan the folder (rotating by age) and publish its public keys, so the other
        instances verify what this one signs before it signs anything with a new key."""
        await asyncio.to_thread(self.keyring.load)
        await keyshare.publish(self.pool, self.keyring)

    # Requests --------------------------------------------------------------------

    async def caller(self, request: web.Request) -> Caller:
        """Who sent `request`: anonymous without credentials; LoginFailed,
        BadAuthorization or RateLimited when what was sent is not accepted."""
        header = request.headers.get("Authorization")
        if not header:
            token = request.cookies.get(sessions.SESSION_COOKIE)
            if token and sessions.is_page(request.path):
                found = await self.session_caller(request, token)
                if found is not None:
                    return found
            return await self.anonymous_caller()
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            name, password = parse_basic(value)
            principal = await self.check_password(name, password, source_of(request))
            return Caller(principal, await self.effective_grants(principal), "basic")
        if scheme == "bearer":
            token = value.strip()
            known = self._bearers.get(token)
            if known is not None and known[1] > time.monotonic():
                return known[0]
            try:
                claims = await self.verify_token(token)
            except TokenError as exc:
                raise BadAuthorization(exc.reason, token=True) from None
            holder = await self.principal(claims.subject)
            if (
                holder is None
                or holder.id != claims.principal_id
                or holder.secret_version != claims.secret_version
                or (not holder.is_anonymous and not holder.usable())
            ):
                raise BadAuthorization(
                    "the token's principal is gone, disabled or has a new secret", token=True
                )
            caller = Caller(holder, await self.effective_grants(holder), "bearer", claims)
            # Reuse it while both the principal cache and the token are still valid.
            until = time.monotonic() + min(
                self.config.principal_cache, claims.expires_at - time.time()
            )
            if len(self._bearers) > 10000:
                self._bearers.clear()
            self._bearers[token] = (caller, until)
            return caller
        raise BadAuthorization(f"unsupported authorization scheme {scheme[:20]!r}")

    async def session_caller(self, request: web.Request, token: str) -> Caller | None:
        """The caller of a page request with a session cookie; None when the session is
        over (logged out, expired) or its principal was disabled or got a new secret."""
        session = await sessions.find(self.pool, token)
        if session is None:
            return None
        holder = await self.principal(session.principal)
        if (
            holder is None
            or holder.id != session.principal_id
            or holder.secret_version != session.secret_version
            or not holder.usable()
        ):
            return None
        request[sessions.SESSION] = session
        return Caller(holder, await self.effective_grants(holder), "session")

    def realm(self, request: web.Request) -> str:
        if self.config.realm:
            return self.config.realm
        if self.public_url:
            return self.public_url.rstrip("/") + "/token"
        return f"{request.scheme}://{request.host}/token"


async def open_auth(config: Config, pool: asyncpg.Pool) -> AuthService:
    """Load (or create) the signing keys, publish them, and build the service."""
    keyring = TokenKeyring(
        config.auth_keys_dir,
        config.auth.token_algorithm,
        config.auth.key_max_age,
        config.auth.token_ttl,
    )
    service = AuthService(config, pool, keyring)
    await service.reload_keys()
    return service

"""Registry authentication: Basic, and the Docker/OCI bearer-token flow.

A registry answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`. We ask
the realm for a token covering the scopes the operation needs — anonymously or with
Basic credentials (GET, as docker does), with an OAuth2 refresh token (POST, as docker
and containerd do), or with the OAuth2 password grant (POST, as containerd does, falling
back to GET when the token server does not implement it) — and cache it per scope set
until shortly before it expires. Once a host's challenge is known, later requests carry
a token from the start instead of paying a 401 round trip each.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from yarl import URL

from registry.oci.client import scopes as sc
from registry.oci.client.challenge import Challenge, preferred
from registry.oci.client.credentials import Credentials, RegistryConfig
from registry.oci.client.errors import TokenError
from registry.oci.client.scopes import Scope

DEFAULT_EXPIRES_IN: Final = 60
"""What the token spec says a token lives when the server does not say."""
CLIENT_ID: Final = "zoll"
MAX_TOKEN_RESPONSE: Final = 1 << 20
FALLBACK_TO_GET: Final = frozenset({400, 401, 404, 405})
"""Token servers without the OAuth2 POST answer these (GCR 404, Artifactory 401, ACR 400)."""


class TokenHttp(Protocol):
    """The one HTTP call the authenticator needs (the transport provides it, with retries)."""

    async def token_request(
        self,
        method: str,
        url: URL,
        *,
        headers: dict[str, str],
        form: dict[str, str] | None,
        insecure: bool,
    ) -> tuple[int, bytes]: ...


@dataclass(frozen=True, slots=True)
class TokenResponse:
    token: str
    expires_in: int
    refresh_token: str | None = None


def parse_token_response(body: bytes, realm: str) -> TokenResponse:
    """`token` or `access_token`, `expires_in` (default 60 s), optional `refresh_token`."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenError(f"token server {realm} answered with invalid JSON", realm=realm) from exc
    if not isinstance(document, dict):
        raise TokenError(f"token server {realm} answered with no object", realm=realm)
    token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError(f"token server {realm} answered without a token", realm=realm)
    expires_in = document.get("expires_in", DEFAULT_EXPIRES_IN)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    refresh = document.get("refresh_token")
    return TokenResponse(token, expires_in, refresh if isinstance(refresh, str) else None)


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    scopes: tuple[Scope, ...]
    expires_at: float


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _identity(creds: Credentials | None) -> str:
    if creds is None:
        return ""
    if creds.identity_token is not None:
        return f"refresh:{creds.username or ''}"
    return f"user:{creds.username or ''}"


class Authenticator:
    """Remembers each host's challenge and caches bearer tokens per realm, service,
    identity and scope set."""

    def __init__(self, http: TokenHttp, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, str], list[_Token]] = {}
        self._pending: dict[tuple[str, str, str, str], asyncio.Task[_Token]] = {}
        self.fetches = 0
        """Tokens fetched from token servers so far (for metrics and tests)."""

    def learn(self, host: str, challenges: Sequence[Challenge]) -> Challenge | None:
        """Remember the challenge to answer for `host`; None when none is supported."""
        chosen = preferred(challenges)
        if chosen is not None:
            self._challenges[host] = chosen
        return chosen

    def challenge(self, host: str) -> Challenge | None:
        return self._challenges.get(host)

    async def header(
        self,
        config: RegistryConfig,
        creds: Credentials | None,
        wanted: Sequence[Scope],
        *,
        refused: str | None = None,
    ) -> str | None:
        """The `Authorization` value for a request needing `wanted`, or None.

        `refused` is a header the registry just answered 401 to: its token is dropped so
        a fresh one is fetched.
        """
        if creds is not None and creds.registry_token is not None:
            return f"Bearer {creds.registry_token}"
        challenge = self._challenges.get(config.host)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_header(creds) if creds is not None and creds.has_password else None
        realm = challenge.realm
        if not realm:
            raise TokenError(f"{config.host} sent a Bearer challenge without a realm", realm="")
        if refused is not None:
            self._forget(realm, challenge.service or "", _identity(creds), refused)
        token = await self._token(config, creds, challenge, sc.merge(wanted))
        return f"Bearer {token.value}"

    def _forget(self, realm: str, service: str, identity: str, header: str) -> None:
        value = header.removeprefix("Bearer ")
        key = (realm, service, identity)
        self._tokens[key] = [t for t in self._tokens.get(key, []) if t.value != value]

    async def _token(
        self,
        config: RegistryConfig,
        creds: Credentials | None,
        challenge: Challenge,
        wanted: tuple[Scope, ...],
    ) -> _Token:
        realm, service, identity = challenge.realm or "", challenge.service or "", _identity(creds)
        key = (realm, service, identity)
        now = self._clock()
        for cached in self._tokens.get(key, []):
            if cached.expires_at > now and sc.covers(cached.scopes, wanted):
                return cached
        pending_key = (*key, " ".join(str(s) for s in wanted))
        task = self._pending.get(pending_key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(config, creds, challenge, wanted))
            self._pending[pending_key] = task
            task.add_done_callback(lambda _t: self._pending.pop(pending_key, None))
        token = await asyncio.shield(task)
        live = [t for t in self._tokens.get(key, []) if t.expires_at > self._clock()]
        if token not in live:
            live.append(token)
        self._tokens[key] = live
        return token

    async def _fetch(
        self,
        config: RegistryConfig,
        creds: Credentials | None,
        challenge: Challenge,
        wanted: tuple[Scope, ...],
    ) -> _Token:
        realm = challenge.realm or ""
        url = URL(realm)
        if url.scheme not in ("https", "http") or not url.host:
            raise TokenError(f"token realm {realm!r} is not an HTTP(S) URL", realm=realm)
        if url.scheme == "http" and not config.insecure:
            raise TokenError(
                f"refusing to ask the plain-HTTP token realm {realm} of {config.host} "
                "(mark the registry insecure to allow it)",
                realm=realm,
            )
        started = self._clock()
        response = await self._exchange(config, creds, challenge, wanted, url)
        self.fetches += 1
        margin = min(30.0, response.expires_in * 0.1)
        return _Token(response.token, wanted, started + response.expires_in - margin)

    async def _exchange(
        self,
        config: RegistryConfig,
        creds: Credentials | None,
        challenge: Challenge,
        wanted: tuple[Scope, ...],
        url: URL,
    ) -> TokenResponse:
        service = challenge.service
        scope_text = " ".join(str(s) for s in wanted)
        if creds is not None and creds.identity_token is not None:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
            return await self._post(config, url, service, scope_text, form, fallback=None)
        if creds is not None and creds.has_password and config.password_grant:
            assert creds.username is not None and creds.password is not None
            form = {
                "grant_type": "password",
                "username": creds.username,
                "password": creds.password,
            }
            get = self._get(config, url, service, wanted, creds)
            return await self._post(config, url, service, scope_text, form, fallback=get)
        return await self._get(config, url, service, wanted, creds)()

    async def _post(
        self,
        config: RegistryConfig,
        url: URL,
        service: str | None,
        scope_text: str,
        form: dict[str, str],
        fallback: Callable[[], Awaitable[TokenResponse]] | None,
    ) -> TokenResponse:
        body = {**form, "client_id": CLIENT_ID}
        if service:
            body["service"] = service
        if scope_text:
            body["scope"] = scope_text
        status, raw = await self._http.token_request(
            "POST",
            url,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            form=body,
            insecure=config.insecure,
        )
        if fallback is not None and status in FALLBACK_TO_GET:
            return await fallback()
        return self._check(str(url), status, raw)

    def _get(
        self,
        config: RegistryConfig,
        url: URL,
        service: str | None,
        wanted: tuple[Scope, ...],
        creds: Credentials | None,
    ) -> Callable[[], Awaitable[TokenResponse]]:
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        query.extend(("scope", str(s)) for s in wanted)
        headers: dict[str, str] = {}
        if creds is not None and creds.has_password:
            assert creds.username is not None
            query.append(("account", creds.username))
            headers["Authorization"] = basic_header(creds)
        target = url.extend_query(query)

        async def run() -> TokenResponse:
            status, raw = await self._http.token_request(
                "GET", target, headers=headers, form=None, insecure=config.insecure
            )
            return self._check(str(url), status, raw)

        return run

    @staticmethod
    def _check(realm: str, status: int, raw: bytes) -> TokenResponse:
        if status in (401, 403):
            raise TokenError(
                f"token server {realm} refused the credentials (HTTP {status})",
                realm=realm,
                status=status,
            )
        if status != 200:
            raise TokenError(
                f"token server {realm} answered HTTP {status}", realm=realm, status=status
            )
        return parse_token_response(raw, realm)

"""One HTTP exchange with a registry: scheme, authentication, retries, bounded reads.

Every request of the client goes through `Transport.request`, so the rules hold
everywhere: credentials only go to the registry's own origin; a 401 is answered once
with the challenge's scheme; 429/5xx and broken connections are retried with backoff
when that is safe (the request is idempotent and its body can be sent again, or the
failure proves the registry never processed it: a refused connection, a 429); bodies
are read with a size limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, NoReturn

import aiohttp
from yarl import URL

from registry.oci.client import scopes as sc
from registry.oci.client.auth import MAX_TOKEN_RESPONSE, Authenticator
from registry.oci.client.challenge import parse_challenges
from registry.oci.client.credentials import (
    Credentials,
    CredentialStore,
    RegistryConfig,
    canonical_host,
)
from registry.oci.client.errors import (
    AccessDenied,
    AuthenticationError,
    NotFoundError,
    RegistryResponseError,
    RemoteError,
    SizeExceeded,
    TransportError,
    UnavailableError,
    UnknownHost,
)
from registry.oci.client.retry import RETRY_STATUSES, RetryPolicy, parse_retry_after
from registry.oci.client.scopes import Scope
from registry.oci.manifest import MAX_MANIFEST_BYTES
from registry.oci.reference import DOCKER_HUB, DOCKER_HUB_API

# Plain stdlib logging: the shared vocabulary depends on nothing of the service; the
# service routes these records (with their `extra` fields) through its own renderer.
log = logging.getLogger("registry.oci.client")

USER_AGENT: Final = "zoll-oci-client/1"
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
Body = bytes | AsyncIterable[bytes] | None
"""Bytes can be sent again on a retry; a stream only once."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and timeouts that keep memory and waiting bounded."""

    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    max_error_bytes: int = 64 * 1024
    max_list_bytes: int = 16 * 1024 * 1024
    """One page of tags, catalog or referrers."""
    max_pages: int = 10_000
    read_chunk: int = 1024 * 1024
    upload_chunk: int = 16 * 1024 * 1024
    """Chunk size of a chunked blob upload (the registry's minimum wins if larger)."""
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    """Longest silence while reading a response before the connection counts as dropped."""
    connections: int = 64
    connections_per_host: int = 16


def api_host(host: str) -> str:
    """The host serving a registry's API (Docker Hub's API is not at docker.io)."""
    return DOCKER_HUB_API if canonical_host(host) == DOCKER_HUB else host.lower()


class Directory:
    """Per-host configuration and credentials: explicit configs win over auth files."""

    def __init__(
        self, configs: Iterable[RegistryConfig] = (), credentials: CredentialStore | None = None
    ) -> None:
        self._configs = {canonical_host(c.host): c for c in configs}
        self._store = credentials or CredentialStore()

    def _find(self, host: str) -> RegistryConfig | None:
        """`host:port` first, then the bare host (a config for `127.0.0.1` covers every
        port, as an insecure-registry entry for a machine usually means)."""
        key = canonical_host(host)
        found = self._configs.get(key)
        if found is None and ":" in key:
            found = self._configs.get(key.rsplit(":", 1)[0])
        return found

    def config(self, host: str) -> RegistryConfig:
        found = self._find(host)
        if found is None:
            return RegistryConfig(api_host(host))
        if found.host != api_host(host):
            return RegistryConfig(
                api_host(host),
                found.credentials,
                found.insecure,
                found.ca_file,
                found.password_grant,
            )
        return found

    def credentials(self, host: str, repository: str | None) -> Credentials | None:
        found = self._configs.get(canonical_host(host))  # secrets: exact host:port only
        if found is not None and found.credentials is not None:
            return found.credentials
        return self._store.find(host, repository)


async def read_limited(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body, refusing more than `limit` bytes (announced or actually sent)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise SizeExceeded(what, limit, resp.content_length)
    buf = bytearray()
    while True:
        chunk = await resp.content.read(min(1 << 20, limit + 1 - len(buf)) or 1)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise SizeExceeded(what, limit)


def _error_entries(body: bytes) -> tuple[RemoteError, ...]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ()
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return ()
    out = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            message = entry.get("message")
            out.append(
                RemoteError(
                    entry["code"], message if isinstance(message, str) else "", entry.get("detail")
                )
            )
    return tuple(out)


async def raise_for_response(
    resp: aiohttp.ClientResponse, method: str, note: str | None = None, *, attempts: int = 1
) -> NoReturn:
    """Raise the typed error for a non-success response, with the registry's error codes."""
    try:
        body = await resp.content.read(64 * 1024)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    errors = _error_entries(body)
    url = str(resp.url)
    status = resp.status
    if status == 401:
        challenge = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
        reason = next((c.params.get("error_description") or c.error for c in challenge), None)
        if reason is None and not errors:
            schemes = ", ".join(sorted({c.scheme for c in challenge})) or "no scheme offered"
            reason = f"authentication required ({schemes})"
        raise AuthenticationError(method, url, status, errors, reason or note)
    if status == 403:
        raise AccessDenied(method, url, status, errors, note)
    if status == 404:
        raise NotFoundError(method, url, status, errors, note)
    if status in RETRY_STATUSES:
        raise UnavailableError(method, url, status, errors, note, attempts=attempts)
    raise RegistryResponseError(method, url, status, errors, note)


class Transport:
    """Owns the HTTP session (created lazily inside the running event loop)."""

    def __init__(
        self,
        directory: Directory,
        *,
        retry: RetryPolicy,
        limits: Limits,
        user_agent: str = USER_AGENT,
        trust_env: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.directory = directory
        self.retry = retry
        self.limits = limits
        self.user_agent = user_agent
        self.trust_env = trust_env
        self.sleep = sleep
        self.auth = Authenticator(self)
        self._session: aiohttp.ClientSession | None = None
        self._schemes: dict[str, str] = {}
        self._scheme_locks: dict[str, asyncio.Lock] = {}
        self._ssl: dict[str, ssl.SSLContext] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                trust_env=self.trust_env,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self.limits.connect_timeout,
                    sock_read=self.limits.read_timeout,
                ),
                connector=aiohttp.TCPConnector(
                    limit=self.limits.connections,
                    limit_per_host=self.limits.connections_per_host,
                ),
            )
            # aiohttp silently resends PUT/DELETE once when a kept-alive connection drops
            # (RFC 9112 §9.3.1 treats them as idempotent). A blob upload's final PUT is not:
            # resending it after the registry stored the blob hits a finished session. Our
            # own retry rules decide instead.
            if hasattr(self._session, "_retry_connection"):
                setattr(self._session, "_retry_connection", False)  # noqa: B010
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_for(self, config: RegistryConfig) -> ssl.SSLContext | bool:
        if config.insecure:
            return False
        if config.ca_file is not None:
            key = str(config.ca_file)
            if key not in self._ssl:
                self._ssl[key] = ssl.create_default_context(cafile=key)
            return self._ssl[key]
        return True

    async def base(self, host: str) -> URL:
        """`https://host`, or for an insecure registry whatever answers: HTTPS without
        verification first, then plain HTTP (as skopeo's `--tls-verify=false` does)."""
        config = self.directory.config(host)
        if not config.insecure:
            return URL.build(scheme="https", authority=config.host)
        scheme = self._schemes.get(config.host)
        if scheme is None:
            lock = self._scheme_locks.setdefault(config.host, asyncio.Lock())
            async with lock:
                scheme = self._schemes.get(config.host)
                if scheme is None:
                    scheme = await self._probe(config.host)
                    self._schemes[config.host] = scheme
        return URL.build(scheme=scheme, authority=config.host)

    async def _probe(self, host: str) -> str:
        try:
            async with self.session().get(
                f"https://{host}/v2/",
                ssl=False,
                timeout=aiohttp.ClientTimeout(total=self.limits.connect_timeout),
            ):
                return "https"
        except (aiohttp.ClientError, TimeoutError, OSError):
            return "http"

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"User-Agent": self.user_agent, "Accept-Encoding": "identity", **(extra or {})}

    @asynccontextmanager
    async def request(
        self,
        method: str,
        host: str,
        target: str | URL,
        *,
        repository: str | None,
        scopes: Sequence[Scope] = (),
        headers: dict[str, str] | None = None,
        body: Body = None,
        idempotent: bool | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield the final response (any status but retried ones).

        `target` is a path below the registry (`/v2/...`) or an absolute URL the registry
        handed out (upload `Location`, `Link`). Statuses still failing after the last
        attempt raise `UnavailableError`; connection failures raise `TransportError`.
        """
        config = self.directory.config(host)
        creds = self.directory.credentials(host, repository)
        base = await self.base(host)
        url = target if isinstance(target, URL) else URL(f"{base}{target}", encoded=True)
        if not url.is_absolute():
            url = base.join(url)
        same_origin = url.origin() == base.origin()
        is_idempotent = method in IDEMPOTENT if idempotent is None else idempotent
        replayable = not isinstance(body, AsyncIterable)
        wanted: tuple[Scope, ...] = sc.merge(scopes)
        refused: str | None = None
        answered_challenge = False
        attempt = 0
        while True:
            attempt += 1
            sent = self._headers(headers)
            if same_origin:
                authorization = await self.auth.header(config, creds, wanted, refused=refused)
                if authorization is not None:
                    sent["Authorization"] = authorization
            refused = None
            try:
                resp = await self.session().request(
                    method, url, headers=sent, data=body, ssl=self._ssl_for(config)
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                no_such_host(exc, url)
                never_sent = isinstance(exc, aiohttp.ClientConnectorError)
                if replayable and attempt < self.retry.attempts and (is_idempotent or never_sent):
                    delay = self.retry.delay(attempt, None)
                    log.info(
                        "retrying",
                        extra={
                            "method": method,
                            "url": str(url),
                            "error": str(exc),
                            "delay": delay,
                        },
                    )
                    await self.sleep(delay)
                    continue
                raise TransportError(
                    f"{method} {url}: {type(exc).__name__}: {exc}", url=str(url), attempts=attempt
                ) from exc
            if (
                resp.status == 401
                and same_origin
                and not answered_challenge
                and replayable
                and can_answer(resp, creds)
            ):
                challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
                chosen = self.auth.learn(config.host, challenges)
                extra = [s for s in map(Scope.parse, chosen.scopes if chosen else ()) if s]
                wanted = sc.merge([*wanted, *extra])
                refused = sent.get("Authorization")
                answered_challenge = True
                resp.release()
                attempt -= 1  # answering the challenge is not a failed attempt
                continue
            if resp.status in RETRY_STATUSES and (is_idempotent or resp.status == 429):
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                too_long = retry_after is not None and retry_after > self.retry.max_retry_after
                if replayable and attempt < self.retry.attempts and not too_long:
                    delay = self.retry.delay(attempt, retry_after)
                    log.info(
                        "retrying",
                        extra={
                            "method": method,
                            "url": str(url),
                            "status": resp.status,
                            "delay": delay,
                        },
                    )
                    resp.release()
                    await self.sleep(delay)
                    continue
                note = f"registry asked to wait {retry_after:.0f} s" if too_long else None
                try:
                    await raise_for_response(resp, method, note, attempts=attempt)
                finally:
                    resp.release()
            break
        try:
            yield resp
        finally:
            resp.release()

    async def token_request(
        self,
        method: str,
        url: URL,
        *,
        headers: dict[str, str],
        form: dict[str, str] | None,
        insecure: bool,
    ) -> tuple[int, bytes]:
        """A token server exchange; safe to repeat, so retried like a GET."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.session().request(
                    method,
                    url,
                    headers=self._headers(headers),
                    data=form,
                    ssl=not insecure,
                ) as resp:
                    if resp.status in RETRY_STATUSES and attempt < self.retry.attempts:
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                        if retry_after is None or retry_after <= self.retry.max_retry_after:
                            await self.sleep(self.retry.delay(attempt, retry_after))
                            continue
                    return resp.status, await read_limited(resp, MAX_TOKEN_RESPONSE, "token")
            except (aiohttp.ClientError, TimeoutError) as exc:
                no_such_host(exc, url.with_query(None))
                if attempt < self.retry.attempts:
                    await self.sleep(self.retry.delay(attempt, None))
                    continue
                raise TransportError(
                    f"token request to {url.with_query(None)}: {type(exc).__name__}: {exc}",
                    url=str(url.with_query(None)),
                    attempts=attempt,
                ) from exc


_NO_SUCH_NAME: Final = frozenset(
    {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
)
"""Answers of the resolver that say the name does not exist (not "try again later")."""


def no_such_host(exc: BaseException, url: URL) -> None:
    """Raise `UnknownHost` when `exc` says the host's name does not resolve."""
    if not isinstance(exc, aiohttp.ClientConnectorDNSError):
        return
    cause = exc.os_error
    if isinstance(cause, socket.gaierror) and cause.errno in _NO_SUCH_NAME:
        raise UnknownHost(url.host or "?", cause.strerror or str(cause), url=str(url)) from exc


def can_answer(resp: aiohttp.ClientResponse, creds: Credentials | None) -> bool:
    """Whether repeating after a 401 can change anything: a Bearer challenge (anonymous
    tokens exist), or Basic when we hold a password."""
    challenges = parse_challenges(resp.headers.getall("WWW-Authenticate", []))
    schemes = {c.scheme for c in challenges}
    if "bearer" in schemes:
        return True
    return "basic" in schemes and creds is not None and creds.has_password

"""Bearer tokens in the Docker/OCI token format: short-lived JWTs (ES256 or EdDSA) whose
`access` claim lists, per resource, the actions granted.

    {"iss": "zoll", "sub": "robot+ci", "aud": "zoll", "exp": …, "nbf": …, "iat": …,
     "jti": "…", "pid": 7, "sv": "…",
     "access": [{"type": "repository", "name": "opendesk/app", "actions": ["pull", "push"]}]}

Verification pins the algorithm to the key named by `kid` (no `none`, no HMAC with a
public key), and checks issuer, audience, expiry and not-before. A verified token is
remembered until it expires, so a client reusing it costs one dictionary lookup.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from registry.auth.keys import TokenKeyring
from registry.http.access import Access
from registry.oci.names import is_valid_name

LEEWAY = 30
"""Seconds of clock skew tolerated between worker processes and nodes."""
MAX_TOKEN_BYTES = 16384
MAX_SCOPES = 64
RESOURCE_TYPES = ("repository", "registry")
ALL_ACTIONS = ("pull", "push", "delete", "attest")


class ScopeError(ValueError):
    """A `scope` parameter that is not `type:name:action[,action…]`."""


class TokenError(Exception):
    """A bearer token that is not accepted; `reason` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKey(TokenError):
    """Signed with a `kid` this process does not know (maybe rotated in another one, or
    issued by another instance)."""

    def __init__(self, reason: str, kid: str) -> None:
        super().__init__(reason)
        self.kid = kid


@dataclass(frozen=True, slots=True)
class ResourceScope:
    type: str
    name: str
    actions: tuple[str, ...]

    def text(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def _parse_one(raw: str) -> ResourceScope:
    kind, sep1, rest = raw.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep1 and sep2 and kind and name):
        raise ScopeError(f"scope {raw[:200]!r} is not type:name:actions")
    kind = kind.split("(", 1)[0]  # `repository(plugin)` is a resource class; ignore it
    listed = tuple(dict.fromkeys(a for a in actions.split(",") if a))
    if kind == "repository" and not is_valid_name(name):
        raise ScopeError(f"scope {raw[:200]!r} names an invalid repository")
    return ResourceScope(kind, name, listed)


def parse_scopes(values: Iterable[str]) -> list[ResourceScope]:
    """Scopes from repeated `scope` parameters, each possibly space-separated; actions on
    the same resource are merged, in order."""
    merged: dict[tuple[str, str], list[str]] = {}
    count = 0
    for value in values:
        for raw in value.split():
            count += 1
            if count > MAX_SCOPES:
                raise ScopeError(f"at most {MAX_SCOPES} scopes per request")
            scope = _parse_one(raw)
            actions = merged.setdefault((scope.type, scope.name), [])
            actions.extend(a for a in scope.actions if a not in actions)
    return [ResourceScope(t, n, tuple(a)) for (t, n), a in merged.items()]


@dataclass(frozen=True)
class TokenClaims:
    """A verified token: who it was issued to and what it permits."""

    subject: str
    principal_id: int
    access: tuple[ResourceScope, ...]
    issued_at: float
    expires_at: float
    token_id: str
    secret_version: str = ""

    def permits(self, access: Access) -> bool:
        for scope in self.access:
            if scope.type == access.type and scope.name == access.name:
                return (
                    access.action in scope.actions
                    or "*" in scope.actions
                    or (access.action == "attest" and "push" in scope.actions)
                )
        return False

    def resource_actions(self, type_: str, name: str) -> tuple[str, ...]:
        for scope in self.access:
            if scope.type == type_ and scope.name == name:
                return scope.actions
        return ()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    issued_at: float
    kid: str


def _access_claim(raw: Any) -> tuple[ResourceScope, ...]:
    if not isinstance(raw, list):
        raise TokenError("malformed access claim")
    out = []
    for entry in raw:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("type"), str)
            and isinstance(entry.get("name"), str)
            and isinstance(entry.get("actions"), list)
            and all(isinstance(a, str) for a in entry["actions"])
        ):
            raise TokenError("malformed access claim")
        out.append(ResourceScope(entry["type"], entry["name"], tuple(entry["actions"])))
    return tuple(out)


_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token is for another service"),
    (jwt.InvalidIssuerError, "token from another issuer"),
    (jwt.InvalidSignatureError, "bad token signature"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
)


class TokenAuthority:
    """Issues and verifies tokens with the keys of one keyring."""

    def __init__(
        self,
        keyring: TokenKeyring,
        *,
        issuer: str,
        service: str,
        ttl: int,
        cache_size: int = 4096,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.service = service
        self.ttl = ttl
        self._cache: OrderedDict[str, TokenClaims] = OrderedDict()
        self._cache_size = cache_size

    def issue(
        self,
        subject: str,
        principal_id: int,
        access: Sequence[ResourceScope],
        secret_version: str = "",
    ) -> IssuedToken:
        key = self.keyring.signing_key()
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "pid": principal_id,
            "sv": secret_version,
            "access": [a.claim() for a in access],
        }
        token = jwt.encode(
            claims, key.key.key, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "JWT"}
        )
        return IssuedToken(token, self.ttl, now, key.kid)

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token, or TokenError saying why not."""
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + LEEWAY > time.time():
                return cached
            del self._cache[token]
            raise TokenError("token expired")
        claims = self._verify(token)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _verify(self, token: str) -> TokenClaims:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError("malformed token") from None
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("token names no key")
        key = self.keyring.verification_key(kid)
        if key is None:
            raise UnknownKey("token signed by an unknown key", kid)
        if header.get("alg") != key.algorithm:
            raise TokenError("token algorithm does not match its key")
        try:
            payload = jwt.decode(
                token,
                key.public.key,
                algorithms=[key.algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.InvalidTokenError as exc:
            for kind, reason in _ERRORS:
                if isinstance(exc, kind):
                    raise TokenError(reason) from None
            raise TokenError("invalid token") from None
        subject, pid, version = payload.get("sub"), payload.get("pid"), payload.get("sv", "")
        if (
            not isinstance(subject, str)
            or not isinstance(pid, int)
            or isinstance(pid, bool)
            or not isinstance(version, str)
        ):
            raise TokenError("malformed subject")
        return TokenClaims(
            subject,
            pid,
            _access_claim(payload.get("access", [])),
            float(payload["iat"]),
            float(payload["exp"]),
            str(payload["jti"]),
            version,
        )

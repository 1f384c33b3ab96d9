"""Who is calling: the principal behind a request and, for bearer tokens, what the token
permits. Handlers read it with `caller_of(request)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from registry.auth.accounts import Principal
from registry.auth.roles import Grants
from registry.auth.tokens import TokenClaims
from registry.http.access import Access

Via = Literal["none", "basic", "bearer", "session"]
"""`session`: a web page or badge requested with the login cookie (auth.sessions)."""


@dataclass(frozen=True)
class Caller:
    principal: Principal
    grants: Grants
    """The principal's grants plus what anonymous callers may do."""
    via: Via
    token: TokenClaims | None = None

    @property
    def name(self) -> str:
        return self.principal.name

    def may(self, access: Access) -> bool:
        """Whether the principal's grants allow `access` (whatever the token says)."""
        return self.grants.allows(access)

    def can(self, access: Access) -> bool:
        """Whether this request may do it: grants allow it and the token (if any) carries it."""
        return self.may(access) and (self.token is None or self.token.permits(access))


CALLER = web.RequestKey("zoll_caller", Caller)


def caller_of(request: web.Request) -> Caller | None:
    """The authenticated caller, or None when authentication is disabled (everything is
    allowed then) or the route is public."""
    return request.get(CALLER)

"""What each route needs the caller to be allowed to do, declared next to the handler.

Every handler states the accesses a request requires (`@requires(...)`): repository
actions in the Docker token scope vocabulary (`pull`, `push`, `delete`, plus `attest`),
and registry-wide ones (`catalog`, `audit`, `admin`, `metrics`; `login` = any valid
credentials or token, what `GET /v2/` asks for). Authorisation middleware reads the
declaration and checks it against the caller's grants; a route without one is refused,
so a new endpoint can never be reachable by accident.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Action = Literal[
    "pull", "push", "delete", "attest", "catalog", "audit", "admin", "metrics", "login", "*"
]
ResourceType = Literal["repository", "registry"]


@dataclass(frozen=True, slots=True)
class Access:
    """One permission: `repository:opendesk/nextcloud:pull`, `registry:catalog:*`, …"""

    type: ResourceType
    name: str
    action: Action

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{self.action}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Needs = Callable[[web.Request], list[Access]]
ACCESS_ATTR = "__zoll_access__"
PUBLIC: Needs = lambda _request: []  # noqa: E731 (a named constant, not a function)
SIGNED_IN: Needs = lambda _request: [Access("registry", "login", "login")]  # noqa: E731
"""Any caller who presents valid credentials or a token the registry issued (even an
anonymous one). `GET /v2/` needs this, so clients learn where to get tokens."""


def requires(needs: Needs) -> Callable[[Handler], Handler]:
    """Declare what a handler needs; `needs(request)` may read match_info and query."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, ACCESS_ATTR, needs)
        return handler

    return mark


def needed(request: web.Request) -> list[Access] | None:
    """The accesses the matched handler declared, or None if it declared nothing."""
    handler = request.match_info.handler
    needs: Needs | None = getattr(handler, ACCESS_ATTR, None)
    return None if needs is None else needs(request)


def repository(action: Action) -> Needs:
    """The common case: `action` on the repository named in the path."""
    return lambda request: [Access("repository", request.match_info["name"], action)]


def registry_wide(action: Action) -> Needs:
    return lambda _request: [Access("registry", "catalog" if action == "catalog" else "*", action)]

"""The answer to one request, from who calls and what the route needs.

- allowed by grants and carried by the token (if any): go ahead;
- allowed by grants, not carried by the token: 401 `insufficient_scope`, so the client
  fetches a token with the scope named in the challenge;
- not allowed, caller anonymous: 401, credentials might help;
- not allowed, caller cannot even pull the repository: 404 `NAME_UNKNOWN`, exactly what
  a repository that does not exist answers, so private names do not leak;
- otherwise: 403 `DENIED`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from registry.auth.caller import Caller
from registry.http.access import Access


class Verdict(Enum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    HIDE = "hide"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    access: Access | None = None
    """The first access that was not granted."""


def decide(caller: Caller, needs: Sequence[Access]) -> Decision:
    for access in needs:
        if access.action == "login":
            if caller.via == "none":
                return Decision(Verdict.CHALLENGE, access)
            continue
        if caller.can(access):
            continue
        if caller.may(access):
            return Decision(Verdict.INSUFFICIENT_SCOPE, access)
        if caller.principal.is_anonymous:
            return Decision(Verdict.CHALLENGE, access)
        if access.type == "repository" and not caller.may(
            Access("repository", access.name, "pull")
        ):
            return Decision(Verdict.HIDE, access)
        return Decision(Verdict.DENY, access)
    return Decision(Verdict.ALLOW)

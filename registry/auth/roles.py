"""Roles, namespaces and what a set of grants allows.

A grant is a role on a namespace: `*` (every repository) or a repository path prefix,
matched segment by segment, so `opendesk` covers `opendesk` and `opendesk/nextcloud`
but never `opendesk-evil/x`. Repository actions come from every grant whose namespace
covers the repository; registry-wide actions (catalog, metrics, admin) only from grants
on `*`. Reading the audit log is allowed to auditors and admins of any namespace; the
API then shows them the events of their namespaces only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from registry.http.access import Access
from registry.oci.names import is_valid_name

Role = Literal["reader", "pusher", "attester", "auditor", "admin", "monitor"]
ROLES: tuple[Role, ...] = get_args(Role)
EVERYTHING = "*"

REPOSITORY_ACTIONS: dict[Role, frozenset[str]] = {
    "reader": frozenset({"pull"}),
    "pusher": frozenset({"pull", "push", "attest"}),
    "attester": frozenset({"pull", "attest"}),
    "auditor": frozenset({"pull", "audit"}),
    "admin": frozenset({"pull", "push", "delete", "attest", "audit"}),
    "monitor": frozenset(),
}
"""What each role may do in the repositories of its namespace. `attest` is pushing
attestation material only (blobs, and manifests that are signatures, attestations or
SBOMs of an image: `registry.http.v2.attestations`); `push` includes it."""

REGISTRY_ACTIONS: dict[Role, frozenset[str]] = {
    "reader": frozenset({"catalog"}),
    "pusher": frozenset({"catalog"}),
    "attester": frozenset({"catalog"}),
    "auditor": frozenset({"catalog", "audit"}),
    "admin": frozenset({"catalog", "audit", "admin", "metrics"}),
    "monitor": frozenset({"metrics"}),
}
"""What each role may do registry-wide, when granted on `*`."""

ANONYMOUS_ROLES: frozenset[Role] = frozenset({"reader"})
"""Callers without credentials may at most read."""


class GrantError(ValueError):
    """A role or namespace that does not exist or is not allowed."""


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise GrantError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")


def check_namespace(namespace: str) -> str:
    """`*` or a repository path prefix ('opendesk', 'opendesk/apps'); a trailing / is dropped."""
    ns = namespace.rstrip("/") if namespace != "/" else namespace
    if ns == EVERYTHING or is_valid_name(ns):
        return ns
    raise GrantError(
        f"namespace {namespace[:100]!r} is neither '*' nor a repository path such as 'opendesk'"
    )


def covers(namespace: str, repository: str) -> bool:
    return (
        namespace == EVERYTHING or repository == namespace or repository.startswith(namespace + "/")
    )


@dataclass(frozen=True, slots=True)
class Grant:
    namespace: str
    role: Role


@dataclass(frozen=True)
class Grants:
    """Everything one principal may do."""

    grants: tuple[Grant, ...] = ()
    _memo: dict[str, frozenset[str]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> Grants:
        return cls(tuple(Grant(ns, check_role(role)) for ns, role in pairs))

    def repository_actions(self, repository: str) -> frozenset[str]:
        known = self._memo.get(repository)
        if known is not None:
            return known
        out: set[str] = set()
        for g in self.grants:
            if covers(g.namespace, repository):
                out |= REPOSITORY_ACTIONS[g.role]
        if len(self._memo) < 1024:
            self._memo[repository] = frozenset(out)
        return frozenset(out)

    def registry_actions(self) -> frozenset[str]:
        out: set[str] = set()
        for g in self.grants:
            if g.namespace == EVERYTHING:
                out |= REGISTRY_ACTIONS[g.role]
            elif "audit" in REPOSITORY_ACTIONS[g.role]:
                out.add("audit")  # limited to its namespaces by the audit API
        return frozenset(out)

    def allows(self, access: Access) -> bool:
        if access.type == "repository":
            actions = self.repository_actions(access.name)
        else:
            actions = self.registry_actions()
        return access.action in actions or (access.action == "*" and bool(actions))

    def audit_namespaces(self) -> tuple[str, ...] | None:
        """Whose events this principal may read: None = all of them."""
        spaces = tuple(g.namespace for g in self.grants if "audit" in REPOSITORY_ACTIONS[g.role])
        return None if EVERYTHING in spaces else spaces

    def readable_namespaces(self) -> tuple[str, ...] | None:
        """Where this principal may pull: None = everywhere. Catalogues filter by it."""
        spaces = tuple(g.namespace for g in self.grants if "pull" in REPOSITORY_ACTIONS[g.role])
        return None if EVERYTHING in spaces else spaces

"""Token scopes (`repository:<name>:pull,push`, `registry:catalog:*`).

A token is asked for the scopes an operation needs; a cross-repository mount needs push
on the target and pull on the source in one token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """`type:name:actions`; names may contain `:` (a host with a port), actions not."""
        kind, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep and sep2 and kind and name):
            return None
        return cls(kind, name, tuple(sorted({a for a in actions.split(",") if a})))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def covers(self, other: Scope) -> bool:
        return (
            self.type == other.type
            and self.name == other.name
            and ("*" in self.actions or set(other.actions) <= set(self.actions))
        )


def pull(name: str) -> Scope:
    return Scope("repository", name, ("pull",))


def push(name: str) -> Scope:
    return Scope("repository", name, ("pull", "push"))


def delete(name: str) -> Scope:
    return Scope("repository", name, ("delete",))


CATALOG = Scope("registry", "catalog", ("*",))


def merge(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    """One scope per resource with the union of actions, in a stable order."""
    by_resource: dict[tuple[str, str], set[str]] = {}
    for scope in scopes:
        by_resource.setdefault((scope.type, scope.name), set()).update(scope.actions)
    return tuple(
        sorted(
            Scope(kind, name, tuple(sorted(actions)))
            for (kind, name), actions in by_resource.items()
        )
    )


def covers(granted: Iterable[Scope], wanted: Iterable[Scope]) -> bool:
    """Whether a token granted `granted` also serves a request needing `wanted`."""
    have = list(granted)
    return all(any(g.covers(w) for g in have) for w in wanted)

"""Who is acting: bound once per request (or per CLI command, background job) so that code
recording a change never has to be handed the actor explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """The principal behind a change, where the request came from, and its request id."""

    name: str
    kind: str
    """`user`, `robot`, `anonymous`, or `system` for the service's own jobs and the CLI."""
    source: str | None = None
    request_id: str | None = None

    def quota_holder(self) -> str | None:
        """The name upload limits and storage quotas are counted under: users and robots;
        None for anonymous callers and the service's own work (mirrors, the pipeline)."""
        return self.name if self.kind in ("user", "robot") else None


SYSTEM = Actor("system", "system")
_CURRENT: ContextVar[Actor] = ContextVar("zoll_audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _CURRENT.get()


def bind_actor(actor: Actor) -> None:
    """Set the actor for the rest of the current task (the auth middleware does this)."""
    _CURRENT.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Record changes made inside the block as `actor` (CLI commands, background jobs)."""
    token = _CURRENT.set(actor)
    try:
        yield actor
    finally:
        _CURRENT.reset(token)

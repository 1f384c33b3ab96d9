"""The tamper-evident audit log of every state change.

Record a change inside the transaction that makes it, as its last statement:

    async with pool.acquire() as conn, conn.transaction():
        ...  # the change
        await audit.record(conn, "manifest.push", repository=name, target=digest)

The actor (principal, source address, request id) comes from the request context that
the auth middleware binds; CLI commands and background jobs use `acting_as(...)`.
"""

from registry.audit.chain import Event
from registry.audit.context import SYSTEM, Actor, acting_as, bind_actor, current_actor
from registry.audit.log import (
    AuditError,
    Change,
    EventFilter,
    Head,
    events,
    head,
    record,
    record_all,
    record_now,
)
from registry.audit.verify import (
    ChainProblem,
    ChainReport,
    remember_verified,
    verified_head,
    verify_chain,
)

__all__ = [
    "SYSTEM",
    "Actor",
    "AuditError",
    "ChainProblem",
    "ChainReport",
    "Change",
    "Event",
    "EventFilter",
    "Head",
    "acting_as",
    "bind_actor",
    "current_actor",
    "events",
    "head",
    "record",
    "record_all",
    "record_now",
    "remember_verified",
    "verified_head",
    "verify_chain",
]

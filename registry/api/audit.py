"""`/api/v1/audit`: the audit log for auditors, filtered and paged, with the chain head.

Auditors and admins on `*` see every event; those on a namespace see the events of the
repositories in it (events without a repository — logins, grants — only on `*`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from registry import audit
from registry.api.router import API, ApiError, Param, limit_param, query_int
from registry.auth.caller import caller_of
from registry.http.access import registry_wide
from registry.http.state import registry_of

TIME = {"type": "string", "format": "date-time"}


class AuditEvent(BaseModel):
    seq: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    repository: str | None = None
    target: str | None = None
    source: str | None = None
    request_id: str | None = None
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    """SHA-256 (hex) over the previous hash and this event (see docs/auth.md)."""


class AuditHead(BaseModel):
    seq: int
    """Number of events ever recorded."""
    hash: str
    """Hash of the newest event: record it elsewhere to detect a truncated log later."""


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next: int | None = None
    """Pass as `before` for the next (older) page."""
    head: AuditHead


def _event(e: audit.Event) -> AuditEvent:
    return AuditEvent(
        seq=e.seq,
        at=e.at,
        actor=e.actor,
        actor_kind=e.actor_kind,
        action=e.action,
        repository=e.repository,
        target=e.target,
        source=e.source,
        request_id=e.request_id,
        detail=e.detail_json(),
        prev_hash=e.prev_hash.hex(),
        hash=e.hash.hex(),
    )


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "Invalid parameter", f"{name} must be an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _visible(request: web.Request) -> tuple[str, ...] | None:
    caller = caller_of(request)
    return None if caller is None else caller.grants.audit_namespaces()


@API.operation(
    "GET",
    "/api/v1/audit",
    summary="Audit log events, newest first",
    tag="audit",
    needs=registry_wide("audit"),
    response=AuditPage,
    params=(
        Param("actor", "query", "principal name (`anonymous`, `system`, `robot+ci`, …)"),
        Param("action", "query", "exact action, or a prefix ending in `.` (`manifest.`)"),
        Param("repository", "query", "repository or namespace (covers nested repositories)"),
        Param("request_id", "query", "the X-Request-Id of the request that made the change"),
        Param("since", "query", "ISO 8601 time, inclusive", TIME),
        Param("until", "query", "ISO 8601 time, exclusive", TIME),
        Param("before", "query", "seq to continue before", {"type": "integer"}),
        limit_param(),
    ),
)
async def list_events(request: web.Request) -> AuditPage:
    """Every state change (pushes, tag moves, deletes, grant changes, failed logins) with
    actor, time, source address and request id, and the hashes that chain them."""
    reg = registry_of(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    before = query_int(request, "before", 0, 1, 2**62) if "before" in request.query else None
    where = audit.EventFilter(
        actor=request.query.get("actor"),
        action=request.query.get("action"),
        repository=request.query.get("repository"),
        request_id=request.query.get("request_id"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        namespaces=_visible(request),
    )
    async with reg.pool.acquire() as conn:
        found = await audit.events(conn, where, before, limit + 1)
        current = await audit.head(conn)
    page = [_event(e) for e in found[:limit]]
    return AuditPage(
        events=page,
        next=page[-1].seq if len(found) > limit else None,
        head=AuditHead(seq=current.seq, hash=current.hash.hex()),
    )


@API.operation(
    "GET",
    "/api/v1/audit/head",
    summary="The newest audit event's sequence number and hash",
    tag="audit",
    needs=registry_wide("audit"),
    response=AuditHead,
)
async def chain_head(request: web.Request) -> AuditHead:
    """Record this pair outside Zoll (or in the transparency log): `zoll audit verify
    --anchor SEQ:HASH` later proves the log still contains it, unchanged."""
    current = await audit.head(registry_of(request).pool)
    return AuditHead(seq=current.seq, hash=current.hash.hex())

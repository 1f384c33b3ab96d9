"""Appending to the audit log and reading it back.

`record` runs inside the transaction of the change it records, so the change and its
audit row commit together or not at all. It locks the single `audit_head` row, which
serialises appends from every worker process and node: seq stays gapless and each row's
`prev_hash` is its predecessor's hash. Call it as the last statement of the transaction
(collect several changes and pass them at once): the head lock is then held only until
commit, and a transaction holding it never waits for another lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from registry.audit.chain import Event, canonical_detail, event_hash
from registry.audit.context import Actor, current_actor
from registry.db.pool import Conn, Executor


class AuditError(RuntimeError):
    """The audit log cannot be written as asked (e.g. outside a transaction)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One state change to record."""

    action: str
    """Dotted verb: `manifest.push`, `tag.move`, `grant.add`, `login.failure`, …"""
    repository: str | None = None
    target: str | None = None
    """What changed inside the repository (digest, tag) or elsewhere (principal name)."""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Head:
    """The newest event: anchor (seq, hash) somewhere else to detect a truncated tail."""

    seq: int
    hash: bytes

    def text(self) -> str:
        return f"{self.seq}:{self.hash.hex()}"

    @classmethod
    def parse(cls, raw: str) -> Head:
        seq, _, digest = raw.partition(":")
        try:
            value = bytes.fromhex(digest)
            number = int(seq)
        except ValueError:
            raise ValueError(f"expected <seq>:<64 hex digits>, got {raw[:100]!r}") from None
        if len(value) != 32 or number < 0:
            raise ValueError(f"expected <seq>:<64 hex digits>, got {raw[:100]!r}")
        return cls(number, value)


async def record(
    conn: Conn,
    action: str,
    *,
    repository: str | None = None,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> Head:
    """Append one event in the caller's transaction (see the module docstring)."""
    return await record_all(conn, [Change(action, repository, target, detail or {})], actor)


async def record_all(conn: Conn, changes: Sequence[Change], actor: Actor | None = None) -> Head:
    """Append several events in order, in the caller's transaction."""
    if not conn.is_in_transaction():
        raise AuditError("audit events are recorded inside the transaction of their change")
    who = actor or current_actor()
    details = [canonical_detail(c.detail) for c in changes]  # fail before taking the lock
    row = await conn.fetchrow(
        "SELECT seq, hash, clock_timestamp() AS now FROM audit_head WHERE id FOR UPDATE"
    )
    assert row is not None, "migration 0300 creates the head row"
    seq, prev, at = int(row["seq"]), bytes(row["hash"]), row["now"]
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    for change, detail in zip(changes, details, strict=True):
        seq += 1
        digest = event_hash(
            prev,
            seq,
            at,
            who.name,
            who.kind,
            change.action,
            change.repository,
            change.target,
            who.source,
            who.request_id,
            detail,
        )
        event = (seq, change.action, change.repository, change.target, detail, prev, digest)
        for column, value in zip(columns, event, strict=True):
            column.append(value)
        prev = digest
    if changes:  # the events and the new head in one round trip
        await conn.execute(
            """WITH events AS (
                 INSERT INTO audit_events (seq, at, actor, actor_kind, action, repository,
                     target, source, request_id, detail, prev_hash, hash)
                 SELECT e.seq, $8, $9, $10, e.action, e.repository, e.target, $11, $12,
                        e.detail, e.prev_hash, e.hash
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bytea[], $7::bytea[])
                      AS e(seq, action, repository, target, detail, prev_hash, hash))
               UPDATE audit_head SET seq = $13, hash = $14 WHERE id""",
            *columns,
            at,
            who.name,
            who.kind,
            who.source,
            who.request_id,
            seq,
            prev,
        )
    return Head(seq, prev)


async def record_now(
    pool: asyncpg.Pool,
    action: str,
    *,
    repository: str | None = None,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> Head:
    """Append one event in a transaction of its own (login failures, key rotations)."""
    async with pool.acquire() as conn, conn.transaction():
        return await record(
            conn, action, repository=repository, target=target, detail=detail, actor=actor
        )


async def head(conn: Executor) -> Head:
    row = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id")
    assert row is not None
    return Head(int(row["seq"]), bytes(row["hash"]))


def event_of(row: asyncpg.Record) -> Event:
    return Event(
        int(row["seq"]),
        row["at"],
        row["actor"],
        row["actor_kind"],
        row["action"],
        row["repository"],
        row["target"],
        row["source"],
        row["request_id"],
        row["detail"],
        bytes(row["prev_hash"]),
        bytes(row["hash"]),
    )


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What an auditor asks for; every field narrows the result."""

    actor: str | None = None
    action: str | None = None
    """Exact action, or a prefix ending in `.` (`manifest.` = every manifest event)."""
    repository: str | None = None
    """A repository or namespace: `opendesk` matches `opendesk` and `opendesk/…`."""
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    namespaces: tuple[str, ...] | None = None
    """Visibility: only events in these namespaces (None = every event)."""


def _namespace_clause(column: str, namespaces: Sequence[str], args: list[Any]) -> str:
    parts = []
    for ns in namespaces:
        if ns == "*":
            return "TRUE"
        args.append(ns)
        exact = f"${len(args)}"
        args.append(ns.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%")
        parts.append(f"({column} = {exact} OR {column} LIKE ${len(args)})")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


async def events(conn: Executor, where: EventFilter, before: int | None, limit: int) -> list[Event]:
    """Matching events, newest first, with seq < `before` (for paging)."""
    args: list[Any] = []
    clauses: list[str] = []

    def add(template: str, value: Any) -> None:
        args.append(value)
        clauses.append(template.format(f"${len(args)}"))

    if before is not None:
        add("seq < {}", before)
    if where.actor is not None:
        add("actor = {}", where.actor)
    if where.action is not None:
        if where.action.endswith("."):
            add("starts_with(action, {})", where.action)
        else:
            add("action = {}", where.action)
    if where.repository is not None:
        clauses.append(_namespace_clause("repository", [where.repository], args))
    if where.request_id is not None:
        add("request_id = {}", where.request_id)
    if where.since is not None:
        add("at >= {}", where.since)
    if where.until is not None:
        add("at < {}", where.until)
    if where.namespaces is not None:
        clauses.append(_namespace_clause("repository", where.namespaces, args))
    args.append(limit)
    where_sql = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = (
        "SELECT * FROM audit_events"  # noqa: S608 (only placeholders are interpolated)
        + where_sql
        + f" ORDER BY seq DESC LIMIT ${len(args)}"
    )
    return [event_of(r) for r in await conn.fetch(sql, *args)]

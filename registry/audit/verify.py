"""Check the audit chain: every row present, unedited, linked to its predecessor, and
ending where the head says.

What the chain proves and what it cannot: a removed row leaves a gap in `seq`, an edited
row no longer matches its hash, a forged row breaks the link to its successor. Someone
who can write the database could rewrite a whole suffix and the head consistently; a
head anchored outside the database (`zoll audit head`, the transparency log) catches that,
and `anchor=` checks the chain still contains it.

Verification can start from the last head found intact (`since=`, kept in
`audit_verified` by `remember_verified`): it then reads only the events after it, and
checks that this event still hashes to what was verified. It trusts the events before
it, so an edit there is found only by a full walk (`zoll audit verify --full`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

from registry.audit.chain import GENESIS
from registry.audit.log import Head, event_of, head
from registry.db.pool import Conn, Executor

ProblemKind = Literal["gap", "hash", "link", "head", "anchor", "verified"]


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a verification: `ok` only if no problem was found."""

    events: int
    head: Head
    problems: list[ChainProblem] = field(default_factory=list)
    truncated: bool = False
    """True when more problems existed than were collected."""
    since: int = 0
    """The seq verification started after (0: the whole chain was walked)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": {"seq": self.head.seq, "hash": self.head.hash.hex()},
            "problems": [
                {"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems
            ],
            "truncated": self.truncated,
            "since": self.since,
        }


async def verify_chain(
    conn: Conn,
    *,
    anchor: Head | None = None,
    since: Head | None = None,
    batch: int = 1000,
    max_problems: int = 100,
) -> ChainReport:
    """Walk the log in one consistent snapshot, `batch` rows at a time: all of it, or
    only what follows `since` (a head verified before)."""
    problems: list[ChainProblem] = []
    truncated = False

    def problem(seq: int, kind: ProblemKind, message: str) -> None:
        nonlocal truncated
        if len(problems) < max_problems:
            problems.append(ChainProblem(seq, kind, message))
        else:
            truncated = True

    count = 0
    start = since.seq if since is not None else 0
    expected = start + 1
    prev = since.hash if since is not None else GENESIS
    anchor_seen = anchor is None or anchor.seq == 0
    snapshot = (
        contextlib.nullcontext()  # the caller's transaction is the snapshot
        if conn.is_in_transaction()
        else conn.transaction(isolation="repeatable_read", readonly=True)
    )
    async with snapshot:
        stored_head = await head(conn)
        if since is not None and since.seq > 0:
            row = await conn.fetchrow("SELECT * FROM audit_events WHERE seq = $1", since.seq)
            verified = event_of(row) if row is not None else None
            if verified is None:
                problem(since.seq, "verified", "the last verified event is gone")
            elif verified.hash != since.hash or verified.computed_hash() != since.hash:
                problem(since.seq, "verified", "the last verified event changed since")
        if anchor is not None and 0 < anchor.seq <= start:
            anchor_seen = True
            found = await conn.fetchval("SELECT hash FROM audit_events WHERE seq = $1", anchor.seq)
            if found is None:
                anchor_seen = False
            elif bytes(found) != anchor.hash:
                problem(anchor.seq, "anchor", "hash differs from the anchored head")
        rows = conn.cursor(
            "SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq", start, prefetch=batch
        )
        async for row in rows:
            event = event_of(row)
            count += 1
            if event.seq != expected:
                problem(
                    event.seq,
                    "gap",
                    f"events {expected}–{event.seq - 1} are missing"
                    if event.seq > expected
                    else f"seq {event.seq} out of order (expected {expected})",
                )
            elif event.prev_hash != prev:
                problem(event.seq, "link", "prev_hash does not match the previous event's hash")
            if event.computed_hash() != event.hash:
                problem(event.seq, "hash", "contents do not match the stored hash (edited)")
            if anchor is not None and event.seq == anchor.seq:
                anchor_seen = True
                if event.hash != anchor.hash:
                    problem(event.seq, "anchor", "hash differs from the anchored head")
            prev = event.hash
            expected = event.seq + 1
        last = Head(expected - 1, prev)
        if (stored_head.seq, stored_head.hash) != (last.seq, last.hash):
            problem(
                stored_head.seq,
                "head",
                f"head says {stored_head.text()} but the last event is {last.text()} "
                "(events removed from the end, or the head was changed)",
            )
        if not anchor_seen and anchor is not None:
            problem(anchor.seq, "anchor", "the anchored event is no longer in the log")
    return ChainReport(count, stored_head, problems, truncated, start)


async def verified_head(conn: Executor) -> Head | None:
    """The newest head a verification found intact, if any."""
    row = await conn.fetchrow("SELECT seq, hash FROM audit_verified WHERE id")
    return None if row is None else Head(int(row["seq"]), bytes(row["hash"]))


async def remember_verified(conn: Executor, verified: Head) -> None:
    """Keep `verified` as the start of the next incremental verification (never moving
    it back: a concurrent older run does not undo a newer one)."""
    await conn.execute(
        """INSERT INTO audit_verified (seq, hash) VALUES ($1, $2)
           ON CONFLICT (id) DO UPDATE SET seq = $1, hash = $2, verified_at = now()
           WHERE audit_verified.seq <= $1""",
        verified.seq,
        verified.hash,
    )

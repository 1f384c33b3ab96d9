"""Verifying the audit log again reads only what was appended since the last verified
head, so a nightly `zoll audit verify` costs the day's events, not the whole history;
`--full` still walks everything and finds what the incremental run cannot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from registry import audit

ZOLL = str(Path(sys.executable).parent / "zoll")


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def append(conn: asyncpg.Connection, count: int) -> None:
    async with conn.transaction():
        await audit.record_all(
            conn,
            [audit.Change("tag.move", "opendesk/app", f"v{n}") for n in range(count)],
            audit.Actor("builder", "user"),
        )


async def verify_again(conn: asyncpg.Connection) -> audit.ChainReport:
    report = await audit.verify_chain(conn, since=await audit.verified_head(conn))
    if report.ok:
        await audit.remember_verified(conn, report.head)
    return report


async def test_only_new_events_are_read_after_a_verified_head(conn: asyncpg.Connection) -> None:
    await append(conn, 50)
    first = await verify_again(conn)
    assert (first.ok, first.events, first.since) == (True, 50, 0)

    await append(conn, 7)
    second = await verify_again(conn)
    assert (second.ok, second.events, second.since) == (True, 7, 50)
    assert (await audit.verified_head(conn)) == second.head

    nothing_new = await verify_again(conn)
    assert (nothing_new.ok, nothing_new.events, nothing_new.since) == (True, 0, 57)


async def test_edits_are_found_where_each_mode_looks(conn: asyncpg.Connection) -> None:
    await append(conn, 20)
    assert (await verify_again(conn)).ok
    await append(conn, 5)
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")

    # An edit after the verified head is found by the incremental run.
    await conn.execute("UPDATE audit_events SET actor = 'someone' WHERE seq = 23")
    report = await audit.verify_chain(conn, since=await audit.verified_head(conn))
    assert [(p.seq, p.kind) for p in report.problems] == [(23, "hash")]
    await conn.execute("UPDATE audit_events SET actor = 'builder' WHERE seq = 23")

    # The verified event itself is checked too.
    await conn.execute("UPDATE audit_events SET target = 'v99' WHERE seq = 20")
    report = await audit.verify_chain(conn, since=await audit.verified_head(conn))
    assert [(p.seq, p.kind) for p in report.problems] == [(20, "verified")]
    await conn.execute("UPDATE audit_events SET target = 'v19' WHERE seq = 20")

    # An edit before it is past what the incremental run reads; the full walk finds it.
    await conn.execute("UPDATE audit_events SET actor = 'someone' WHERE seq = 3")
    incremental = await audit.verify_chain(conn, since=await audit.verified_head(conn))
    assert (incremental.ok, incremental.events) == (True, 5)
    full = await audit.verify_chain(conn)
    assert [(p.seq, p.kind) for p in full.problems] == [(3, "hash")]


async def test_a_verified_head_never_moves_back(conn: asyncpg.Connection) -> None:
    await append(conn, 10)
    newer = (await verify_again(conn)).head
    await audit.remember_verified(conn, audit.Head(4, bytes(32)))
    assert await audit.verified_head(conn) == newer


async def test_the_cli_verifies_incrementally_unless_told_full(
    conn: asyncpg.Connection, pg_dsn: str, tmp_path: Path
) -> None:
    await append(conn, 30)
    env = {**os.environ, "ZOLL_DATABASE__DSN": pg_dsn, "ZOLL_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run(
            [ZOLL, "audit", "verify", *args], env=env, capture_output=True, text=True, check=True
        )
        return " ".join((done.stdout + done.stderr).split())

    assert "intact: 30 events, head 30:" in await asyncio.to_thread(run)
    await append(conn, 4)
    assert "intact: 4 events after the verified seq 30, head 34:" in await asyncio.to_thread(run)
    assert "intact: 34 events, head 34:" in await asyncio.to_thread(run, "--full")

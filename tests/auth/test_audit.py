"""The audit log: every state change recorded with who, when, from where and which
request; the hash chain holds with concurrent writers in several processes; removing,
editing, forging or truncating rows is detected."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from registry import audit
from registry.audit.chain import event_hash
from tests.auth.conftest import Accounts, basic
from tests.support.oci import Image, push_blob, push_image
from tests.support.servers import LiveRegistry


@pytest.fixture
async def conn(secured: LiveRegistry) -> AsyncIterator[asyncpg.Connection]:
    assert secured.config.database.dsn
    connection = await asyncpg.connect(secured.config.database.dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def events(conn: asyncpg.Connection, **where: Any) -> list[audit.Event]:
    return list(reversed(await audit.events(conn, audit.EventFilter(**where), None, 1000)))


async def verify(conn: asyncpg.Connection, anchor: audit.Head | None = None) -> audit.ChainReport:
    return await audit.verify_chain(conn, anchor=anchor, batch=7)


async def test_pushes_tag_moves_and_deletes_are_recorded(
    secured: LiveRegistry, people: Accounts, conn: asyncpg.Connection
) -> None:
    await people.user("builder", ("opendesk", "admin"))
    first, second = Image.random(layers=1), Image.random(layers=1)
    async with people.session("builder") as http:
        await push_image(http, secured.url, "opendesk/app", first, "1.0")
        async with http.put(
            f"{secured.url}/v2/opendesk/app/manifests/1.0",
            data=second.manifest(),
            headers={"Content-Type": second.media_type, "X-Request-Id": "move-the-tag"},
        ) as r:
            assert r.status == 400  # second's blobs are missing: nothing may be recorded
        for blob in (second.config, *second.layers):
            await push_blob(http, secured.url, "opendesk/app", blob)
        async with http.put(
            f"{secured.url}/v2/opendesk/app/manifests/1.0",
            data=second.manifest(),
            headers={"Content-Type": second.media_type, "X-Request-Id": "move-the-tag"},
        ) as r:
            assert r.status == 201
        async with http.delete(f"{secured.url}/v2/opendesk/app/manifests/{first.digest}") as r:
            assert r.status == 202
        async with http.delete(f"{secured.url}/v2/opendesk/app/manifests/1.0") as r:
            assert r.status == 202
    found = await events(conn, repository="opendesk")
    assert [(e.action, e.target) for e in found if not e.action.startswith("blob.")] == [
        ("manifest.push", first.digest),
        ("tag.move", "1.0"),
        ("manifest.push", second.digest),
        ("tag.move", "1.0"),
        ("manifest.delete", first.digest),
        ("tag.delete", "1.0"),
    ]
    assert {e.actor for e in found} == {"builder"}
    assert {e.actor_kind for e in found} == {"user"}
    assert {e.source for e in found} == {"127.0.0.1"}
    moved = [e for e in found if e.request_id == "move-the-tag"]
    assert [e.action for e in moved] == ["manifest.push", "tag.move"]
    assert moved[1].detail_json() == {"from": first.digest, "to": second.digest}
    uploads = [e for e in found if e.action == "blob.upload"]
    assert len(uploads) == 4 and all(e.detail_json()["size"] > 0 for e in uploads)
    assert (await verify(conn)).ok


async def test_grant_changes_and_failed_logins_are_recorded(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession, conn: asyncpg.Connection
) -> None:
    await people.user("root", ("*", "admin"))
    root = people.header("root")
    async with http.post(
        f"{secured.url}/api/v1/admin/robots",
        json={"name": "ci", "grants": [{"namespace": "opendesk", "role": "pusher"}]},
        headers=root,
    ) as r:
        assert r.status == 201
        robot_secret = (await r.json())["secret"]
    async with http.post(
        f"{secured.url}/api/v1/admin/principals/anonymous/grants",
        json={"namespace": "public", "role": "reader"},
        headers=root,
    ) as r:
        assert r.status == 200
    async with http.get(
        f"{secured.url}/token", headers={"Authorization": basic("robot+ci", "guess")}
    ) as r:
        assert r.status == 401
    async with http.get(
        f"{secured.url}/v2/", headers={"Authorization": basic("nobody", "guess")}
    ) as r:
        assert r.status == 401
    found = await events(conn, since=datetime.now(UTC) - timedelta(minutes=5))
    summary = [
        (e.actor, e.action, e.target, e.detail_json()) for e in found if e.actor != "test-setup"
    ]
    assert summary == [
        (
            "root",
            "principal.create",
            "robot+ci",
            {"kind": "robot", "description": "", "expires_at": None},
        ),
        ("root", "grant.add", "robot+ci", {"namespace": "opendesk", "role": "pusher"}),
        ("root", "grant.add", "anonymous", {"namespace": "public", "role": "reader"}),
        ("anonymous", "login.failure", "robot+ci", {"reason": "wrong secret"}),
        ("anonymous", "login.failure", "nobody", {"reason": "unknown principal"}),
    ]
    assert not [e for e in found if "guess" in e.detail or robot_secret in e.detail]


async def test_chain_holds_with_writers_in_several_processes(
    secured: LiveRegistry, people: Accounts, conn: asyncpg.Connection
) -> None:
    await people.user("builder", ("*", "admin"))
    before = (await audit.head(conn)).seq
    dsn = secured.config.database.dsn
    assert dsn
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.auth.audit_writer", dsn, "40", f"writer{i}"
        )
        for i in range(3)
    ]

    async def pushes() -> int:
        async with people.session("builder") as http:
            for n in range(5):
                await push_image(
                    http, secured.url, f"busy/app{n % 2}", Image.random(layers=2), f"t{n}"
                )
        return 5 * 5  # 3 blobs, the manifest and its tag per push

    pushed = await pushes()
    codes = await asyncio.gather(*(w.wait() for w in writers))
    assert codes == [0, 0, 0]
    report = await verify(conn)
    assert report.ok, report.problems
    assert report.head.seq == report.events == before + 3 * 40 + pushed
    seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM audit_events ORDER BY seq")]
    assert seqs == list(range(1, report.events + 1))


async def test_tampering_is_detected(
    secured: LiveRegistry, people: Accounts, conn: asyncpg.Connection
) -> None:
    await people.user("builder", ("*", "admin"))
    async with people.session("builder") as http:
        for n in range(3):
            await push_image(http, secured.url, "opendesk/app", Image.random(layers=1), f"v{n}")
    clean = await verify(conn)
    assert clean.ok and clean.events >= 12
    anchor = clean.head

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await conn.execute("UPDATE audit_events SET actor = 'someone' WHERE seq = 3")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await conn.execute("DELETE FROM audit_events WHERE seq = 3")
    # From here on we are a database administrator covering tracks.
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")

    async def problems() -> list[tuple[int, str]]:
        report = await verify(conn, anchor)
        return [(p.seq, p.kind) for p in report.problems]

    async with tampering(conn):
        await conn.execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 5")
        assert await problems() == [(5, "hash")]

    async with tampering(conn):
        await conn.execute("DELETE FROM audit_events WHERE seq = 7")
        assert await problems() == [(8, "gap")]

    async with tampering(conn):
        await conn.execute("DELETE FROM audit_events WHERE seq >= $1", anchor.seq - 1)
        assert await problems() == [(anchor.seq, "head"), (anchor.seq, "anchor")]

    async with tampering(conn):
        # another event in place of 4, with a correct hash of its own
        row = await conn.fetchrow("SELECT * FROM audit_events WHERE seq = 4")
        forged = rehash(row, bytes(row["prev_hash"]), actor="innocent", action="tag.move")
        await conn.execute(
            """UPDATE audit_events SET actor = 'innocent', action = 'tag.move', hash = $1
               WHERE seq = 4""",
            forged,
        )
        assert await problems() == [(5, "link")]

    async with tampering(conn):
        # everything from 4 on rewritten consistently, head included: only an anchor tells
        rows = await conn.fetch("SELECT * FROM audit_events WHERE seq >= 4 ORDER BY seq")
        prev = bytes(rows[0]["prev_hash"])
        for r in rows:
            actor = "innocent" if r["seq"] == 4 else r["actor"]
            digest = rehash(r, prev, actor=actor)
            await conn.execute(
                "UPDATE audit_events SET actor = $2, prev_hash = $3, hash = $4 WHERE seq = $1",
                r["seq"],
                actor,
                prev,
                digest,
            )
            prev = digest
        await conn.execute("UPDATE audit_head SET hash = $1", prev)
        assert (await audit.verify_chain(conn)).ok
        assert await problems() == [(anchor.seq, "anchor")]

    assert (await verify(conn, anchor)).ok  # every tampering above was rolled back


def rehash(row: asyncpg.Record, prev: bytes, **changes: str) -> bytes:
    fields = {**dict(row), **changes}
    return event_hash(
        prev,
        fields["seq"],
        fields["at"],
        fields["actor"],
        fields["actor_kind"],
        fields["action"],
        fields["repository"],
        fields["target"],
        fields["source"],
        fields["request_id"],
        fields["detail"],
    )


@asynccontextmanager
async def tampering(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Change rows, look, then undo it all."""
    tx = conn.transaction()
    await tx.start()
    try:
        yield
    finally:
        await tx.rollback()


async def test_record_outside_a_transaction_is_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(audit.AuditError, match="inside the transaction"):
        await audit.record(conn, "test.nothing")

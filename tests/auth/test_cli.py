"""`zoll users`, `zoll robots`, `zoll audit` and `zoll token-keys` as an operator runs them."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from registry.auth.passwords import verify_secret

ZOLL = str(Path(sys.executable).parent / "zoll")


class Cli:
    def __init__(self, dsn: str, data_dir: Path) -> None:
        self.env = {**os.environ, "ZOLL_DATABASE__DSN": dsn, "ZOLL_AUTH__SCRYPT_LOG2_N": "12"}
        self.data_dir = data_dir

    async def __call__(
        self, *args: str, stdin: str | None = None, code: int = 0
    ) -> tuple[str, str]:
        proc = await asyncio.create_subprocess_exec(
            ZOLL,
            *args,
            "--data-dir",
            str(self.data_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        out, err = await proc.communicate(stdin.encode() if stdin else None)
        assert proc.returncode == code, (args, out.decode(), err.decode())
        return out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        out, _ = await self(*args, "--json")
        return json.loads(out)


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path) -> Cli:
    return Cli(pg_dsn, tmp_path / "data")


async def secret_hash(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        value: str = await conn.fetchval(
            "SELECT secret_hash FROM auth_principals WHERE name = $1", name
        )
        return value
    finally:
        await conn.close()


async def test_accounts_from_the_command_line(cli: Cli, pg_dsn: str) -> None:
    created = await cli.json("users", "add", "alice", "--grant", "reader:opendesk")
    assert created["name"] == "alice" and created["grants"] == [
        {"namespace": "opendesk", "role": "reader"}
    ]
    assert verify_secret(created["secret"], await secret_hash(pg_dsn, "alice"))

    await cli("users", "add", "bob", "--password-stdin", stdin="bobs-own-password\n")
    assert verify_secret("bobs-own-password", await secret_hash(pg_dsn, "bob"))
    _, err = await cli("users", "add", "carol", "--password-stdin", stdin="short\n", code=1)
    assert "at least 12 characters" in err

    out, err = await cli(
        "robots", "create", "ci", "--grant", "pusher:opendesk", "--expires-days", "30"
    )
    secret = out.strip()
    assert "robot+ci" in err and "shown only now" in err
    assert verify_secret(secret, await secret_hash(pg_dsn, "robot+ci"))

    await cli("users", "grant", "anonymous", "reader", "public")
    _, err = await cli("users", "grant", "anonymous", "pusher", "public", code=1)
    assert "anonymous callers may only be given: reader" in err
    await cli("robots", "revoke", "ci", "pusher", "opendesk")
    _, err = await cli("robots", "revoke", "ci", "pusher", "opendesk", code=1)
    assert "has no pusher" in err
    await cli("robots", "disable", "ci")

    listing = {p["name"]: p for p in await cli.json("users", "list")}
    assert set(listing) == {"alice", "anonymous", "bob", "robot+ci"}
    assert listing["anonymous"]["grants"] == [{"namespace": "public", "role": "reader"}]
    assert listing["robot+ci"]["grants"] == [] and listing["robot+ci"]["disabled"]
    assert listing["robot+ci"]["expires_at"] is not None
    assert "secret" not in json.dumps(listing)
    robots = await cli.json("robots", "list")
    assert [r["name"] for r in robots] == ["robot+ci"]

    old = await secret_hash(pg_dsn, "alice")
    fresh = (await cli.json("users", "passwd", "alice"))["secret"]
    assert verify_secret(fresh, await secret_hash(pg_dsn, "alice")) and not verify_secret(
        fresh, old
    )
    await cli("users", "remove", "bob")
    _, err = await cli("users", "remove", "bob", code=1)
    assert "no principal named 'bob'" in err

    events = await cli.json(
        "audit", "list", "--actor", f"cli:{getpass.getuser()}", "--limit", "100"
    )
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "principal.create",
        "grant.add",  # alice
        "principal.create",  # bob
        "principal.create",
        "grant.add",  # robot+ci
        "grant.add",  # anonymous reader public
        "grant.remove",
        "principal.disable",
        "principal.secret",
        "principal.delete",
    ]


async def test_audit_verify_and_anchor(cli: Cli, pg_dsn: str) -> None:
    await cli("users", "add", "alice", "--grant", "reader:opendesk")
    out, _ = await cli("audit", "head")
    anchor = out.strip()
    seq, digest = anchor.split(":")
    assert int(seq) == 2 and len(digest) == 64
    _, err = await cli("audit", "verify")
    assert "audit log intact" in err and anchor in err
    await cli("audit", "verify", "--anchor", anchor)
    await cli("users", "add", "bob")
    await cli("audit", "verify", "--anchor", anchor)  # later events do not disturb the anchor
    _, err = await cli("audit", "verify", "--anchor", "nonsense", code=2)
    assert "seq" in err

    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        await conn.execute("UPDATE audit_events SET target = 'mallory' WHERE seq = 1")
    finally:
        await conn.close()
    # The default run trusts what an earlier run verified (docs/auth.md): it reads only
    # the events after that head and says so; --full walks everything and finds the edit.
    out, _ = await cli("audit", "verify", "--json")
    assert json.loads(out)["since"] == 3 and json.loads(out)["events"] == 0
    out, _ = await cli("audit", "verify", "--full", "--json", code=1)
    report = json.loads(out)
    assert report["ok"] is False
    assert report["problems"] == [
        {"seq": 1, "kind": "hash", "message": "contents do not match the stored hash (edited)"}
    ]
    _, err = await cli("audit", "verify", "--full", code=1)
    assert "edited" in err


async def test_token_keys(cli: Cli) -> None:
    keys = await cli.json("token-keys", "list")
    assert len(keys) == 1 and keys[0]["signing"] and keys[0]["algorithm"] == "ES256"
    _, err = await cli("token-keys", "rotate")
    assert "new signing key" in err
    after = await cli.json("token-keys", "list")
    assert [k["signing"] for k in after] == [False, True]
    assert after[0]["kid"] == keys[0]["kid"]
    events = await cli.json("audit", "list", "--action", "auth.key.rotate")
    assert [e["target"] for e in events] == [after[1]["kid"]]

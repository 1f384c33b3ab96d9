"""`zoll verify … docker://` against a Zoll that asks for credentials (the default): as the
README prints it, with `--creds` as skopeo spells it; without, a clear 401."""

from __future__ import annotations

import asyncio
import json

import pytest

from registry.cli.main import main
from tests.auth.conftest import Accounts
from tests.support.oci import Image, push_image
from tests.support.servers import LiveRegistry


async def test_verify_attachments_with_credentials(
    secured: LiveRegistry, people: Accounts, capsys: pytest.CaptureFixture[str]
) -> None:
    password = await people.user("alice", ("demo", "pusher"))
    async with people.session("alice") as alice:
        await push_image(alice, secured.url, "demo/app", Image.random(), "1.0")
    target = f"docker://{secured.host}/demo/app:1.0"
    argv = ["verify", "attachments", target, "--tls-verify=false", "--json"]

    assert await asyncio.to_thread(main, argv) == 2
    assert "401" in capsys.readouterr().err

    assert await asyncio.to_thread(main, [*argv, "--creds", f"alice:{password}"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # nothing attached yet

    assert await asyncio.to_thread(main, [*argv, "--creds", "alice"]) == 2  # no password
    assert "USER:PASSWORD" in capsys.readouterr().err

"""The transparency log as an auditor meets it: over HTTP from a running Zoll, then offline
with `zoll log …` on exactly the files the API served, byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.tlog.checkpoint import SignedCheckpoint
from registry.cli.main import main
from registry.pipeline.runner import PipelineRunner
from tests.support.oci import Image, push_image
from tests.support.pipeline import drain
from tests.support.postgres import fresh_database
from tests.support.servers import LiveRegistry, live_registry, registry_config


@pytest.fixture(scope="module")
async def served(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveRegistry]:
    """A Zoll whose pipeline judged one image (so its log holds entries)."""
    dsn = await fresh_database(pg_admin_dsn)
    config = registry_config(dsn, tmp_path_factory.mktemp("data"), "filesystem", None)
    async with live_registry(config) as live, aiohttp.ClientSession() as http:
        await push_image(http, live.url, "audit/app", Image.random(layers=1, size=256), "v1")
        await drain(PipelineRunner(live.services))
        yield live


async def fetch(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.read()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()  # the service's own log lines, printed before the command ran
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


async def save(http: aiohttp.ClientSession, url: str, path: Path) -> Path:
    path.write_bytes(await fetch(http, url))
    return path


async def test_the_cli_takes_what_the_api_serves(
    served: LiveRegistry,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = f"{served.url}/api/v1"
    keys = await save(http, f"{api}/keys", tmp_path / "keys.json")
    old = await save(http, f"{api}/log/checkpoint", tmp_path / "old.txt")
    old_size = SignedCheckpoint.parse(old.read_bytes()).checkpoint.size
    await push_image(http, served.url, "audit/app", Image.random(layers=1, size=256), "v2")
    await drain(PipelineRunner(served.services))
    new = await save(http, f"{api}/log/checkpoint", tmp_path / "new.txt")
    size = SignedCheckpoint.parse(new.read_bytes()).checkpoint.size
    assert size > old_size

    # Consistency: the proof document as served, with and without the newer checkpoint.
    consistency = await save(
        http, f"{api}/log/proof/consistency?old={old_size}", tmp_path / "consistency.json"
    )
    for extra in (["--newer", str(new)], []):
        code, out = run(
            capsys, "log", "verify", "--checkpoint", str(old), "--proof", str(consistency),
            "--key", str(keys), *extra,
        )  # fmt: skip
        assert (code, out.get("oldSize"), out.get("newSize")) == (0, old_size, size), out

    # Inclusion: every entry, as /log/entries/{index} serves it, with the served proof.
    for index in range(size):
        entry = await save(http, f"{api}/log/entries/{index}", tmp_path / "entry.json")
        proof = await save(
            http, f"{api}/log/proof/inclusion?index={index}", tmp_path / "inclusion.json"
        )
        for extra in (["--checkpoint", str(new)], []):
            code, out = run(
                capsys, "log", "verify-inclusion", "--entry", str(entry), "--proof", str(proof),
                "--key", str(keys), *extra,
            )  # fmt: skip
            assert (code, out.get("logIndex"), out.get("treeSize")) == (0, index, size), out

    # A served proof still verifies nothing it does not prove.
    code, out = run(
        capsys, "log", "verify-inclusion", "--entry", str(tmp_path / "entry.json"),
        "--proof", str(await save(
            http, f"{api}/log/proof/inclusion?index=0", tmp_path / "zero.json"
        )), "--key", str(keys),
    )  # fmt: skip
    assert (code, out["reason"]) == (1, "verification")


async def test_the_documented_log_endpoints_answer(
    served: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    api = f"{served.url}/api/v1/log"
    head = SignedCheckpoint.parse(await fetch(http, f"{api}/checkpoint")).checkpoint
    again = SignedCheckpoint.parse(await fetch(http, f"{api}/checkpoint/{head.size}"))
    assert again.checkpoint == head
    async with http.get(f"{api}/checkpoint/{head.size + 7}") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"

    page = json.loads(await fetch(http, f"{api}/entries?start=1&limit=2"))
    assert [e["logIndex"] for e in page["entries"]] == [1, 2]
    whole = json.loads(await fetch(http, f"{api}/entries"))
    assert [e["logIndex"] for e in whole["entries"]] == list(range(head.size))
    assert whole["entries"][1] == page["entries"][0]
    async with http.get(f"{api}/entries?limit=1001") as r:
        assert r.status == 400

    by_path = json.loads(await fetch(http, f"{api}/proof/inclusion/1?size={head.size}"))
    by_query = json.loads(await fetch(http, f"{api}/proof/inclusion?index=1&size={head.size}"))
    assert by_path == by_query
    assert by_path["proof"]["treeSize"] == head.size
    assert SignedCheckpoint.parse(by_path["checkpoint"]).checkpoint == head
    async with http.get(f"{api}/proof/inclusion/{head.size}") as r:
        assert r.status == 400

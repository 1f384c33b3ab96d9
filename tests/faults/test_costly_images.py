"""Images that are costly to analyse while within the size limits: a small layer that
expands a thousandfold is stopped at the expansion bound and does not pass; a pusher who
used up its hourly analysis budget waits while other pushers' images are analysed; and
one pusher's analyses never take every job slot of a worker."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.pipeline.jobs import RetryLater
from tests.auth.conftest import Accounts, auth_settings
from tests.faults.conftest import audit_verifies
from tests.policy.layouts import member, tar_bytes
from tests.support.oci import Image, push_image
from tests.support.pipeline import drain
from tests.support.servers import LiveRegistry, live_registry, registry_config

MiB = 1024 * 1024


@pytest.fixture
async def bounded(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        auth=auth_settings(),
        pipeline={
            "concurrency": 2,
            "analysis": {
                "max_ratio": 50,
                "ratio_floor": 8 * MiB,
                "pusher_expanded_bytes_per_hour": 4 * MiB,
            },
        },
    )
    async with live_registry(config, pipeline=False) as live:
        yield live


def _image(payload: bytes) -> Image:
    layer = gzip.compress(tar_bytes([(member("data/blob"), payload)]), compresslevel=9)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "10001"},
            "rootfs": {"type": "layers", "diff_ids": []},
            "nonce": os.urandom(8).hex(),
        }
    ).encode()
    return Image(config, [layer])


async def _hardening(live: LiveRegistry, repo: str, digest: str) -> tuple[bool | None, str]:
    row = await live.registry.pool.fetchrow(
        """SELECT s.hardening_passed, s.hardening::text AS report FROM image_status s
           JOIN repositories r ON r.id = s.repository_id WHERE r.name = $1 AND s.digest = $2""",
        repo,
        digest,
    )
    assert row is not None
    return row["hardening_passed"], row["report"] or ""


async def test_an_expanding_layer_is_stopped_and_its_pusher_waits(bounded: LiveRegistry) -> None:
    assert bounded.services.workload is not None
    people = Accounts(bounded)
    await people.user("mallory", ("hostile", "pusher"))
    await people.user("alice", ("fine", "pusher"))
    bomb = _image(bytes(64 * MiB))  # ~64 KiB compressed: a thousandfold
    assert len(bomb.layers[0]) < MiB
    async with people.session("mallory") as mallory:
        bomb_digest = await push_image(mallory, bounded.url, "hostile/bomb", bomb, "1")
    runner = bounded.services
    from registry.pipeline.runner import PipelineRunner

    started = time.monotonic()
    await drain(PipelineRunner(runner), timeout=120)
    assert time.monotonic() - started < 60
    passed, report = await _hardening(bounded, "hostile/bomb", bomb_digest)
    assert passed is False
    assert "ratio" in report or "limit" in report

    # Mallory's expansion counted against the hour: the next image waits, Alice's does not.
    async with people.session("mallory") as mallory:
        second = await push_image(mallory, bounded.url, "hostile/second", _image(b"x" * 1000), "1")
    async with people.session("alice") as alice:
        fine = await push_image(alice, bounded.url, "fine/app", _image(b"y" * 1000), "1")
    with pytest.raises(TimeoutError):
        await drain(PipelineRunner(runner), timeout=10)
    passed, _ = await _hardening(bounded, "fine/app", fine)
    assert passed is not None, "another pusher's image was analysed"
    passed, _ = await _hardening(bounded, "hostile/second", second)
    assert passed is None, "the pusher over budget waits"
    waiting = await bounded.registry.pool.fetchval(
        "SELECT last_error FROM jobs WHERE kind = 'scan' AND state = 'queued'"
    )
    assert "budget" in waiting
    await audit_verifies(bounded.config.database.dsn or "")


async def test_one_pusher_never_takes_every_slot(bounded: LiveRegistry) -> None:
    workload = bounded.services.workload
    assert workload.slots_per_pusher == 1  # concurrency 2: one slot stays for others
    async with workload.analysis("mallory", "sha256:" + "1" * 64):
        with pytest.raises(RetryLater):
            async with workload.analysis("mallory", "sha256:" + "2" * 64):
                pass
        async with workload.analysis("alice", "sha256:" + "3" * 64):
            pass
    async with workload.analysis("mallory", "sha256:" + "2" * 64):
        pass

"""Reloading the trust policy of a running `zoll serve` (two workers): by an admin API call
and by SIGHUP. Every worker takes the new policy, the images whose policy changed are
judged again (others are not), a broken file changes nothing, and the log says which
policy digest is in force."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.policy_document import parse_with_document
from tests.policy.layouts import member, tar_bytes
from tests.support.oci import Image, push_image
from tests.support.served import Served

pytestmark = pytest.mark.slow

STRICT = """\
version: 1
policies:
  strict:
    signers:
      supplier: {key: supplier.pub}
    require:
      signature: {signers: [supplier]}
  vendor:
    signers:
      vendor: {key: vendor.pub}
    require:
      signature: {signers: [vendor]}
repositories:
  - match: "signed/*"
    policy: strict
  - match: "other/*"
    policy: vendor
"""
MOVED = STRICT.replace("policy: strict", "policy: vendor")
"""`signed/*` now answers to the vendor's policy; `other/*` keeps the same policy."""


@pytest.fixture(scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Served, Path]]:
    from attest.keys import PrivateKey

    folder = tmp_path_factory.mktemp("trust")
    for signer in ("supplier", "vendor"):
        (folder / f"{signer}.pub").write_text(PrivateKey.generate().public.pem())
    policy = folder / "trust.yaml"
    policy.write_text(STRICT)
    env = {
        "ZOLL_AUTH__ENABLED": "false",
        "ZOLL_ATTEST__TRUST_POLICY": str(policy),
        "ZOLL_PIPELINE__REEVALUATE_INTERVAL": "3600",  # only a reload may re-judge here
    }
    served = await asyncio.to_thread(
        Served, folder / "zoll-data", "--workers", "2", "--storage", "filesystem", env=env
    )
    try:
        yield served, policy
    finally:
        await asyncio.to_thread(served.stop)


def small_image() -> Image:
    layer = gzip.compress(tar_bytes([(member("app/hello"), b"hello\n")]), mtime=0)
    image = Image.random(layers=0)
    image.layers = [layer]
    return image


async def judged(
    http: aiohttp.ClientSession, base: str, ref: str, policy: str | None = None
) -> dict[str, Any]:
    """The image's status once it is judged (under `policy`, if given)."""
    deadline = time.monotonic() + 90
    while True:
        async with http.get(f"{base}/api/v1/images/{ref}/status") as r:
            body = await r.json() if r.status == 200 else {}
        events = body.get("events", [])
        verified = [e["detail"]["policy"] for e in events if e["stage"] == "verify"]
        used = verified[-1].split("@")[0] if verified else None
        if any(e["stage"] == "admit" for e in events) and policy in (None, used):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.3)


async def digests_in_force(base: str, connections: int = 8) -> set[str]:
    """The policy digest each worker reports (new connections reach both workers)."""
    seen = set()
    for _ in range(connections):
        connector = aiohttp.TCPConnector(force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get(f"{base}/api/v1/admin/trust-policy") as r,
        ):
            assert r.status == 200, await r.text()
            seen.add((await r.json())["sha256"])
    return seen


def sha256(text: str, path: Path) -> str:
    """The digest the service names for a policy file: of its policy document (the file
    and every key and layout it reads), as VSAs name it."""
    return parse_with_document(path, text.encode())[1].sha256


async def verify_events(http: aiohttp.ClientSession, base: str, ref: str) -> int:
    async with http.get(f"{base}/api/v1/images/{ref}/status") as r:
        body = await r.json()
    return sum(1 for e in body["events"] if e["stage"] == "verify")


async def test_reload_by_api_and_by_sighup(
    service: tuple[Served, Path], http: aiohttp.ClientSession
) -> None:
    served, policy = service
    base = f"http://{served.host}"
    signed = await push_image(http, base, "signed/app", small_image(), "1.0")
    other = await push_image(http, base, "other/app", small_image(), "1.0")
    await judged(http, base, f"signed/app@{signed}", policy="strict")
    await judged(http, base, f"other/app@{other}", policy="vendor")
    assert await digests_in_force(base) == {sha256(STRICT, policy)}
    before = await verify_events(http, base, f"other/app@{other}")

    # A broken file: refused with the reason, the policy in force stays.
    policy.write_text("version: 1\npolicies: {x: {require: {slsa: {}}}}\n")
    async with http.post(f"{base}/api/v1/admin/trust-policy/reload") as r:
        assert r.status == 422, await r.text()
        assert r.content_type == "application/problem+json"
        assert "slsa" in (await r.json())["detail"]
    assert await digests_in_force(base) == {sha256(STRICT, policy)}

    # The admin API: every worker takes it; the image whose policy changed is judged again.
    policy.write_text(MOVED)
    async with http.post(f"{base}/api/v1/admin/trust-policy/reload") as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
    assert answer["sha256"] == sha256(MOVED, policy) and answer["previous"] == sha256(
        STRICT, policy
    )
    await judged(http, base, f"signed/app@{signed}", policy="vendor")
    assert await digests_in_force(base) == {sha256(MOVED, policy)}
    # `other/*` kept its policy: not judged again
    assert await verify_events(http, base, f"other/app@{other}") == before

    # SIGHUP to the supervisor: the same, for every worker.
    policy.write_text(STRICT)
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while await digests_in_force(base) != {sha256(STRICT, policy)}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)
    await judged(http, base, f"signed/app@{signed}", policy="strict")

    # The log says which policy is in force: at start and after each reload.
    await asyncio.to_thread(served.stop)
    log = [json.loads(line) for line in served.rest_of_output() if line.startswith("{")]
    in_force = [e for e in log if e["event"].startswith("trust policy")]
    assert in_force[0]["sha256"] == sha256(STRICT, policy), in_force  # at start, once
    assert {e["sha256"] for e in in_force if e["event"] == "trust policy reloaded"} == {
        sha256(MOVED, policy),
        sha256(STRICT, policy),
    }, in_force
    assert any("not reloaded" in e["event"] for e in in_force), in_force

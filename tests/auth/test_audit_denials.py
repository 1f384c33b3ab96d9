"""Refusals leave a trace an auditor can follow (a reader's DELETE, a push outside a grant,
a namespace admin reaching for admin on `*`, an `alg: none` token, throttled logins),
and a flood of refusals adds a bounded number of events, never one per request."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.auth.conftest import Accounts, auth_settings, basic
from tests.faults.conftest import audit_verifies
from tests.support.servers import LiveRegistry, live_registry, registry_config


@pytest.fixture
async def watched(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        auth=auth_settings(
            limits={"failed_logins": 2, "lockout": 60}, denial_window=3600, denial_events=20
        ),
    )
    async with live_registry(config) as live:
        yield live


async def _denials(live: LiveRegistry) -> list[dict[str, Any]]:
    rows = await live.registry.pool.fetch(
        """SELECT actor, actor_kind, repository, source, detail FROM audit_events
           WHERE action = 'access.denied' ORDER BY seq"""
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def _unsigned_token(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_refusals_are_audited(watched: LiveRegistry, http: aiohttp.ClientSession) -> None:
    people = Accounts(watched)
    await people.user("reader", ("team", "reader"))
    await people.user("pusher", ("team", "pusher"))
    await people.user("teamadmin", ("team", "admin"))
    url = watched.url

    async with (
        people.session("reader") as reader,
        reader.delete(f"{url}/v2/team/app/manifests/latest") as r,
    ):
        assert r.status == 403
    async with (
        people.session("pusher") as pusher,
        pusher.post(f"{url}/v2/other/app/blobs/uploads/") as r,
    ):
        assert r.status in (403, 404)
    async with (
        people.session("teamadmin") as admin,
        admin.post(
            f"{url}/api/v1/admin/principals/pusher/grants",
            json={"namespace": "*", "role": "admin"},
        ) as r,
    ):
        assert r.status == 403
    forged = _unsigned_token({"sub": "reader", "access": [], "exp": int(time.time()) + 300})
    async with http.get(
        f"{url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {forged}"}
    ) as r:
        assert r.status == 401
    for _ in range(4):  # two failures, then the lockout answers 429
        async with http.get(
            f"{url}/v2/team/app/tags/list", headers={"Authorization": basic("reader", "wrong")}
        ) as r:
            last = r.status
    assert last == 429

    found = await _denials(watched)
    by_reason = {(d["actor"], d["detail"]["reason"]): d for d in found}
    delete = by_reason[("reader", "deny")]
    assert delete["detail"]["wanted"] == "repository:team/app:delete"
    assert delete["repository"] == "team/app" and delete["source"]
    outside = by_reason.get(("pusher", "hide")) or by_reason[("pusher", "deny")]
    assert outside["detail"]["wanted"].startswith("repository:other/app:")
    escalation = by_reason[("teamadmin", "deny")]
    assert escalation["detail"]["path"] == "/api/v1/admin/principals/pusher/grants"
    assert ("anonymous", "invalid_token") in by_reason
    assert ("anonymous", "rate_limited") in by_reason
    await audit_verifies(watched.config.database.dsn or "")


async def test_a_flood_of_refusals_adds_a_bounded_number_of_events(watched: LiveRegistry) -> None:
    people = Accounts(watched)
    await people.user("reader", ("team", "reader"))
    async with people.session("reader") as reader:

        async def delete(n: int) -> int:
            async with reader.delete(f"{watched.url}/v2/team/app{n % 50}/manifests/x") as r:
                return r.status

        statuses = await asyncio.gather(*(delete(n) for n in range(400)))
    assert set(statuses) == {403}
    assert watched.registry.auth is not None
    await watched.registry.auth.denials.flush()
    found = await _denials(watched)
    # 50 different targets: 20 recorded at once, the rest counted into one overflow
    # event; each group's repeats come as one event at the window's end.
    assert len(found) <= 20 + 20 + 1
    firsts = [d for d in found if "repeated" not in d["detail"]]
    assert len(firsts) == 20
    counted = sum(d["detail"].get("repeated", 0) for d in found) + len(firsts)
    assert counted == 400, "every refusal is counted"
    await audit_verifies(watched.config.database.dsn or "")

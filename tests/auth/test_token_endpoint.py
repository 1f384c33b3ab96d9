"""/token as clients call it (GET with Basic or anonymous, OAuth2 POST as containerd sends
it), its errors, and its limits: request rate, failed logins, body size."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.auth.conftest import Accounts, auth_settings, basic
from tests.auth.test_tokens import claims_of
from tests.support.servers import LiveRegistry, live_registry, registry_config


async def test_oauth2_password_grant(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("alice", ("opendesk", "pusher"))
    form = {
        "grant_type": "password",
        "service": "zoll",
        "client_id": "containerd-client",
        "username": "alice",
        "password": people.passwords["alice"],
        "scope": "repository:opendesk/app:pull,push,delete repository:other/app:pull",
    }
    async with http.post(f"{secured.url}/token", data=form) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        body = await r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "repository:opendesk/app:pull,push"
    assert claims_of(body["access_token"])["access"] == [
        {"type": "repository", "name": "opendesk/app", "actions": ["pull", "push"]}
    ]
    for change, status, error in (
        ({"password": "wrong"}, 400, "invalid_grant"),
        ({"grant_type": "refresh_token"}, 400, "unsupported_grant_type"),
        ({"username": ""}, 400, "invalid_request"),
        ({"service": "elsewhere"}, 400, "invalid_request"),
        ({"scope": "repository:Not Valid:pull"}, 400, "invalid_scope"),
    ):
        async with http.post(f"{secured.url}/token", data={**form, **change}) as r:
            assert (r.status, (await r.json())["error"]) == (status, error), change
    async with http.post(f"{secured.url}/token", data="x=" + "y" * 70000) as r:
        assert r.status == 413


async def test_get_errors(
    secured: LiveRegistry, people: Accounts, http: aiohttp.ClientSession
) -> None:
    await people.user("alice", ("opendesk", "reader"))
    url = f"{secured.url}/token"
    async with http.get(url, headers={"Authorization": basic("alice", "wrong")}) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="zoll"'
    async with http.get(url, params={"service": "elsewhere"}) as r:
        assert r.status == 400
    async with http.get(url, params={"scope": "repository"}) as r:
        assert r.status == 400
    async with http.get(url, headers={"Authorization": "Basic !!!"}) as r:
        assert r.status == 400
    async with http.get(url) as r:  # anonymous, no scope: a token that permits nothing
        assert r.status == 200
        assert claims_of((await r.json())["token"])["access"] == []


@pytest.fixture
async def strict(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    limits = {
        "token_per_second": 2,
        "token_burst": 5,
        "failed_logins": 3,
        "failed_login_refill": 600,
    }
    config = registry_config(
        pg_dsn, tmp_path / "data", "filesystem", None, auth=auth_settings(limits=limits)
    )
    async with live_registry(config) as live:
        yield live


async def test_failed_logins_slow_down(strict: LiveRegistry, http: aiohttp.ClientSession) -> None:
    people = Accounts(strict)
    await people.user("alice", ("opendesk", "reader"))
    url = f"{strict.url}/v2/"
    statuses = []
    for _ in range(4):
        async with http.get(url, headers={"Authorization": basic("alice", "guess")}) as r:
            statuses.append(r.status)
            retry = r.headers.get("Retry-After")
    assert statuses == [401, 401, 401, 429]
    assert retry is not None and 500 <= int(retry) <= 600
    # locked out for now, even with the right password — guessing gains nothing
    async with http.get(url, headers=people.header("alice")) as r:
        assert r.status == 429
    async with http.get(f"{strict.url}/token", headers=people.header("alice")) as r:
        assert r.status == 429
    # other names from the same address are throttled too (the address is)
    await people.user("bob", ("opendesk", "reader"))
    async with http.get(url, headers=people.header("bob")) as r:
        assert r.status == 429


async def test_token_requests_are_rate_limited(
    strict: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    statuses = []
    started = time.monotonic()
    for _ in range(8):
        async with http.get(f"{strict.url}/token") as r:
            statuses.append(r.status)
    assert time.monotonic() - started < 1.0  # the bucket refills at 2/s: well below 8
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]

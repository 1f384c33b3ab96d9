"""/token as clients call it (GET with Basic or anonymous, OAuth2 POST as containerd sends
it), its errors, and its limits: failed-login back-off (never successful use), body size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from registry.config import Config
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


def _strict(pg_dsn: str, data_dir: Path, lockout: float = 600) -> Config:
    limits = {"failed_logins": 3, "lockout": lockout, "max_lockout": 4 * lockout}
    return registry_config(pg_dsn, data_dir, "filesystem", None, auth=auth_settings(limits=limits))


@pytest.fixture
async def strict(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    async with live_registry(_strict(pg_dsn, tmp_path / "data")) as live:
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


async def test_clients_that_ask_for_a_token_before_every_request_are_not_throttled(
    strict: LiveRegistry, http: aiohttp.ClientSession
) -> None:
    """The OCI conformance suite and clients without a token cache: ~130 token requests
    in a few seconds with valid credentials, anonymous ones in between."""
    people = Accounts(strict)
    await people.user("ci", ("opendesk", "pusher"))
    url = f"{strict.url}/token"
    scope = {"service": "zoll", "scope": "repository:opendesk/app:pull,push"}
    started = time.monotonic()
    statuses = []
    for n in range(150):
        headers = people.header("ci") if n % 3 else {}
        async with http.get(url, params=scope, headers=headers) as r:
            statuses.append(r.status)
    assert statuses == [200] * 150
    assert time.monotonic() - started < 10
    form = {"grant_type": "password", "username": "ci", "password": people.passwords["ci"]}
    for _ in range(20):
        async with http.post(url, data=form) as r:
            assert r.status == 200


async def test_failed_logins_back_off_in_every_instance_sharing_the_database(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Two service instances on one PostgreSQL: failures counted by one lock out the
    other, and each failure after a lockout doubles it."""
    async with (
        live_registry(_strict(pg_dsn, tmp_path / "a", lockout=1)) as a,
        live_registry(_strict(pg_dsn, tmp_path / "b", lockout=1)) as b,
    ):
        people = Accounts(a)
        await people.user("alice", ("opendesk", "reader"))
        wrong = {"Authorization": basic("alice", "guess")}
        statuses = []
        for live in (a, b, a):
            async with http.get(f"{live.url}/token", headers=wrong) as r:
                statuses.append(r.status)
        assert statuses == [401, 401, 401]
        async with http.get(f"{b.url}/token", headers=people.header("alice")) as r:
            assert (r.status, r.headers["Retry-After"]) == (429, "1")
        await asyncio.sleep(1.2)
        async with http.get(f"{b.url}/token", headers=wrong) as r:
            assert r.status == 401  # the lockout ended; this failure doubles the next one
        async with http.get(f"{a.url}/token", headers=people.header("alice")) as r:
            assert (r.status, r.headers["Retry-After"]) == (429, "2")
        await asyncio.sleep(2.2)
        async with http.get(f"{a.url}/token", headers=people.header("alice")) as r:
            assert r.status == 200

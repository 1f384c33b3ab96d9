"""A live Zoll with authentication on, and accounts with known passwords."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry.audit import Actor, acting_as
from registry.auth import accounts
from registry.auth.passwords import Hasher
from tests.support.servers import LiveRegistry, live_registry, registry_config

FAST_KDF = 12
"""scrypt cost for tests that create many accounts (the service default is 15)."""


def auth_settings(**extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "enabled": True,
        "scrypt_log2_n": FAST_KDF,
        "principal_cache": 0,
        "limits": {"failed_logins": 1000},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return settings


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@dataclass
class Accounts:
    """Create principals on a live registry and remember their passwords."""

    live: LiveRegistry
    passwords: dict[str, str] = field(default_factory=dict)

    async def user(self, name: str, *grants: tuple[str, str]) -> str:
        password = f"{name}-password-1234"
        with acting_as(Actor("test-setup", "system")):
            await accounts.create_user(
                self.live.registry.pool, Hasher(FAST_KDF), name, password, grants=grants
            )
        self.passwords[name] = password
        return password

    async def robot(self, name: str, *grants: tuple[str, str]) -> tuple[str, str]:
        with acting_as(Actor("test-setup", "system")):
            principal, secret = await accounts.create_robot(
                self.live.registry.pool, Hasher(FAST_KDF), name, grants=grants
            )
        self.passwords[principal.name] = secret
        return principal.name, secret

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": basic(name, self.passwords[name])}

    def session(self, name: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self.header(name), auto_decompress=False)


@pytest.fixture
async def secured(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", None, auth=auth_settings())
    async with live_registry(config) as live:
        yield live


@pytest.fixture
def people(secured: LiveRegistry) -> Accounts:
    return Accounts(secured)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def token_for(
    http: aiohttp.ClientSession,
    live: LiveRegistry,
    *scopes: str,
    auth: str | None = None,
) -> str:
    params = [("service", "zoll"), *(("scope", s) for s in scopes)]
    headers = {"Authorization": auth} if auth else {}
    async with http.get(f"{live.url}/token", params=params, headers=headers) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["token"] == body["access_token"]
    return str(body["token"])

"""Web page fixtures: one live Zoll with authentication per module, and its accounts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from registry.audit import Actor, acting_as
from registry.auth import accounts
from tests.auth.conftest import Accounts, auth_settings
from tests.support.postgres import fresh_database
from tests.support.servers import LiveRegistry, live_registry, registry_config

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@pytest.fixture(scope="module")
async def module_dsn(pg_admin_dsn: str) -> str:
    return await fresh_database(pg_admin_dsn)


def secured_config(dsn: str, data: Any, **overrides: Any) -> Any:
    return registry_config(dsn, data, "filesystem", None, auth=auth_settings(), **overrides)


@pytest.fixture(scope="module")
async def secured_module(
    module_dsn: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[LiveRegistry]:
    """A Zoll with authentication on for the whole module; a module may set
    `ZOLL_OVERRIDES` (config sections) next to its tests."""
    overrides = getattr(request.module, "ZOLL_OVERRIDES", {})
    config = secured_config(module_dsn, tmp_path_factory.mktemp("zoll") / "data", **overrides)
    async with live_registry(config) as live:
        yield live


@pytest.fixture(scope="module")
def people_module(secured_module: LiveRegistry) -> Accounts:
    return Accounts(secured_module)


async def make_public(live: LiveRegistry, namespace: str) -> None:
    """What `zoll users grant anonymous reader NS` does."""
    with acting_as(Actor("test-setup", "system")):
        await accounts.add_grant(live.registry.pool, accounts.ANONYMOUS, namespace, "reader")
    assert live.registry.auth is not None
    live.registry.auth.forget(accounts.ANONYMOUS)


async def login(http: aiohttp.ClientSession, base: str, name: str, password: str) -> str:
    """Log in through the form as a browser does; returns the session cookie's value."""
    async with http.get(f"{base}/ui/login") as r:
        assert r.status == 200
        token = csrf_of(await r.text())
        login_cookie = r.cookies["zoll_login_csrf"].value
    async with http.post(
        f"{base}/ui/login",
        data={"csrf": token, "username": name, "password": password, "next": "/ui/"},
        headers={"Cookie": f"zoll_login_csrf={login_cookie}"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()
        return r.cookies["zoll_session"].value

"""What every handler needs, attached to the aiohttp application once at start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from registry.config import Config
from registry.storage.budget import ByteBudget
from registry.storage.guard import GuardedDriver
from registry.uploads import UploadService

if TYPE_CHECKING:
    from registry.auth.service import AuthService


@dataclass
class Registry:
    """The running registry: configuration, metadata pool, blob driver, upload engine."""

    config: Config
    pool: asyncpg.Pool
    driver: GuardedDriver
    """The configured driver behind deadlines (registry/storage/guard.py)."""
    budget: ByteBudget
    uploads: UploadService
    auth: AuthService | None = None
    """Authentication (None when `auth.enabled` is false: every request is allowed)."""


REGISTRY = web.AppKey("registry", Registry)
REQUEST_ID = web.RequestKey("request_id", str)


def request_id(request: web.Request) -> str | None:
    return request.get(REQUEST_ID)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]

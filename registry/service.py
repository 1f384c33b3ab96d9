"""Assemble a running registry from a Config (pool, migrations, driver) and take it apart."""

from __future__ import annotations

from registry.auth.service import open_auth
from registry.config import Config
from registry.db.migrate import migrate
from registry.db.pool import create_pool
from registry.http.state import Registry
from registry.logs import get_logger
from registry.oci.hashing import RESUMABLE
from registry.storage.base import BlobDriver
from registry.storage.budget import ByteBudget
from registry.storage.filesystem import FilesystemDriver
from registry.storage.guard import GuardedDriver
from registry.storage.s3 import S3Driver
from registry.uploads import UploadService

log = get_logger("zoll.service")


class StartupError(RuntimeError):
    """The service cannot start; the message says what to fix."""


def make_driver(config: Config, budget: ByteBudget) -> GuardedDriver:
    """The configured driver, with deadlines on every call (registry/storage/guard.py)."""
    driver: BlobDriver
    if config.storage.driver == "filesystem":
        driver = FilesystemDriver(config.blob_root)
    elif not config.storage.s3.endpoint:
        raise StartupError("storage.s3.endpoint is required (or let `zoll serve` embed one)")
    else:
        driver = S3Driver(config.storage.s3, budget)
    return GuardedDriver(driver, config.storage)


async def open_registry(config: Config, *, run_migrations: bool = True) -> Registry:
    """Connect to PostgreSQL and storage; apply migrations unless a supervisor did."""
    if not RESUMABLE:
        raise StartupError("libcrypto's SHA256_* API is missing: chunked uploads cannot resume")
    if not config.database.dsn:
        raise StartupError("database.dsn is required (or let `zoll serve` embed PostgreSQL)")
    pool = await create_pool(
        config.database.dsn,
        min_size=config.database.pool_min,
        max_size=config.database.pool_max,
    )
    try:
        if run_migrations:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("migrations applied", versions=[m.version for m in applied])
        auth = await open_auth(config, pool) if config.auth.enabled else None
        budget = ByteBudget(config.storage.buffer_budget, config.storage.buffer_wait)
        driver = make_driver(config, budget)
        await driver.start()
    except BaseException:
        await pool.close()
        raise
    uploads = UploadService(pool, driver, budget, config.uploads, settings=config)
    return Registry(config, pool, driver, budget, uploads, auth)


async def close_registry(registry: Registry) -> None:
    try:
        await registry.driver.close()
    finally:
        await registry.pool.close()

"""How command-line tools reach Zoll's database (and storage).

Administrative commands (`users`, `robots`, `audit`) use `open_database`: the configured
DSN, or the embedded PostgreSQL in the data folder, attached to while `zoll serve` runs
and started around the command when it does not. Commands that work like a service worker
(`mirror run`, `gc`) use `cli_config`, which also needs the running service's embedded S3.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from registry.audit import Actor
from registry.config import Config, ConfigError, load_config
from registry.db.migrate import migrate
from registry.db.pool import create_pool
from registry.embedded.postgres import EmbeddedPostgres, running_dsn
from registry.embedded.seaweedfs import running_endpoint


class NoDatabase(RuntimeError):
    """No database to connect to; the message says how to provide one."""


def _config(args: argparse.Namespace) -> Config:
    """The config file and environment, with --data-dir on top."""
    overrides = {"data_dir": str(args.data_dir)} if getattr(args, "data_dir", None) else {}
    try:
        return load_config(getattr(args, "config", None), overrides=overrides)
    except ConfigError as exc:
        raise NoDatabase(str(exc)) from exc


def cli_data_dir(args: argparse.Namespace) -> Path:
    return _config(args).data_dir


def cli_settings(args: argparse.Namespace) -> Config:
    """The configuration as the command sees it (file, environment, --data-dir)."""
    return _config(args)


def resolve_dsn(args: argparse.Namespace) -> str:
    if getattr(args, "dsn", None):
        return str(args.dsn)
    config = _config(args)
    if config.database.dsn:
        return config.database.dsn
    dsn = running_dsn(config.data_dir / "postgres")
    if dsn is None:
        raise NoDatabase(
            f"no database: pass --dsn, set database.dsn, or start `zoll serve` "
            f"(its embedded PostgreSQL lives in {config.data_dir / 'postgres'})"
        )
    return dsn


def cli_config(args: argparse.Namespace) -> Config:
    """The service's configuration with the database and S3 endpoint filled in from a
    running `zoll serve` when they are embedded, so a CLI process can work like a worker."""
    config = _config(args)
    dsn = resolve_dsn(args)
    config = config.model_copy(update={"database": config.database.model_copy(update={"dsn": dsn})})
    if config.storage.driver == "s3" and not config.storage.s3.endpoint:
        found = running_endpoint(config.data_dir / "seaweedfs")
        if found is None:
            raise NoDatabase("no S3 endpoint: set storage.s3.endpoint or start `zoll serve`")
        endpoint, access, secret = found
        s3 = config.storage.s3.model_copy(
            update={"endpoint": endpoint, "access_key": access, "secret_key": secret}
        )
        config = config.model_copy(update={"storage": config.storage.model_copy(update={"s3": s3})})
    return config


def cli_actor() -> Actor:
    """Changes made from the command line are audited as `cli:<os user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", "system", source="cli")


@asynccontextmanager
async def open_database(config: Config) -> AsyncIterator[asyncpg.Pool]:
    embedded: EmbeddedPostgres | None = None
    dsn = config.database.dsn
    if not dsn:
        embedded = EmbeddedPostgres(config.data_dir / "postgres")
        dsn = await asyncio.to_thread(embedded.start, config.connections_needed())
    try:
        pool = await create_pool(dsn, min_size=1, max_size=2, bulk=False)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
            yield pool
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)

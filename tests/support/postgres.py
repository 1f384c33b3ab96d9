"""A real PostgreSQL for the tests (PyPI pgserver), one per test process.

Each test that needs a database gets a fresh one (CREATE DATABASE) with Zoll's
migrations applied, so tests never see each other's rows.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pgserver

from registry.db.migrate import migrate


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start an embedded PostgreSQL in a temporary folder; yield its admin DSN."""
    with tempfile.TemporaryDirectory(prefix="zoll-pg-") as folder:
        server = pgserver.get_server(folder, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def with_database(dsn: str, database: str) -> str:
    """The same DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def fresh_database(admin_dsn: str, *, migrated: bool = True) -> str:
    """Create an empty database (with migrations applied unless told not to)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, name)
    if migrated:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    return dsn

"""Versioned SQL migrations, applied at start under an advisory lock.

Files are `migrations/NNNN_name.sql`, applied in order, each in its own transaction.
Several worker processes may start at once; the advisory lock makes one of them apply
and the others wait and then find nothing to do. Number ranges: 0001–0099 registry core,
0100–0199 attestations and transparency log, 0200–0299 policy, 0300–0399 auth and
audit, 0400–0499 mirroring and pipeline, 0500–0599 rebuilds, 0700–0719 web pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from registry.db.pool import Conn

_LOCK_KEY = 0x5A6F6C6C  # "Zoll"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """All migrations shipped in the package, in order."""
    found = []
    for entry in resources.files("registry.db.migrations").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in {versions}")
    return found


async def migrate(conn: Conn) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    applied_now: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied_now.append(migration)
    return applied_now

"""An embedded PostgreSQL (PyPI pgserver) in the data folder, for installs without a DSN."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from registry.logs import get_logger
from registry.processes import alive

log = get_logger("zoll.embedded")
DATABASE = "zoll"
HANDLES = ".handle_pids.json"
"""pgserver's list of the processes that hold the server."""
DEFAULT_CONNECTIONS = 100
"""PostgreSQL's own default `max_connections`."""


class EmbeddedPostgres:
    """Starts on `start()`, stops on `stop()`; data survives restarts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._server: Any = None
        self._connections = DEFAULT_CONNECTIONS
        self.dsn = ""

    def start(self, connections: int = DEFAULT_CONNECTIONS) -> str:
        """Start (initialising the folder the first time) and allow at least
        `connections` clients; raising the limit restarts the server once."""
        self._connections = connections
        self.folder.mkdir(parents=True, exist_ok=True)
        if _forget_dead_handles(self.folder) and self.running():
            # pg_ctl daemonises the server, so it outlives a crashed `zoll serve`; with
            # its holders gone it is adopted here and stopped with this run.
            log.warning("adopting the embedded postgres a crashed run left running")
        admin = self._start_server()
        if asyncio.run(_allow_connections(admin, connections)):
            if self._sole_holder():
                self._server.cleanup()
                admin = self._start_server()
                log.info("embedded postgres restarted", max_connections=connections)
            else:
                log.warning(
                    "max_connections is raised from the next start: other processes hold "
                    "the embedded postgres",
                    wanted=connections,
                )
        asyncio.run(_ensure_database(admin))
        parts = urlsplit(admin)
        self.dsn = urlunsplit((parts.scheme, parts.netloc, f"/{DATABASE}", parts.query, ""))
        log.info("embedded postgres started", folder=str(self.folder))
        return self.dsn

    def _start_server(self) -> str:
        import pgserver  # only a starting server needs it (CLI tools just read the socket)

        self._server = pgserver.get_server(  # type: ignore[attr-defined]
            str(self.folder), cleanup_mode="stop"
        )
        return str(self._server.get_uri())

    def _sole_holder(self) -> bool:
        return _holders(self.folder) == [os.getpid()]

    def running(self) -> bool:
        """Whether the server process (the postmaster) still runs."""
        pid = postmaster_pid(self.folder)
        return pid is not None and alive(pid)

    def restart(self) -> None:
        """Start again after the server died: same folder, same socket, same DSN."""
        self.stop()
        import pgserver

        # pgserver keeps one handle per folder per process; the dead server's must go.
        pgserver.PostgresServer._instances.pop(self.folder.resolve(), None)  # type: ignore[attr-defined]
        self.start(self._connections)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded postgres stopped")


def postmaster_pid(folder: Path) -> int | None:
    """The server's pid from its `postmaster.pid` (a crashed server leaves it behind)."""
    try:
        first = (folder / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def _forget_dead_handles(folder: Path) -> bool:
    """pgserver stops PostgreSQL when the last process holding it exits, and remembers the
    holders in a file; a killed `zoll serve` stays listed forever, and the server would
    then outlive every later run. Drop holders that no longer exist; True when no live
    holder is left but dead ones were listed (the server, if it runs, is an orphan)."""
    pids = _holders(folder)
    if pids is None:
        return False
    running = [p for p in pids if isinstance(p, int) and alive(p)]
    if running != pids:
        (folder / HANDLES).write_text(json.dumps(running))
    return not running and bool(pids)


def _holders(folder: Path) -> list[object] | None:
    """pgserver's list of holder pids; None when there is none or it is unreadable."""
    try:
        pids = json.loads((folder / HANDLES).read_text())
    except (OSError, ValueError):
        return None
    return pids if isinstance(pids, list) else None


async def _allow_connections(admin_dsn: str, wanted: int) -> bool:
    """Raise `max_connections` to `wanted` (never lower it); True when a restart is due."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        current = int(await conn.fetchval("SHOW max_connections"))
        if current >= wanted:
            return False
        await conn.execute(f"ALTER SYSTEM SET max_connections = {int(wanted)}")
        return True
    finally:
        await conn.close()


async def _ensure_database(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def running_dsn(folder: Path) -> str | None:
    """The DSN of an embedded PostgreSQL a running `zoll serve` started in `folder`, so
    command-line tools can reach it over its unix socket; None if it is not running."""
    if not (folder / "postmaster.pid").exists():
        return None
    return f"postgresql://postgres:@/{DATABASE}?host={folder.resolve()}"

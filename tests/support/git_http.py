"""A bare git repository served over plain HTTP on 127.0.0.1 (git's "dumb" protocol:
static files plus `info/refs`), so a source named by an image itself is a network URL,
as rebuilds from provenance or labels require."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web


def publish(repo: Path) -> None:
    """Refresh the index files a dumb-HTTP clone reads (after every push)."""
    subprocess.run(["git", "--git-dir", str(repo), "update-server-info"], check=True)


@asynccontextmanager
async def git_http(repo: Path) -> AsyncIterator[str]:
    """Serve `repo` (a bare repository); yields its clone URL."""
    publish(repo)
    app = web.Application()
    app.router.add_static(f"/{repo.name}", repo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/{repo.name}"
    finally:
        await runner.cleanup()

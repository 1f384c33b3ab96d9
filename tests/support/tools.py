"""Run the real OCI command-line clients (skopeo) the way an operator would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any


async def run(*args: str, timeout: float = 300) -> str:
    """Run a command without blocking the event loop (the registry under test shares it)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{err.decode()}")
    return out.decode()


async def skopeo(*args: str) -> str:
    return await run("skopeo", "--insecure-policy", *args)


def layout_index(layout: Path) -> dict[str, Any]:
    index: dict[str, Any] = json.loads((layout / "index.json").read_text())
    return index


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, encoded = digest.split(":", 1)
    return (layout / "blobs" / algorithm / encoded).read_bytes()

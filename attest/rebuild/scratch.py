"""Private scratch directories that leave nothing behind.

A rebuild clones, exports base images and keeps the builder's storage in one scratch
directory, removed at the end whatever happened. Removal refuses to descend into a
mount point (a builder that leaked a bind mount of /dev must not make Zoll delete the
host's /dev): it detaches such mounts first and keeps the directory if that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this process's mount namespace."""
    root = str(path.resolve())
    found: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(" ")
        if len(parts) > 4:
            point = _unescape(parts[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return found


def _retry_writable(func: Callable[..., Any], path: str, _exc: BaseException) -> None:
    """rmtree error handler: make the parent writable (read-only git objects) and retry."""
    with contextlib.suppress(OSError):
        parent = os.path.dirname(path)  # noqa: PTH120
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)  # noqa: PTH101,PTH116
        func(path)


def remove_tree(path: Path) -> bool:
    """Delete `path`; False (and the tree kept) when a mount under it cannot be detached."""
    if not path.exists():
        return True
    for point in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if mounts_under(path):
        return False
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_retry_writable)
    else:
        shutil.rmtree(path, onerror=lambda f, p, e: _retry_writable(f, p, e[1]))
    return not path.exists()


@contextlib.asynccontextmanager
async def scratch_dir(parent: Path | None) -> AsyncIterator[Path]:
    """A fresh private directory (mode 0700) removed on exit, also on cancellation."""
    if parent is not None:
        await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
    path = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="zoll-rebuild-", dir=parent))
    try:
        yield path
    finally:
        await asyncio.shield(asyncio.to_thread(remove_tree, path))

"""Key files on disk: private to the service user, written atomically, under a lock.

Several worker processes start at once; the lock makes exactly one of them create the
first key, and the others load it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path


class KeyringError(ValueError):
    """The keyring cannot be loaded, created or changed; the message says why."""


class KeyPermissionError(KeyringError):
    """A key folder or private key file is readable by others than the service user."""


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (0700) or check an existing one is not open to group or others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(path)
    return path


def check_private(path: Path) -> None:
    info = path.stat()
    if info.st_uid != os.getuid():
        raise KeyPermissionError(f"{path} belongs to uid {info.st_uid}, not to the service user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise KeyPermissionError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):o}; "
            f"run 'chmod {'700' if path.is_dir() else '600'} {path}'"
        )


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write a file readable only by the owner, atomically (temp file + rename)."""
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the key folder, across processes."""
    fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

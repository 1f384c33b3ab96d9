"""Whether a process still runs: how stale pid files and announcements are told apart."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


def alive(pid: int) -> bool:
    """True if `pid` runs (someone else's process counts: signalling it is refused); a
    zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def die_with_parent() -> None:
    """Ask the kernel to end this process when its parent dies (Linux): a worker must not
    go on serving the port after its supervisor crashed."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before the call
            os.kill(os.getpid(), signal.SIGTERM)


def process_id() -> str:
    """`host:pid` of this process: how job claims and upload leases name their holder, so
    the holders of a dead process can be found and released."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_holders(
    holders: list[str], host: str, running: Callable[[int], bool] = alive
) -> list[str]:
    """The `host:pid[:…]` names among `holders` whose process on `host` no longer runs."""
    dead = []
    for holder in holders:
        parts = holder.split(":")
        if (
            len(parts) >= 2
            and parts[0] == host
            and parts[1].isdigit()
            and not running(int(parts[1]))
        ):
            dead.append(holder)
    return dead

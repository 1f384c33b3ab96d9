"""Whether a process still runs: how stale pid files and announcements are told apart."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True if `pid` runs (someone else's process counts: signalling it is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""Other processes of this machine: whether one still runs (how stale pid files and
announcements are told apart), and which one listens on a port (what `zoll serve` names
when its port is taken)."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True if `pid` runs (someone else's process counts: signalling it is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_holder(port: int) -> str | None:
    """`process 1234 (zoll serve)` for the process listening on TCP `port`, as far as this
    user may see (Linux /proc); None when it cannot be told."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            listening = len(fields) > 9 and fields[3] == "0A"  # TCP_LISTEN
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in inodes:
                    return f"process {proc.name} ({_command(proc)})"
            except OSError:
                continue
    return None


def _command(proc: Path) -> str:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [Path(a.decode(errors="replace")).name for a in argv[:1]]
    words += [a.decode(errors="replace") for a in argv[1:3] if a]
    if "zoll" in words and "serve" in words:
        return "another zoll serve"
    return " ".join(words)[:80] or "?"

"""Other processes of this machine: whether one still runs (how stale pid files and
announcements are told apart), which one listens on a port (what `zoll serve` names
when its port is taken), and work done in a short-lived child process."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

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


def die_with_parent(parent: int) -> None:
    """Ask the kernel to end this process when its parent (process `parent`, taken before
    the fork) dies (Linux): a worker must not go on serving the port after its supervisor
    crashed. Not "is my parent process 1": in a container the supervisor is process 1."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call
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


def high_water_kib() -> int:
    """This process's peak resident memory (VmHWM). Unlike `ru_maxrss` it does not carry
    the parent's peak across fork and exec, so a child measures only itself."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def until_single_threaded(seconds: float = 5.0) -> None:
    """Wait (briefly) until the threads the start used (`asyncio.to_thread`, name
    lookups) have really ended: Python's join returns before the thread's C-level exit
    handlers run, and OpenSSL's takes a lock. A process forked meanwhile (a worker, a
    `run_in_child` child) inherits that lock held and hangs at its first key or random
    number, never ready (seen once in tests/faults/test_crash_orphans.py)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sum(1 for _ in Path("/proc/self/task").iterdir()) <= 1:
                return
        except OSError:  # no /proc
            return
        time.sleep(0.005)


class ChildFailed(RuntimeError):
    """Work in a child process raised an exception it was not expected to (its traceback
    was printed there), or the child died."""


def run_in_child(work: Callable[[], T], expected: tuple[type[Exception], ...] = ()) -> T:
    """`work()` in a forked child process; its result (pickled) comes back here, and so
    does an exception of an `expected` type, raised here as it was there.

    For work whose imports this process must not keep: what the child loads goes with it
    (`zoll serve`'s supervisor checks the trust roots and prepares the database this way,
    docs/benchmarks.md). Call it while this process starts no other thread."""
    until_single_threaded()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exit handlers, no cleanup of what the parent owns
        os.close(read)
        code = 0
        try:
            try:
                outcome: tuple[bool, object] = (True, work())
            except expected as exc:
                outcome = (False, exc)
            try:
                data = pickle.dumps(outcome)
            except Exception:  # an exception that does not pickle: its message does
                what = outcome[1]
                data = pickle.dumps((False, ChildFailed(f"{type(what).__name__}: {what}")))
            with os.fdopen(write, "wb") as out:
                out.write(data)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildFailed(f"the child process ended with {os.waitstatus_to_exitcode(status)}")
    ok, value = pickle.loads(data)  # noqa: S301 - our own child's bytes
    if ok:
        return value  # type: ignore[no-any-return]
    assert isinstance(value, Exception)
    raise value

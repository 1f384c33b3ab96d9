"""Run a builder (or git) as a subprocess with a wall-clock timeout and resource limits.

The child starts a new session, so on timeout or cancellation the whole process group
(buildah, its chroot runtime, the RUN step's shell and whatever that started) is killed,
not just the direct child. Limits are applied with util-linux `prlimit` in front of the
command rather than a `preexec_fn`, which is unsafe in a process that has threads.
Output is streamed line by line to a callback and kept as a bounded tail for reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MAX_LINE: Final = 4096
KILL_GRACE: Final = 5.0


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    """Bounds for one subprocess; None leaves a limit unset."""

    timeout: float = 3600.0
    """Wall-clock seconds before the whole process group is killed."""
    memory_bytes: int | None = 16 << 30
    """Address space per process (RLIMIT_AS)."""
    cpu_seconds: int | None = None
    """CPU time per process (RLIMIT_CPU)."""
    max_file_bytes: int | None = None
    """Largest file a process may write (RLIMIT_FSIZE)."""
    max_open_files: int | None = 65536


class LogTail:
    """The last lines of a process's output, bounded in lines and characters."""

    def __init__(self, max_lines: int = 200) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self.total_lines = 0

    def add(self, line: str) -> None:
        self._lines.append(line[:MAX_LINE])
        self.total_lines += 1

    def text(self, last: int | None = None) -> str:
        lines = list(self._lines)
        if last is not None:
            lines = lines[-last:]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int | None
    timed_out: bool
    seconds: float
    output: str
    """The first 64 KiB of output (for commands whose output is their answer)."""


def _cap(resource_id: int, wanted: int) -> int:
    """`wanted`, lowered to the current hard limit (an unprivileged raise would fail)."""
    _soft, hard = resource.getrlimit(resource_id)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def limited_argv(argv: Sequence[str], limits: ProcessLimits) -> list[str]:
    """`argv` behind `prlimit` with the limits that are set."""
    wanted = (
        ("--as", resource.RLIMIT_AS, limits.memory_bytes),
        ("--cpu", resource.RLIMIT_CPU, limits.cpu_seconds),
        ("--fsize", resource.RLIMIT_FSIZE, limits.max_file_bytes),
        ("--nofile", resource.RLIMIT_NOFILE, limits.max_open_files),
    )
    flags = [f"{flag}={_cap(rid, value)}" for flag, rid, value in wanted if value is not None]
    if not flags:
        return list(argv)
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise FileNotFoundError("prlimit (util-linux) is needed to limit the builder")
    return [prlimit, *flags, "--", *argv]


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the group, SIGKILL after a grace period; always reaps the child."""
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE)
    _kill_group(proc.pid, signal.SIGKILL)
    await proc.wait()


async def _pump(
    stream: asyncio.StreamReader,
    tail: LogTail,
    on_line: Callable[[str], None] | None,
    captured: list[str],
) -> None:
    pending = b""
    size = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        if len(pending) > MAX_LINE:
            lines.append(pending)
            pending = b""
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            tail.add(line)
            if size < 65536:
                captured.append(line)
                size += len(line) + 1
            if on_line is not None:
                on_line(line)
    if pending:
        line = pending.decode("utf-8", "replace")
        tail.add(line)
        if size < 65536:
            captured.append(line)
        if on_line is not None:
            on_line(line)


async def run_process(
    argv: Sequence[str],
    *,
    limits: ProcessLimits,
    env: Mapping[str, str],
    tail: LogTail,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run `argv` to completion or timeout; stdout and stderr merged, line by line.

    Raises FileNotFoundError when the program (or prlimit) is missing. Cancelling the
    calling task kills the process group before the cancellation propagates.
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *limited_argv(argv, limits),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdout is not None
    captured: list[str] = []
    timed_out = False
    try:
        async with asyncio.timeout(limits.timeout):
            await _pump(proc.stdout, tail, on_line, captured)
            await proc.wait()
    except TimeoutError:
        timed_out = True
        tail.add(f"[zoll] killed after {limits.timeout:.0f} s (timeout)")
        await _stop(proc)
    except BaseException:
        await asyncio.shield(_stop(proc))
        raise
    finally:
        # Children that outlived the leader (daemonised helpers) go with the group.
        _kill_group(proc.pid, signal.SIGKILL)
    return ProcessResult(
        None if timed_out else proc.returncode,
        timed_out,
        time.monotonic() - started,
        "\n".join(captured),
    )

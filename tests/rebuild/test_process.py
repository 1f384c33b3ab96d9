"""The builder's subprocess: killed whole on timeout or cancellation, limits applied."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from attest.rebuild.process import LogTail, ProcessLimits, run_process
from attest.rebuild.scratch import remove_tree, scratch_dir
from tests.rebuild.procs import processes_running

ENV = {"PATH": os.environ["PATH"]}


async def test_a_timeout_kills_the_whole_process_group() -> None:
    tail = LogTail()
    result = await run_process(
        ["sh", "-c", "echo started; sleep 4242 & sleep 4243; wait"],
        limits=ProcessLimits(timeout=1, memory_bytes=None),
        env=ENV,
        tail=tail,
    )
    assert result.timed_out and result.returncode is None
    assert tail.text().splitlines() == ["started", "[zoll] killed after 1 s (timeout)"]
    assert processes_running("sleep 4242") == processes_running("sleep 4243") == []


async def test_cancelling_the_caller_kills_the_process_group() -> None:
    task = asyncio.create_task(
        run_process(
            ["sh", "-c", "sleep 4244 & sleep 4245"],
            limits=ProcessLimits(timeout=600, memory_bytes=None),
            env=ENV,
            tail=LogTail(),
        )
    )
    await asyncio.sleep(0.5)
    assert processes_running("sleep 4245")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert processes_running("sleep 4244") == processes_running("sleep 4245") == []


async def test_the_memory_limit_applies_to_the_builder() -> None:
    tail = LogTail()
    result = await run_process(
        [sys.executable, "-c", "bytearray(1 << 30)"],
        limits=ProcessLimits(timeout=60, memory_bytes=256 << 20),
        env=ENV,
        tail=tail,
    )
    assert result.returncode != 0
    assert "MemoryError" in tail.text()


async def test_output_streams_line_by_line_and_the_tail_is_bounded() -> None:
    seen: list[str] = []
    tail = LogTail(max_lines=10)
    result = await run_process(
        ["sh", "-c", "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done; echo err >&2"],
        limits=ProcessLimits(timeout=60),
        env=ENV,
        tail=tail,
        on_line=seen.append,
    )
    assert result.returncode == 0
    assert len(seen) == 501 and seen[0] == "line 0" and seen[-1] == "err"
    assert tail.total_lines == 501
    assert tail.text().splitlines() == [f"line {i}" for i in range(491, 500)] + ["err"]


async def test_scratch_removal_never_follows_a_leaked_mount(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("host data")
    async with scratch_dir(tmp_path / "work") as scratch:
        inside = scratch / "rootfs" / "dev"
        inside.mkdir(parents=True)
        subprocess.run(["mount", "--bind", str(precious), str(inside)], check=True)
        (scratch / "storage.db").write_text("builder state")
    assert list((tmp_path / "work").iterdir()) == []
    assert (precious / "keep.txt").read_text() == "host data"
    assert remove_tree(tmp_path / "does-not-exist")

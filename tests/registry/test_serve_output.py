"""What `zoll serve` prints at its first start, read as an operator reads it: the admin
password on a line of its own that nothing wraps, the hint whole, and log lines without
Python object dumps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.served import Served

pytestmark = pytest.mark.slow


async def test_first_start_output_reads_cleanly(tmp_path: Path) -> None:
    served = await asyncio.to_thread(
        Served, tmp_path / "zoll-data", "--storage", "filesystem", env={"ZOLL_LOG__FORMAT": "json"}
    )
    try:
        password = served.admin_password()
        assert password is not None
    finally:
        await asyncio.to_thread(served.stop)
    lines = [line.rstrip("\n") for line in served.output]
    [shown] = [line for line in lines if "password:" in line]
    assert shown.split("password:", 1)[1].split() == [password], shown  # nothing beside it
    assert any("zoll users passwd admin" in line for line in lines), lines  # not wrapped
    for line in lines:
        assert "Repair" not in line and "b'" not in line and 'b"' not in line, line
        if line.startswith("{"):
            event = json.loads(line)
            assert all(not isinstance(v, str) or len(v) < 200 for v in event.values()), event

"""Logs follow the process's current stderr: a replaced or closed stream never fails work."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys

import asyncpg
import pytest
import structlog
import structlog.testing

from registry import server
from registry.config import LogConfig
from registry.embedded.ports import free_port
from registry.logs import configure_logging


def test_logs_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(LogConfig(level="info", format="json"))
    log = structlog.get_logger("zoll.test")
    log.info("before", n=1)
    first.close()  # e.g. a test harness's capture stream, or a terminal that went away
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.warning("after", n=2)
    logging.getLogger("zoll.stdlib").warning("from stdlib")
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("after", "warning"),
        ("from stdlib", "warning"),
    ]


def test_logging_loads_on_the_first_line_and_keeps_stdout_clean() -> None:
    """A command that logs nothing never loads structlog (and rich); the first line does,
    with the configured renderer, and stdlib records keep their `extra` fields."""
    probe = (
        "import logging, sys\n"
        "from registry.config import LogConfig\n"
        "from registry.logs import configure_logging, get_logger\n"
        "configure_logging(LogConfig(level='info', format='json'))\n"
        "log = get_logger('zoll.test')\n"
        "loaded_early = 'structlog' in sys.modules\n"
        "log.info('hello', n=1)\n"
        "logging.getLogger('registry.oci.client').info('retrying', extra={'delay': 0.5})\n"
        "log.debug('dropped')\n"
        "print(loaded_early, 'structlog' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("hello", "info"),
        ("retrying", "info"),
    ]
    assert lines[0]["n"] == 1 and lines[1]["delay"] == 0.5


async def test_periodic_work_that_keeps_failing_is_logged_once_then_reminded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Periodic work (folding counts, expiring uploads, GC) while the database is away:
    the first failure with its traceback, then a reminder now and then, not a traceback
    every few seconds from every worker; and a line when it works again."""
    port = free_port()  # nothing listens: the database is away
    calls = 0

    async def fold() -> None:
        nonlocal calls
        calls += 1
        if calls <= 40:
            await asyncpg.connect(f"postgresql://zoll@127.0.0.1:{port}/zoll", timeout=2)

    monkeypatch.setattr(server, "FAILURE_REMINDER", 0.2)
    stopping = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(server._every(0.01, stopping, fold, "folding failed"))
        async with asyncio.timeout(30):
            while calls < 45:
                await asyncio.sleep(0.01)
        stopping.set()
        await task
    events = [entry["event"] for entry in logs]
    assert events.count("folding failed") == 1
    assert 1 <= events.count("folding failed, still") < 10, events
    assert events.count("folding failed before, works again") == 1

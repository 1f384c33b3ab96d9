"""Logs follow the process's current stderr: a replaced or closed stream never fails work."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
import structlog

from registry.config import LogConfig
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

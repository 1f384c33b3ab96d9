"""Logs follow the process's current stderr: a replaced or closed stream never fails work."""

from __future__ import annotations

import io
import json
import logging
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

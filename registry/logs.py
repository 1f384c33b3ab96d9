"""structlog setup: JSON lines for machines, colours in a terminal, a request id on each line."""

from __future__ import annotations

import logging
import sys

import structlog

from registry.config import LogConfig


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured:
    a replaced or closed stream (test capture, daemonising) must never fail a request."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(config: LogConfig) -> None:
    """Route structlog and stdlib logging through one renderer chosen by `config.format`."""
    fmt = config.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    level = getattr(logging, config.level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))
    for noisy in ("botocore", "aiobotocore", "urllib3", "aiohttp.access", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

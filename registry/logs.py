"""structlog setup: JSON lines for machines, colours in a terminal, a request id on each line.

structlog is loaded on the first line logged, not at import: it pulls in rich's traceback
renderer, ~80 ms that a `zoll mirror apply` logging nothing used to pay before queueing
anything. So modules take their logger from `get_logger` here, and `configure_logging`
applies its settings the moment structlog loads (at once when it already has).
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


class LogSettings(Protocol):
    """What logging needs of `registry.config.LogConfig` (commands pass a lighter one)."""

    @property
    def level(self) -> str: ...

    @property
    def format(self) -> str: ...


class CommandLogging(NamedTuple):
    """Commands log warnings only, to stderr (stdout stays for --json); loading the
    configuration models just for this would cost a quick command ~100 ms."""

    level: str = "warning"
    format: str = "auto"


_QUIET = ("urllib3", "aiohttp.access", "pgserver")
_pending: LogSettings | None = None
_renderer: Any = None


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured:
    a replaced or closed stream (test capture, daemonising) must never fail a request."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _structlog() -> ModuleType:
    """structlog, configured with the settings `configure_logging` was last given."""
    global _pending
    import structlog

    if _pending is not None:
        config, _pending = _pending, None
        _apply(structlog, config)
    return structlog


class _LazyLogger:
    """A named logger that loads structlog when it is first used."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            self._logger = _structlog().get_logger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger for `name` that costs nothing until it logs."""
    return cast("FilteringBoundLogger", _LazyLogger(name))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Routes stdlib records (asyncpg, aiohttp, registry.oci.client) through the structlog
    renderer; the formatter is built from structlog on the first record."""

    def format(self, record: logging.LogRecord) -> str:
        if self.formatter is None:
            structlog = _structlog()
            self.setFormatter(
                structlog.stdlib.ProcessorFormatter(
                    foreign_pre_chain=[*_shared(structlog), structlog.stdlib.ExtraAdder()],
                    processors=[
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        _renderer,
                    ],
                )
            )
        return super().format(record)


def _shared(structlog: ModuleType) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(config: LogSettings) -> None:
    """Route structlog and stdlib logging through one renderer chosen by `config.format`."""
    global _pending
    level = getattr(logging, config.level.upper())
    root = logging.getLogger()
    root.handlers[:] = [_Handler(_CurrentStderr())]
    root.setLevel(max(level, logging.INFO))
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _pending = config
    if "structlog" in sys.modules:
        _structlog()


def _apply(structlog: ModuleType, config: LogSettings) -> None:
    global _renderer
    fmt = config.format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    _renderer = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*_shared(structlog), structlog.processors.format_exc_info, _renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, config.level.upper())),
        # One write per line: lines of several worker processes sharing a pipe never mix.
        logger_factory=structlog.WriteLoggerFactory(_CurrentStderr()),
        cache_logger_on_first_use=True,
    )

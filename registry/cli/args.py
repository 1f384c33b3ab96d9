"""Command-line options several commands share; standard library only, so a command's
module can declare them without loading the configuration models."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML config file (or ZOLL_CONFIG)")
    p.add_argument("--data-dir", type=Path, help="data folder (default ./zoll-data)")


def add_database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="PostgreSQL DSN (default: from --config, or the "
        "embedded database of a running `zoll serve`)",
    )
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument("--config", type=Path, help="YAML config file (or ZOLL_CONFIG)")
    if not any(a.dest == "data_dir" for a in parser._actions):
        parser.add_argument("--data-dir", type=Path, help="data folder (default ./zoll-data)")


def add_service_args(parser: argparse.ArgumentParser, what: str) -> None:
    """How every command that can work through a running service reaches it: `--url` (or
    ZOLL_URL) with credentials from ZOLL_USER and ZOLL_PASSWORD, else the service running
    from the data folder, else the database."""
    parser.add_argument(
        "--url",
        default=os.environ.get("ZOLL_URL"),
        help=f"{what} through this service's API (or ZOLL_URL; credentials from ZOLL_USER "
        "and ZOLL_PASSWORD); default: the service running from the data folder, if any, "
        "else the database",
    )

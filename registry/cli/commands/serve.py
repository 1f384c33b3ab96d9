"""`zoll serve`: run the registry (embedded PostgreSQL and S3 unless configured)."""

from __future__ import annotations

import argparse
from typing import Any

from registry.cli.args import add_config_args
from registry.cli.output import console
from registry.config import Config, ConfigError, load_config
from registry.local_service import base_url
from registry.processes import run_in_child


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the registry service",
        description="Run Zoll. Without a database DSN or S3 endpoint it starts embedded "
        "PostgreSQL and SeaweedFS under the data folder and stops them on exit.",
    )
    add_config_args(p)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 5000)")
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.add_argument("--storage", choices=["s3", "filesystem"], help="blob storage driver")
    p.set_defaults(handler=_serve)


def config_from_args(args: argparse.Namespace) -> Config:
    """The config file and environment, with command-line flags on top."""
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = str(args.data_dir)
    http = {k: getattr(args, k, None) for k in ("host", "port", "workers")}
    if any(v is not None for v in http.values()):
        overrides["http"] = {k: v for k, v in http.items() if v is not None}
    if getattr(args, "storage", None):
        overrides["storage"] = {"driver": args.storage}
    return load_config(args.config, overrides=overrides)


def _banner(config: Config, port: int) -> None:
    address = base_url(config.http.host, port).removeprefix("http://")
    console.print(f"[bold green]Zoll is serving on http://{address}[/] (Ctrl-C stops it)")
    console.print(
        f"  data folder {config.data_dir.resolve()}, storage {config.storage.driver}, "
        f"{config.http.workers} worker(s)"
    )
    creds = " --dest-creds admin:PASSWORD" if config.auth.enabled else ""
    console.print("Push an image with skopeo (plain HTTP on loopback):")
    console.print(
        f"  skopeo copy --dest-tls-verify=false{creds} oci:./my-layout:tag "
        f"docker://{address}/demo/app:1.0",
        soft_wrap=True,
    )
    console.print(
        f"  skopeo inspect --tls-verify=false{creds.replace('dest-', '')} "
        f"docker://{address}/demo/app:1.0",
        soft_wrap=True,
    )
    if config.auth.enabled:
        console.print("  (accounts: zoll users --help, zoll robots --help; docs/auth.md)")


def _admin_created(password: str) -> None:
    """The password on a line of its own that nothing wraps (it is copied from here)."""
    console.print("[bold yellow]First start: created the account 'admin' (admin on '*').[/]")
    console.print(f"  password: [bold]{password}[/]", soft_wrap=True)
    console.print("  (shown only now; set another with: zoll users passwd admin)", soft_wrap=True)


def check_trust(config: Config) -> None:
    """Load the trusted roots and the trust policy once before anything starts: a broken
    file is one sentence here (a `ConfigError`), not a traceback from every worker.

    In a child process: reading the roots loads sigstore, which this process — and every
    worker forked from it — would otherwise keep for good (~25 MiB), though only
    verification needs it and loads it then (registry/pipeline/services.py)."""

    def check() -> None:
        from registry.pipeline.services import load_trust

        load_trust(config)

    run_in_child(check, expected=(ConfigError,))


def _serve(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        check_trust(config)  # before anything starts: a broken root or policy stops here
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    from registry.logs import configure_logging
    from registry.server import StartError, run

    configure_logging(config.log)
    try:
        return run(config, _banner, _admin_created)
    except StartError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        return 2

"""`zoll rebuild`: rebuild an image from its source offline and show whether it reproduces.

    zoll rebuild oci:./layout:v1 --recipe recipe.yaml [--base oci:./bases] [--json]
    zoll rebuild oci:./layout:v1 --source ./checkout      # build a local tree
    zoll rebuild oci:./layout:v1 --provenance prov.json   # recipe from SLSA provenance
    zoll rebuild docker://zoll.example.org/opendesk/app:1.0 --recipe recipe.yaml

Progress and the build log stream to stderr; the differences are a table (or JSON on
stdout with --json). Exit codes: 0 reproduced, 1 differs, 2 failed (or unusable input).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
from dataclasses import replace
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from attest.intoto import Statement
from attest.rebuild import (
    DiffLimits,
    ImageDiff,
    LayoutBases,
    PathSource,
    RebuildLimits,
    RebuildResult,
    RecipeError,
    RecipeSpec,
    load_recipe,
    rebuild,
)
from attest.results import VerificationFailure
from attest.statements import Verifier
from registry import __version__
from registry.cli.output import add_json_flag, console, emit_json
from registry.cli.targets import (
    FORMS,
    Target,
    TargetError,
    add_target_options,
    target_from_args,
)

MAX_PROVENANCE_BYTES = 16 << 20
EXIT = {"reproduced": 0, "differs": 1, "failed": 2}


def _provenance(path: Path) -> Statement:
    """An in-toto statement file, or a DSSE envelope around one (not verified here)."""
    try:
        if path.stat().st_size > MAX_PROVENANCE_BYTES:
            raise TargetError(f"{path} is larger than {MAX_PROVENANCE_BYTES} bytes")
        body = json.loads(path.read_bytes())
        payload = path.read_bytes()
        if isinstance(body, dict) and "payload" in body and "payloadType" in body:
            payload = base64.b64decode(body["payload"], validate=True)
        return Statement.parse(payload, None)
    except (OSError, ValueError, binascii.Error, VerificationFailure) as exc:
        raise TargetError(f"{path}: not an in-toto statement: {exc}") from exc


class _ConsoleReporter:
    """Stage changes as status lines, the build log streamed dimmed below them."""

    def __init__(self, show_log: bool) -> None:
        self.show_log = show_log
        self.status = console.status("starting", spinner="dots")

    def stage(self, name: str, message: str) -> None:
        if name == "done":
            return
        self.status.update(f"[bold]{name}[/bold] {escape(message)}")
        if name != "compare" or not message.startswith("comparing layer"):
            console.print(f"[bold cyan]{name}[/bold cyan] {escape(message)}")

    def log(self, line: str) -> None:
        if self.show_log:
            console.print(f"[dim]│ {escape(line)}[/dim]", highlight=False)


def _short(value: str | None) -> str:
    if value is None:
        return "—"
    if value.startswith("sha256:") and len(value) == 71:
        return value[:15] + "…"
    return value if len(value) <= 60 else value[:59] + "…"


def diff_table(diff: ImageDiff) -> Table:
    """Every listed difference: manifest fields, config fields, then files per layer."""
    table = Table(title=f"{_short(str(diff.original))} → {_short(str(diff.rebuilt))}")
    table.add_column("where", no_wrap=True)
    table.add_column("path / field", overflow="fold", ratio=3)
    table.add_column("change", ratio=1)
    table.add_column("original", overflow="fold", ratio=2)
    table.add_column("rebuilt", overflow="fold", ratio=2)
    for change in diff.manifest:
        table.add_row("manifest", change.name, "modified", change.original, change.rebuilt)
    if diff.config is not None:
        for change in diff.config.fields:
            table.add_row(
                "config", change.name, "modified", _short(change.original), _short(change.rebuilt)
            )
    for layer in diff.layers:
        where = f"layer {layer.index}"
        if layer.identical:
            continue
        for note in layer.notes:
            table.add_row(where, "", "note", escape(note), "")
        if layer.incomplete:
            table.add_row(where, "", "[yellow]incomplete[/yellow]", escape(layer.incomplete), "")
        for file in layer.files:
            for i, field in enumerate(file.fields):
                table.add_row(
                    where,
                    escape(file.path) if i == 0 else "",
                    f"{file.change} {field.name}",
                    _short(field.original),
                    _short(field.rebuilt),
                )
        if layer.total > len(layer.files):
            table.add_row(where, f"… {layer.total - len(layer.files)} more paths", "", "", "")
    return table


def _print(result: RebuildResult) -> None:
    if result.diff is not None and not result.diff.identical:
        console.print(diff_table(result.diff))
        if result.diff.truncated:
            console.print(
                f"[yellow]only the first {result.diff.max_differences} differences are "
                "listed (--max-differences)[/yellow]"
            )
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    if result.outcome == "reproduced":
        console.print(f"[bold green]reproduced[/bold green] {result.upstream} ({timings})")
    elif result.outcome == "differs":
        paths = result.diff.differing_paths if result.diff else 0
        layers = sum(1 for layer in result.diff.layers if not layer.identical) if result.diff else 0
        console.print(
            f"[bold red]differs[/bold red] upstream {result.upstream}, rebuilt {result.rebuilt}: "
            f"{layers} layer(s), {paths} path(s) ({timings})"
        )
        if result.message:
            console.print(f"[yellow]{escape(result.message)}[/yellow]")
    else:
        console.print(f"[bold red]failed[/bold red] {escape(result.error or '')}")
        if result.log_excerpt:
            console.print("[dim]last lines of the build log:[/dim]")
            console.print(escape(result.log_excerpt), highlight=False)


def _run(args: argparse.Namespace) -> int:
    targets: list[Target] = []
    try:
        targets.append(target_from_args(args.target, args))
        reader, reference, name = targets[0].reader, targets[0].reference, targets[0].repository
        spec = load_recipe(Path(args.recipe)) if args.recipe else None
        if args.source:
            spec = replace(
                spec or RecipeSpec(origin="explicit"), source=PathSource(Path(args.source))
            )
        provenance = [_provenance(Path(p)) for p in args.provenance or []]
        targets.extend(target_from_args(b, args) for b in args.base or [])
        bases = [t.reader for t in targets[1:]]
        if args.output and Path(args.output).exists():
            raise TargetError(f"--output {args.output} already exists")
    except (TargetError, RecipeError) as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        return 2
    if args.allow_network:
        spec = replace(spec or RecipeSpec(origin="explicit"), network=True)
    limits = RebuildLimits(
        build_timeout=args.timeout, diff=DiffLimits(max_differences=args.max_differences)
    )
    reporter = _ConsoleReporter(show_log=not args.json or args.log)

    async def run() -> RebuildResult:
        try:
            return await rebuild(
                reader,
                reference,
                bases=LayoutBases([*bases, reader]),
                recipe=spec,
                provenance=provenance,
                limits=limits,
                output=Path(args.output) if args.output else None,
                platform=args.platform,
                reporter=reporter,
                local_derived_sources=args.local_sources,
            )
        finally:
            for target in targets:
                await target.aclose()

    with reporter.status:
        result = asyncio.run(run())
    if args.statement and result.upstream is not None:
        statement = result.statement(
            image=args.name or name, rebuilder=Verifier("zoll:cli", {"zoll": __version__})
        )
        Path(args.statement).write_text(json.dumps(statement, indent=2, sort_keys=True) + "\n")
    if args.json:
        emit_json(result.to_json())
    else:
        _print(result)
    return EXIT[result.outcome]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rebuild",
        help="rebuild an image from its source and compare it bit for bit",
        description="Exit status: 0 reproduced, 1 the rebuild differs, 2 the rebuild failed.",
    )
    parser.add_argument("target", help=f"the upstream image: {FORMS}")
    add_target_options(parser)
    parser.add_argument("--recipe", metavar="FILE", help="rebuild recipe (YAML)")
    parser.add_argument("--source", metavar="DIR", help="build this local tree (overrides source)")
    parser.add_argument(
        "--provenance",
        action="append",
        metavar="FILE",
        help="SLSA provenance statement or DSSE envelope to derive the recipe from (repeatable)",
    )
    parser.add_argument(
        "--base",
        action="append",
        metavar="IMAGE",
        help="oci:DIR or docker://host/repository holding base images by digest (repeatable; "
        "the target is searched too)",
    )
    parser.add_argument("--output", metavar="DIR", help="keep the rebuilt image as an OCI layout")
    parser.add_argument("--platform", help="platform to rebuild from an index (os/arch)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="build time limit, seconds")
    parser.add_argument(
        "--allow-network", action="store_true", help="let RUN steps reach the network"
    )
    parser.add_argument(
        "--max-differences",
        type=int,
        default=200,
        metavar="N",
        help="list at most N differing files (200)",
    )
    parser.add_argument(
        "--statement", metavar="FILE", help="also write the (unsigned) rebuild statement"
    )
    parser.add_argument("--name", help="repository name for the statement's subject")
    parser.add_argument(
        "--local-sources",
        action="store_true",
        help="let the image's provenance or labels name a local path or file:// repository",
    )
    parser.add_argument("--log", action="store_true", help="stream the build log with --json")
    add_json_flag(parser)
    parser.set_defaults(handler=_run)

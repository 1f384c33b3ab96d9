"""`zoll policy check`: analyse an image offline and judge it against the criteria."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from rich.table import Table

from policy import (
    AnalysisError,
    AnalysisLimits,
    CatalogError,
    HardeningReport,
    ImageAnalysis,
    analyze_image,
    build_sbom,
    context_from_reader,
    evaluate,
    load_catalog,
    spdx,
)
from policy.catalog import SEVERITIES
from registry.cli.output import add_json_flag, console, emit_json
from registry.cli.targets import FORMS, TargetError, add_target_options, target_from_args
from registry.oci.client import ClientError
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader

_STATUS_STYLE = {"pass": "green", "fail": "bold red", "not_applicable": "dim"}


class ImageRefError(ValueError):
    """The image argument names no image this command can open."""


async def resolve_image(reader: ContentReader, reference: str, platform: str) -> Digest:
    """The image manifest digest for a tag or digest, choosing `platform` in an index."""
    fetched = await reader.get_manifest(reference)
    manifest = parse_manifest(fetched.raw, fetched.media_type)
    if not manifest.is_index:
        return fetched.digest
    os_name, _, arch = platform.partition("/")
    for desc in manifest.manifests:
        plat = desc.platform or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            return desc.digest
    found = ", ".join(
        f"{(d.platform or {}).get('os')}/{(d.platform or {}).get('architecture')}"
        for d in manifest.manifests
    )
    raise ImageRefError(f"no {platform} image in the index (it has: {found})")


async def _check(args: argparse.Namespace) -> tuple[HardeningReport, ImageAnalysis]:
    async with target_from_args(args.image, args) as target:
        reader = target.reader
        digest = await resolve_image(reader, target.reference, args.platform)
        catalog = load_catalog(overrides=args.catalog or [])
        with console.status(f"analysing {digest}", spinner="dots"):
            analysis = await analyze_image(reader, digest, AnalysisLimits())
        context = await context_from_reader(reader, digest, repository=args.name)
    report = evaluate(analysis, context, catalog, None)
    return report, analysis


def _write_sboms(args: argparse.Namespace, analysis: ImageAnalysis) -> None:
    if args.sbom:
        Path(args.sbom).write_text(json.dumps(build_sbom(analysis, name=args.name), indent=2))
    if args.spdx:
        Path(args.spdx).write_text(json.dumps(spdx(analysis, name=args.name), indent=2))


def _table(report: HardeningReport, analysis: ImageAnalysis) -> None:
    table = Table(
        title=f"{report.subject_digest}  ({report.catalog_name} {report.catalog_version})"
    )
    table.add_column("criterion", no_wrap=True)
    table.add_column("severity")
    table.add_column("result")
    table.add_column("title")
    table.add_column("evidence")
    for r in report.results:
        style = _STATUS_STYLE[r.status]
        evidence = "\n".join(r.evidence[:3]) + ("\n…" if len(r.evidence) > 3 else "")
        table.add_row(r.id, r.severity, f"[{style}]{r.status}[/{style}]", r.title, evidence)
    console.print(table)
    counts = report.counts
    console.print(
        f"{counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['not_applicable']} not applicable; {len(analysis.packages)} packages, "
        f"{analysis.uncompressed_size} bytes in {len(analysis.layers)} layers, "
        f"analysed in {analysis.seconds:.2f} s"
    )


def _summary(analysis: ImageAnalysis) -> dict[str, Any]:
    return {
        "complete": analysis.complete,
        "seconds": analysis.seconds,
        "layers": len(analysis.layers),
        "uncompressed_bytes": analysis.uncompressed_size,
        "packages": len(analysis.packages),
        "os": None if analysis.tree.os is None else analysis.tree.os.id,
        "findings": [f.to_json() for f in analysis.findings],
    }


def _run_check(args: argparse.Namespace) -> int:
    try:
        report, analysis = asyncio.run(_check(args))
        _write_sboms(args, analysis)
    except (ImageRefError, TargetError, AnalysisError, CatalogError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return 2
    except (ContentNotFound, ContentCorrupt, ManifestError, ClientError) as exc:
        console.print(f"[bold red]error:[/] cannot read the image: {exc}")
        return 2
    if args.json:
        emit_json({"report": report.to_json(), "analysis": _summary(analysis)})
    else:
        _table(report, analysis)
    return 1 if report.failed(args.fail_on) else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("policy", help="hardening criteria: check images offline")
    sub = parser.add_subparsers(dest="policy_command", metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="analyse an image and judge it against the hardening criteria",
        description="Exit status: 0 when no criterion at --fail-on or worse failed, "
        "1 when one did, 2 when the image could not be read.",
    )
    check.add_argument("image", help=FORMS)
    add_target_options(check)
    check.add_argument(
        "--catalog",
        action="append",
        metavar="OVERRIDE.yaml",
        help="namespace override of the shipped catalog (repeatable, applied in order)",
    )
    check.add_argument("--platform", default="linux/amd64", help="platform to pick from an index")
    check.add_argument("--name", help="repository name to put in the report and SBOM")
    check.add_argument(
        "--fail-on",
        default="high",
        choices=SEVERITIES,
        help="fail (exit 1) on criteria of this severity or worse (high)",
    )
    check.add_argument("--sbom", metavar="FILE", help="also write a CycloneDX 1.6 SBOM")
    check.add_argument("--spdx", metavar="FILE", help="also write an SPDX 2.3 SBOM")
    add_json_flag(check)
    check.set_defaults(handler=_run_check)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=usage)

"""`zoll verify`: decide offline whether an image's (or an artifact's) provenance holds.

    zoll verify image oci:./layout:v1 --policy trust.yaml [--trusted-root FILE] [--json]
    zoll verify image docker://registry.example/app:v1 --policy trust.yaml
    zoll verify bundle file.txt --bundle file.txt.sigstore.json --identity ID --issuer URL
    zoll verify attachments oci:./layout:v1

Exit codes: 0 verified, 1 not verified, 2 unusable input (policy, root, reference).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.table import Table

from attest.cosign import discover
from attest.identity import IdentityError, KeylessIdentity, Signers, TrustedKey
from attest.keys import KeyLoadError, PublicKey
from attest.results import Evidence, VerificationResult
from attest.trust_policy import TrustPolicyError, TrustPolicySet
from attest.trustroot import PUBLIC_GOOD, TrustMaterial, TrustRootError
from attest.verify import verify_artifact_bundle, verify_image
from registry.cli.output import add_json_flag, console, emit_json
from registry.cli.targets import FORMS, TargetError, add_target_options, target_from_args
from registry.oci.client import ClientError
from registry.oci.reader import ContentNotFound

MAX_ARTIFACT_BYTES = 1 << 30


def _trust(specs: list[str] | None) -> TrustMaterial:
    names = specs or [PUBLIC_GOOD]
    material = TrustMaterial(())
    for spec in names:
        material = material + TrustMaterial.resolve(spec)
    return material


def _evidence_line(ev: Evidence) -> str:
    who = ""
    if ev.signer is not None:
        who = ev.signer.identity or (ev.signer.keyid or "")[:16]
        if ev.signer.matched:
            who += f" ({', '.join(ev.signer.matched)})"
    return f"{ev.format} {ev.id} {who}".strip()


def _print_result(result: VerificationResult) -> None:
    table = Table(title=f"{result.subject}  policy {result.policy}")
    table.add_column("Requirement")
    table.add_column("Result")
    table.add_column("Evidence / reasons")
    for req in result.requirements:
        if req.passed:
            detail = "\n".join(_evidence_line(result.evidence_by_id(e)) for e in req.satisfied_by)
        else:
            detail = "\n".join(
                f"{p.reason.value}: {p.message}" + (f" [{p.evidence}]" if p.evidence else "")
                for p in req.problems
            )
        verdict = "[green]pass[/green]" if req.passed else "[red]FAIL[/red]"
        table.add_row(req.description, verdict, detail)
    console.print(table)
    for problem in result.errors:
        console.print(f"[red]error[/red] {problem.reason.value}: {problem.message}")
    verdict = "[green]verified[/green]" if result.passed else "[red]not verified[/red]"
    console.print(f"{result.subject}: {verdict}")


def _image(args: argparse.Namespace) -> int:
    try:
        target = target_from_args(args.target, args)
        policies = TrustPolicySet.load(Path(args.policy))
        repository = args.repository or target.repository
        policy = policies.for_repository(repository)
        if policy is None:
            console.print(f"[red]no trust policy applies to repository {repository!r}[/red]")
            return 2
        trust = _trust(args.trusted_root)
    except (TargetError, TrustPolicyError, TrustRootError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    async def run() -> VerificationResult | None:
        async with target:
            try:
                fetched = await target.reader.get_manifest(target.reference)
                return await verify_image(target.reader, fetched.digest, policy, trust)
            except (ContentNotFound, ValueError, ClientError) as exc:
                console.print(f"[red]{args.target}: {exc}[/red]")
                return None

    result = asyncio.run(run())
    if result is None:
        return 2
    if args.json:
        emit_json(result.to_json())
    else:
        _print_result(result)
    return 0 if result.passed else 1


def _signers(args: argparse.Namespace) -> Signers:
    identities: tuple[KeylessIdentity, ...] = ()
    if args.identity or args.identity_regexp:
        if not args.issuer:
            raise IdentityError("--issuer is required with --identity/--identity-regexp")
        identities = (
            KeylessIdentity(
                args.issuer, args.identity, args.identity_regexp, dict(args.claim or []), "cli"
            ),
        )
    keys = tuple(
        TrustedKey(PublicKey.from_pem(Path(path).read_bytes()), Path(path).name)
        for path in args.key or []
    )
    if not identities and not keys:
        raise IdentityError("give --identity/--identity-regexp with --issuer, or --key")
    return Signers(identities, keys)


def _claim(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("claims are NAME=VALUE")
    return name, value


def _bundle(args: argparse.Namespace) -> int:
    try:
        signers = _signers(args)
        trust = _trust(args.trusted_root)
        artifact_path, bundle_path = Path(args.artifact), Path(args.bundle)
        if artifact_path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise TargetError(f"{artifact_path} is larger than {MAX_ARTIFACT_BYTES} bytes")
        artifact, bundle = artifact_path.read_bytes(), bundle_path.read_bytes()
    except (IdentityError, KeyLoadError, TrustRootError, TargetError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    evidence = verify_artifact_bundle(artifact, bundle, signers, trust)
    if args.json:
        emit_json(evidence.to_json())
    elif evidence.verified:
        console.print(f"[green]OK[/green] {args.artifact}: {_evidence_line(evidence)}")
    else:
        reason = evidence.reason.value if evidence.reason else "failed"
        console.print(f"[red]FAIL[/red] {args.artifact}: {reason}: {evidence.message}")
    return 0 if evidence.verified else 1


def _attachments(args: argparse.Namespace) -> int:
    try:
        target = target_from_args(args.target, args)
    except TargetError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    async def run() -> list[dict[str, object]] | None:
        async with target:
            try:
                digest = (await target.reader.get_manifest(target.reference)).digest
                return [a.to_json() for a in await discover(target.reader, digest)]
            except (ContentNotFound, ValueError, ClientError) as exc:
                console.print(f"[red]{args.target}: {exc}[/red]")
                return None

    found = asyncio.run(run())
    if found is None:
        return 2
    if args.json:
        emit_json(found)
    else:
        table = Table("Kind", "Scheme", "Digest", "Tag / artifact type")
        for item in found:
            table.add_row(
                str(item["kind"]),
                str(item["scheme"]),
                str(item["digest"]),
                str(item.get("tag") or item.get("artifactType") or ""),
            )
        console.print(table)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("verify", help="verify signatures, attestations and provenance")
    sub = parser.add_subparsers(dest="verify_command", metavar="COMMAND", required=True)

    image = sub.add_parser("image", help="verify an image against a trust policy")
    image.add_argument("target", help=FORMS)
    add_target_options(image)
    image.add_argument("--policy", required=True, help="trust policy YAML")
    image.add_argument("--repository", help="repository name for policy selection")
    image.add_argument(
        "--trusted-root",
        action="append",
        help="trusted_root.json, or public-good / staging (repeatable; default public-good)",
    )
    add_json_flag(image)
    image.set_defaults(handler=_image)

    bundle = sub.add_parser("bundle", help="verify a sigstore bundle over one artifact")
    bundle.add_argument("artifact", help="the file the bundle signs")
    bundle.add_argument("--bundle", required=True, help="the sigstore bundle (JSON)")
    bundle.add_argument("--identity", help="exact certificate subject (SAN)")
    bundle.add_argument("--identity-regexp", help="regex the whole subject must match")
    bundle.add_argument("--issuer", help="OIDC issuer")
    bundle.add_argument("--claim", action="append", type=_claim, help="NAME=VALUE claim")
    bundle.add_argument("--key", action="append", help="PEM public key (repeatable)")
    bundle.add_argument(
        "--trusted-root", action="append", help="trusted root file (repeatable; default: public)"
    )
    add_json_flag(bundle)
    bundle.set_defaults(handler=_bundle)

    attachments = sub.add_parser(
        "attachments", help="list signatures/attestations attached to an image (both layouts)"
    )
    attachments.add_argument("target", help=FORMS)
    add_target_options(attachments)
    add_json_flag(attachments)
    attachments.set_defaults(handler=_attachments)

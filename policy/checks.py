"""The mechanical checks behind the criteria: facts + parameters → pass/fail/n.a.

Each check is a pure function of the analysis, the context, the vulnerability findings
and the criterion's parameters, and returns evidence a person can act on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from policy.analyzer.model import FileFact, ImageAnalysis
from policy.context import ImageContext
from policy.packages import VulnFinding

Status = Literal["pass", "fail", "not_applicable"]
MAX_EVIDENCE: Final = 25
FLOATING_DEFAULT: Final = ("latest",)


@dataclass(frozen=True, slots=True)
class Inputs:
    analysis: ImageAnalysis
    context: ImageContext
    vulnerabilities: Sequence[VulnFinding] | None


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    evidence: tuple[str, ...]


def _pass(*evidence: str) -> Outcome:
    return Outcome("pass", evidence)


def _fail(*evidence: str) -> Outcome:
    return Outcome("fail", evidence)


def _na(*evidence: str) -> Outcome:
    return Outcome("not_applicable", evidence)


def _listed(items: Sequence[str], total: int | None = None) -> tuple[str, ...]:
    shown = tuple(items[:MAX_EVIDENCE])
    total = len(items) if total is None else total
    if total > len(shown):
        shown += (f"… and {total - len(shown)} more",)
    return shown


def _allowed(path: str, patterns: Sequence[str]) -> bool:
    return any(path == p or fnmatch.fnmatchcase(path, p) for p in patterns)


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def _incomplete_note(a: ImageAnalysis) -> tuple[str, ...]:
    return () if a.complete else ("analysis incomplete: the file tree may be partial",)


def non_root_user(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    tree, user = i.analysis.tree, i.analysis.config.user.strip()
    if not user:
        return _fail("config.User is empty: the container starts as root")
    name, _, _group = user.partition(":")
    by_uid = {u.uid: u for u in tree.users}
    if not name.isdigit():
        match = next((u for u in tree.users if u.name == name), None)
        resolved = f" (resolves to UID {match.uid} in /etc/passwd)" if match else ""
        return _fail(
            f"config.User {user!r} is a name, not a numeric UID{resolved}: "
            "runAsNonRoot cannot verify it"
        )
    uid = int(name)
    if uid == 0:
        return _fail(f"config.User {user!r} is UID 0 (root)")
    if not tree.has_passwd:
        return _fail(f"UID {uid} does not exist in the image: there is no /etc/passwd")
    if uid not in by_uid:
        return _fail(f"UID {uid} does not exist in /etc/passwd")
    return _pass(f"runs as UID {uid} ({by_uid[uid].name})", *_incomplete_note(i.analysis))


def no_setuid(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allow = params.get("allow", [])
    tree = i.analysis.tree
    found: list[str] = []
    for label, facts in (
        ("setuid", tree.setuid),
        ("setgid", tree.setgid),
        ("file capabilities", tree.capabilities),
    ):
        found += [f"{label}: {f.describe()}" for f in facts if not _allowed(f.path, allow)]
    if found:
        note = (
            ("(list truncated by the analyzer)",)
            if {"setuid", "setgid"} & set(tree.truncated)
            else ()
        )
        return _fail(*_listed(found), *note)
    allowed = len(tree.setuid) + len(tree.setgid) + len(tree.capabilities)
    return _pass(
        f"no setuid/setgid files or capabilities ({allowed} allow-listed)"
        if allowed
        else "no setuid/setgid files or capabilities",
        *_incomplete_note(i.analysis),
    )


def no_world_writable(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allow = params.get("allow", [])
    bad: list[FileFact] = [f for f in i.analysis.tree.world_writable if not _under(f.path, allow)]
    if bad:
        return _fail(*_listed([f"world-writable: {f.describe()}" for f in bad]))
    return _pass(
        f"no world-writable paths outside {', '.join(allow) or 'anywhere'}",
        *_incomplete_note(i.analysis),
    )


def no_secrets(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allow = params.get("allow_paths", [])
    hits = [
        f for f in i.analysis.findings_of("secret") if f.path is None or not _allowed(f.path, allow)
    ]
    if hits:
        lines = []
        for f in hits:
            where = f" (layer {f.layer}, in final tree: {f.detail.get('in_final_tree', 'yes')})"
            lines.append(
                f"{f.message}{where if f.layer is not None else ''}: "
                f"{f.detail.get('preview', '')} fingerprint {f.detail.get('fingerprint', '')}"
            )
        return _fail(*_listed(lines))
    return _pass("no credentials found in layers, Env, Labels or history")


def no_package_caches(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    caches = i.analysis.tree.package_caches
    limit = int(params.get("max_bytes", 0))
    total = sum(caches.values())
    if caches and total > limit:
        return _fail(*_listed([f"{d}: {n} bytes" for d, n in sorted(caches.items())]))
    return _pass("no package-manager cache contents", *_incomplete_note(i.analysis))


def no_package_manager(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allow = params.get("allow", [])
    found = [p for p in i.analysis.tree.package_managers if not _allowed(p, allow)]
    if found:
        return _fail(*_listed([f"package manager: {p}" for p in found]))
    return _pass("no package-manager executables", *_incomplete_note(i.analysis))


def _labels(a: ImageAnalysis) -> dict[str, str]:
    return {**a.annotations, **a.config.labels}


def oci_labels(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    labels = _labels(i.analysis)
    required = params.get("required", [])
    missing = [k for k in required if not labels.get(k, "").strip()]
    if missing:
        return _fail(*(f"missing label or annotation {k}" for k in missing))
    return _pass(*(f"{k}={labels[k]}" for k in required))


def base_image_pinned(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    labels = _labels(i.analysis)
    named: list[tuple[str, str | None, str]] = []
    if i.context.provenance is not None:
        named += [(b.name, b.digest, "provenance") for b in i.context.provenance.base_images]
    if labels.get("org.opencontainers.image.base.name"):
        named.append(
            (
                labels["org.opencontainers.image.base.name"],
                labels.get("org.opencontainers.image.base.digest") or None,
                "annotation",
            )
        )
    if not named:
        return _na("neither provenance nor annotations name a base image")
    unpinned = [f"{name} ({src}) has no digest" for name, digest, src in named if not digest]
    pinned_by_name = [
        f"{name} ({src}) is not pinned: {digest!r} is not a digest"
        for name, digest, src in named
        if digest and not re.fullmatch(r"sha(256|512):[0-9a-f]{64,128}", digest)
    ]
    if unpinned or pinned_by_name:
        return _fail(*unpinned, *pinned_by_name)
    return _pass(*(f"{name}@{digest} ({src})" for name, digest, src in named))


def healthcheck(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    test = i.analysis.config.healthcheck
    if test and test[0].upper() != "NONE":
        return _pass(f"HEALTHCHECK {' '.join(test)}")
    labels = _labels(i.analysis)
    for key in params.get("probe_labels", []):
        if labels.get(key):
            return _pass(f"probe documented in {key}={labels[key]}")
    if test:
        return _fail("HEALTHCHECK is explicitly NONE and no probe label is set")
    return _fail(
        "no HEALTHCHECK and no probe label "
        f"({', '.join(params.get('probe_labels', [])) or 'none configured'})"
    )


def _port(spec: str) -> int | None:
    number = spec.split("/", 1)[0]
    return int(number) if number.isdigit() else None


def unprivileged_ports(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allowed = {int(p) for p in params.get("allowed_ports", [])}
    ports = i.analysis.config.exposed_ports
    bad = [p for p in ports if (n := _port(p)) is not None and n < 1024 and n not in allowed]
    if bad:
        return _fail(*(f"privileged port exposed: {p}" for p in bad))
    return _pass(f"exposed ports: {', '.join(ports)}" if ports else "no exposed ports")


def _in_ranges(port: int, ranges: Sequence[str]) -> bool:
    for r in ranges:
        low, _, high = str(r).partition("-")
        if low.isdigit() and int(low) <= port <= int(high or low):
            return True
    return False


def no_remote_access(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    found = [f"remote-access server: {p}" for p in i.analysis.tree.remote_access]
    for spec in i.analysis.config.exposed_ports:
        n = _port(spec)
        if n is not None and _in_ranges(n, params.get("ports", [])):
            found.append(f"remote-access port exposed: {spec}")
    if found:
        return _fail(*_listed(found))
    return _pass("no remote-maintenance servers or ports", *_incomplete_note(i.analysis))


_SUPERVISORS: Final = frozenset(
    {"supervisord", "systemd", "init", "s6-svscan", "runsvdir", "runit", "openrc-init"}
)


def one_service(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    allow = set(params.get("allow", []))
    argv = [*i.analysis.config.entrypoint, *i.analysis.config.cmd]
    for arg in argv[:3]:
        base = arg.rsplit("/", 1)[-1]
        if (base in _SUPERVISORS or arg == "/init") and arg not in allow and base not in allow:
            return _fail(f"starts a supervisor: {' '.join(argv)}")
    return _pass(f"starts {' '.join(argv)}" if argv else "no entrypoint or command")


_UNVERIFIED: Final = [
    (r"\b(curl|wget)\b[^|;&]*\|\s*(sudo\s+)?(ba|da|z)?sh\b", "pipes a download into a shell"),
    (r"--allow-unauthenticated|--allow-untrusted|--allow-insecure", "installs unsigned packages"),
    (r"--nogpgcheck|gpgcheck\s*=\s*0", "disables package signature checks"),
    (r"--trusted-host", "trusts a package index without TLS verification"),
    (r"--no-check-certificate|\bcurl\b[^|;&]*\s(-k|--insecure)\b", "disables TLS checks"),
    (r"(?i)\bADD\s+(file:)?https?://", "ADDs a remote URL without checksum"),
]


def verified_build_inputs(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    found = []
    for step, created_by in enumerate(i.analysis.config.history):
        for pattern, why in _UNVERIFIED:
            if re.search(pattern, created_by):
                found.append(f"history step {step} {why}: {created_by[:160]}")
    if found:
        return _fail(*_listed(found))
    steps = len(i.analysis.config.history)
    if not steps:
        return _na("the image config has no build history")
    return _pass(f"{steps} history steps without unverified downloads")


def not_latest_only(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    tags = i.context.tags
    if tags is None:
        return _na("tags of the image are not known")
    if not tags:
        return _pass("untagged: referenced by digest only")
    floating = set(params.get("floating", FLOATING_DEFAULT))
    if all(t in floating for t in tags):
        return _fail(f"only floating tags point at this image: {', '.join(sorted(tags))}")
    return _pass(f"tags: {', '.join(sorted(tags))}")


def size_bounds(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    a = i.analysis
    max_bytes, max_layers = int(params.get("max_bytes", 0)), int(params.get("max_layers", 0))
    size, layers = a.uncompressed_size, len(a.layers)
    problems = []
    if max_bytes and size > max_bytes:
        problems.append(f"uncompressed size {size} bytes exceeds {max_bytes}")
    if max_layers and layers > max_layers:
        problems.append(f"{layers} layers exceed {max_layers}")
    if problems:
        return _fail(*problems)
    return _pass(f"{size} bytes uncompressed in {layers} layers", *_incomplete_note(a))


def analysable(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    bad = i.analysis.findings_of(
        "limit", "malformed", "traversal", "link-escape", "corrupt", "unsupported"
    )
    if bad or not i.analysis.complete:
        lines = [
            f"{f.kind}: {f.message}"
            + (f" (layer {f.layer})" if f.layer is not None else "")
            + (f" at {f.path}" if f.path else "")
            for f in bad
        ]
        return _fail(*_listed(lines or ["analysis did not complete"]))
    return _pass(f"{len(i.analysis.layers)} layers read completely")


def _attached(i: Inputs, params: Mapping[str, Any], what: str) -> Outcome:
    kinds = i.context.attestation_types
    if kinds is None:
        return _na(f"attached artifacts are not known, so the {what} cannot be checked")
    wanted = params.get("types", [])
    match = sorted(k for k in kinds if any(k == w or k.startswith(w) for w in wanted))
    if match:
        return _pass(*(f"{what}: {k}" for k in match))
    return _fail(f"no {what} attached to the image digest")


def sbom_attached(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    return _attached(i, params, "SBOM")


def provenance_attached(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    return _attached(i, params, "provenance attestation")


def signature_verified(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    verified = i.context.signature_verified
    if verified is None:
        return _na("signature verification has not run for this image")
    if verified:
        return _pass("a signature by an allowed identity verified")
    return _fail("no signature by an allowed identity verified")


def no_known_vulnerabilities(i: Inputs, params: Mapping[str, Any]) -> Outcome:
    if i.vulnerabilities is None:
        return _na("no vulnerability data for this image")
    fail_on = set(params.get("fail_on", ["critical", "high"]))
    open_ = [v for v in i.vulnerabilities if v.severity in fail_on and not v.suppressed]
    cleared = [v for v in i.vulnerabilities if v.severity in fail_on and v.suppressed]
    if open_:
        lines = [
            f"{v.id} ({v.severity}) in {v.package.name} {v.package.version}"
            + (f", fixed in {', '.join(v.fixed_versions)}" if v.fixed_versions else "")
            for v in sorted(open_, key=lambda v: (v.severity != "critical", v.id))
        ]
        return _fail(*_listed(lines))
    return _pass(
        f"{len(i.vulnerabilities)} known vulnerabilities, none {'/'.join(sorted(fail_on))} "
        f"without VEX ({len(cleared)} cleared by VEX)"
    )


Check = Callable[[Inputs, Mapping[str, Any]], Outcome]
CHECKS: Final[dict[str, Check]] = {
    "non_root_user": non_root_user,
    "no_setuid": no_setuid,
    "no_world_writable": no_world_writable,
    "no_secrets": no_secrets,
    "no_package_caches": no_package_caches,
    "no_package_manager": no_package_manager,
    "oci_labels": oci_labels,
    "base_image_pinned": base_image_pinned,
    "healthcheck": healthcheck,
    "unprivileged_ports": unprivileged_ports,
    "no_remote_access": no_remote_access,
    "one_service": one_service,
    "verified_build_inputs": verified_build_inputs,
    "not_latest_only": not_latest_only,
    "size_bounds": size_bounds,
    "analysable": analysable,
    "sbom_attached": sbom_attached,
    "provenance_attached": provenance_attached,
    "signature_verified": signature_verified,
    "no_known_vulnerabilities": no_known_vulnerabilities,
}

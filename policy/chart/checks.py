"""The mechanical checks behind the chart criteria: rendered workloads → pass/fail/n.a.

Each check walks every container of every workload the chart renders and names, for each
failure, the workload, the container and the field (`Deployment/web container app:
spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation is not false`),
so a supplier can fix the values or the template that produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from policy.chart.analysis import ChartAnalysis
from policy.chart.workloads import Container, Workload
from policy.checks import Outcome, _fail, _listed, _na, _pass


@dataclass(frozen=True, slots=True)
class ChartContext:
    """What the chart criteria know beyond the chart: the names this registry is reached
    under (images there are "from this registry"), and the signature verification."""

    repository: str | None = None
    registry_names: tuple[str, ...] = ()
    signature_verified: bool | None = None
    mirrored: Mapping[str, str] = field(default_factory=dict)
    """Digest-pinned upstream references this registry holds a copy of (reference →
    `repository@digest` here): clusters pull them through it as a registry mirror."""


@dataclass(frozen=True, slots=True)
class ChartInputs:
    analysis: ChartAnalysis
    context: ChartContext


def _where(w: Workload, c: Container | None = None) -> str:
    return f"{w.ref} ({w.source})" + (f" container {c.name}" if c is not None else "")


def _each(i: ChartInputs) -> Iterator[tuple[Workload, Container]]:
    for workload in i.analysis.workloads:
        for container in workload.containers:
            yield workload, container


def _no_workloads(i: ChartInputs) -> Outcome | None:
    if not i.analysis.complete:
        return _na("the chart could not be rendered, so its workloads are unknown (HC-47)")
    if not i.analysis.workloads:
        return _na("the chart deploys no workloads")
    return None


def _pod_sc(w: Workload) -> dict[str, Any]:
    value = w.pod.get("securityContext")
    return value if isinstance(value, dict) else {}


def _verdict(problems: list[str], passed: str, i: ChartInputs) -> Outcome:
    if problems:
        return _fail(*_listed(problems))
    containers = sum(len(w.containers) for w in i.analysis.workloads)
    return _pass(f"{passed} ({containers} containers in {len(i.analysis.workloads)} workloads)")


def run_as_non_root(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = []
    for w, c in _each(i):
        pod = _pod_sc(w)
        sc = c.security_context
        non_root = sc.get("runAsNonRoot", pod.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(
                f"{_where(w, c)}: {c.path}.securityContext.runAsNonRoot is not true "
                f"(nor {w.pod_path}.securityContext.runAsNonRoot)"
            )
        user = sc.get("runAsUser", pod.get("runAsUser"))
        if user == 0:
            field = "runAsUser" if "runAsUser" in sc else "pod runAsUser"
            problems.append(f"{_where(w, c)}: {c.path}.securityContext {field} is 0 (root)")
    return _verdict(problems, "every container sets runAsNonRoot: true", i)


def no_privilege_escalation(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = [
        f"{_where(w, c)}: {c.path}.securityContext.allowPrivilegeEscalation is not false"
        for w, c in _each(i)
        if c.security_context.get("allowPrivilegeEscalation") is not False
    ]
    return _verdict(problems, "every container sets allowPrivilegeEscalation: false", i)


def drop_all_capabilities(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    allowed = {str(a).upper() for a in params.get("allow_add", [])}
    problems = []
    for w, c in _each(i):
        caps = c.security_context.get("capabilities")
        caps = caps if isinstance(caps, dict) else {}
        drop = caps.get("drop")
        drop = drop if isinstance(drop, list) else []
        if "ALL" not in {str(d).upper() for d in drop}:
            problems.append(f"{_where(w, c)}: {c.path}.securityContext.capabilities.drop lacks ALL")
        add = caps.get("add")
        add = add if isinstance(add, list) else []
        extra = sorted(str(a) for a in add if str(a).upper() not in allowed)
        if extra:
            problems.append(
                f"{_where(w, c)}: {c.path}.securityContext.capabilities.add has {', '.join(extra)}"
            )
    return _verdict(problems, "every container drops ALL capabilities", i)


_SECCOMP_OK: Final = ("RuntimeDefault", "Localhost")


def seccomp_profile(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = []
    for w, c in _each(i):
        own = c.security_context.get("seccompProfile")
        pod = _pod_sc(w).get("seccompProfile")
        profile = own if isinstance(own, dict) else pod if isinstance(pod, dict) else {}
        kind = profile.get("type")
        if kind not in _SECCOMP_OK:
            said = f"is {kind}" if kind else "is not set"
            problems.append(
                f"{_where(w, c)}: {c.path}.securityContext.seccompProfile.type {said} "
                f"(nor {w.pod_path}.securityContext.seccompProfile): RuntimeDefault or Localhost"
            )
    return _verdict(problems, "every container runs under a RuntimeDefault/Localhost seccomp", i)


def read_only_root(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = [
        f"{_where(w, c)}: {c.path}.securityContext.readOnlyRootFilesystem is not true"
        for w, c in _each(i)
        if c.security_context.get("readOnlyRootFilesystem") is not True
    ]
    return _verdict(problems, "every container has a read-only root filesystem", i)


def resources_set(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = []
    for w, c in _each(i):
        for section in ("requests", "limits"):
            given = c.resources.get(section)
            given = given if isinstance(given, dict) else {}
            missing = [r for r in params.get(section, []) if given.get(r) in (None, "")]
            if missing:
                problems.append(
                    f"{_where(w, c)}: {c.path}.resources.{section} lacks {', '.join(missing)}"
                )
    return _verdict(problems, "every container states its resource requests and limits", i)


def no_host_access(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    problems = []
    for w in i.analysis.workloads:
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if w.pod.get(flag) is True:
                problems.append(f"{_where(w)}: {w.pod_path}.{flag} is true")
        for c in w.containers:
            if c.security_context.get("privileged") is True:
                problems.append(f"{_where(w, c)}: {c.path}.securityContext.privileged is true")
    for w, c in _each(i):
        for n, port in c.host_ports:
            problems.append(f"{_where(w, c)}: {c.path}.ports[{n}].hostPort is {port}")
    return _verdict(problems, "no privileged container, host namespace or host port", i)


def no_host_path(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_workloads(i)) is not None:
        return skip
    allow = set(params.get("allow", []))
    problems = []
    for w in i.analysis.workloads:
        volumes = w.pod.get("volumes")
        for n, volume in enumerate(volumes if isinstance(volumes, list) else []):
            if not isinstance(volume, dict) or not isinstance(volume.get("hostPath"), dict):
                continue
            path = str(volume["hostPath"].get("path", ""))
            if path not in allow:
                problems.append(
                    f"{_where(w)}: {w.pod_path}.volumes[{n}].hostPath mounts {path} "
                    f"(volume {volume.get('name', '?')})"
                )
    return _verdict(problems, "no hostPath volumes", i)


def _no_images(i: ChartInputs) -> Outcome | None:
    if not i.analysis.complete:
        return _na("the chart could not be rendered, so its images are unknown (HC-47)")
    if not i.analysis.images:
        return _na("the chart deploys no images")
    return None


def images_pinned(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_images(i)) is not None:
        return skip
    problems = [
        f"{image.reference} is not pinned by digest: used by {'; '.join(image.used_by[:3])}"
        for image in i.analysis.images
        if image.digest is None
    ]
    if problems:
        return _fail(*_listed(problems))
    return _pass(*_listed([f"{image.reference}" for image in i.analysis.images]))


def images_from_registry(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    if (skip := _no_images(i)) is not None:
        return skip
    allowed = set(i.context.registry_names) | set(params.get("registries", []))
    named = ", ".join(sorted(allowed)) or "this registry (charts.registry_names is not set)"
    problems = []
    copies = []
    for image in i.analysis.images:
        if image.error is not None:
            problems.append(f"{image.reference} is not an image reference ({image.error})")
        elif image.registry in allowed:
            continue
        elif image.digest and image.reference in i.context.mirrored:
            copies.append(
                f"{image.reference} is mirrored here as {i.context.mirrored[image.reference]}"
            )
        else:
            problems.append(
                f"{image.reference} comes from {image.registry}, not from {named}: "
                f"used by {'; '.join(image.used_by[:3])}"
            )
    if problems:
        return _fail(*_listed(problems))
    here = len(i.analysis.images) - len(copies)
    return _pass(
        f"{here} of {len(i.analysis.images)} images come from {named}",
        *_listed(copies),
    )


def chart_analysable(i: ChartInputs, params: Mapping[str, Any]) -> Outcome:
    a = i.analysis
    bad = [f for f in a.findings if f.kind != "secret"]
    lines = [f"{f.kind}: {f.message}" for f in bad]
    if a.render_error:
        lines.append(f"render: {a.render_error}")
    if lines or not a.complete:
        return _fail(*_listed(lines or ["the chart analysis did not complete"]))
    subs = f" and {len(a.subcharts)} subcharts" if a.subcharts else ""
    return _pass(f"{a.files} files{subs} read and rendered by {a.engine}")


ChartCheck = Callable[[ChartInputs, Mapping[str, Any]], Outcome]
CHART_CHECKS: Final[dict[str, ChartCheck]] = {
    "chart_analysable": chart_analysable,
    "chart_run_as_non_root": run_as_non_root,
    "chart_no_privilege_escalation": no_privilege_escalation,
    "chart_drop_all_capabilities": drop_all_capabilities,
    "chart_seccomp_profile": seccomp_profile,
    "chart_read_only_root": read_only_root,
    "chart_resources_set": resources_set,
    "chart_no_host_access": no_host_access,
    "chart_no_host_path": no_host_path,
    "chart_images_pinned": images_pinned,
    "chart_images_from_registry": images_from_registry,
}

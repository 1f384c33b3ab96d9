"""What a rendered chart deploys: its workloads, their containers and their images.

Rendered manifests are YAML streams; every object that carries a pod template is a
workload (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
Job, CronJob, and any custom kind with `spec.template.spec.containers`). Each container
keeps the field path it was found at, so evidence names the workload and the field
(`Deployment/web: spec.template.spec.containers[0].securityContext.privileged`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from policy.chart.limits import ChartLimits

try:  # the C loader when PyYAML was built with it: rendered charts can be large
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
DEFAULT_POD_PATH = ("spec", "template", "spec")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


class ManifestError(ValueError):
    """The rendered output is not a stream of Kubernetes objects."""


@dataclass(frozen=True, slots=True)
class Container:
    name: str
    image: str
    path: str
    """Field path of this container in its object, e.g. spec.template.spec.containers[0]."""
    security_context: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    host_ports: tuple[tuple[int, Any], ...] = ()
    """(index in `ports`, hostPort) of every port bound on the node."""


@dataclass(frozen=True, slots=True)
class Workload:
    kind: str
    name: str
    source: str
    """The template that rendered it."""
    pod_path: str
    pod: dict[str, Any]
    containers: tuple[Container, ...]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "pod_path": self.pod_path,
            "containers": [
                {"name": c.name, "image": c.image, "path": c.path} for c in self.containers
            ],
        }


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _documents(manifests: dict[str, str], limits: ChartLimits) -> Iterator[tuple[str, Any]]:
    count = 0
    for source in sorted(manifests):
        try:
            for document in yaml.load_all(manifests[source], Loader=_Loader):
                if document is None:
                    continue
                count += 1
                if count > limits.max_documents:
                    raise ManifestError(f"more than {limits.max_documents} rendered objects")
                yield source, document
        except yaml.YAMLError as exc:
            raise ManifestError(f"{source} does not render to valid YAML: {exc}") from None


def _pod(kind: str, document: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    path = POD_PATHS.get(kind, DEFAULT_POD_PATH)
    pod = _dig(document, path)
    if isinstance(pod, dict) and isinstance(pod.get("containers"), list):
        return ".".join(path), pod
    return None


def _containers(pod_path: str, pod: dict[str, Any]) -> tuple[Container, ...]:
    found = []
    for listing in CONTAINER_LISTS:
        items = pod.get(listing)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            security = item.get("securityContext")
            resources = item.get("resources")
            ports = item.get("ports")
            host_ports = tuple(
                (n, port["hostPort"])
                for n, port in enumerate(ports if isinstance(ports, list) else [])
                if isinstance(port, dict) and port.get("hostPort")
            )
            found.append(
                Container(
                    name=str(item.get("name", f"#{index}")),
                    image=str(item.get("image") or ""),
                    path=f"{pod_path}.{listing}[{index}]",
                    security_context=security if isinstance(security, dict) else {},
                    resources=resources if isinstance(resources, dict) else {},
                    host_ports=host_ports,
                )
            )
    return tuple(found)


def workloads(manifests: dict[str, str], limits: ChartLimits | None = None) -> list[Workload]:
    """Every workload the rendered manifests declare, in template order."""
    limits = limits or ChartLimits()
    out = []
    for source, document in _documents(manifests, limits):
        if not isinstance(document, dict):
            raise ManifestError(f"{source} renders a {type(document).__name__}, not an object")
        kind = str(document.get("kind") or "")
        if kind == "List" and isinstance(document.get("items"), list):
            items = document["items"]
        else:
            items = [document]
        for item in items:
            if not isinstance(item, dict):
                continue
            item_kind = str(item.get("kind") or "")
            found = _pod(item_kind, item)
            if found is None:
                continue
            pod_path, pod = found
            name = str(_dig(item, ("metadata", "name")) or "?")
            out.append(Workload(item_kind, name, source, pod_path, pod, _containers(pod_path, pod)))
    return out

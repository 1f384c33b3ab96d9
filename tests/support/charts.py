"""Real Helm chart archives made in the tests, and OCI artifacts that carry them.

A chart is a gzip'd tar with one top folder (`<name>/Chart.yaml`, `values.yaml`,
`templates/…`, `charts/<sub>.tgz`), exactly what `helm package` writes; pushed as Helm 3
does (`helm push`): config `application/vnd.cncf.helm.config.v1+json` holding Chart.yaml
as JSON, one layer `application/vnd.cncf.helm.chart.content.v1.tar+gzip`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry.oci import mediatypes as mt

HARDENED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-{{ .Values.component }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Values.component }}}
  template:
    metadata:
      labels: {app: {{ .Values.component }}}
    spec:
      {{- with .Values.pod }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ .Values.component }}
          {{- $image := printf "%s/%s" .Values.image.registry .Values.image.repository }}
          {{- if .Values.image.tag }}{{ $image = printf "%s:%s" $image .Values.image.tag }}{{ end }}
          {{- with .Values.image.digest }}{{ $image = printf "%s@%s" $image . }}{{ end }}
          image: {{ $image | quote }}
          securityContext:
            {{- toYaml .Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
      {{- with .Values.volumes }}
      volumes:
        {{- toYaml . | nindent 8 }}
      {{- end }}
"""


def tgz(files: dict[str, bytes], mtime: int = 0) -> bytes:
    """A gzip'd tar of `files` (names taken as they are: hostile ones too)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=mtime)


@dataclass
class Chart:
    """A chart to package: metadata, default values, templates, subcharts."""

    name: str
    version: str = "1.0.0"
    values: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    subcharts: list[Chart] = field(default_factory=list)
    extra: dict[str, bytes] = field(default_factory=dict)
    """More files, by path under the top folder (or `../x` for hostile ones)."""

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "apiVersion": "v2",
            "name": self.name,
            "version": self.version,
            "appVersion": self.version,
        }
        if self.subcharts:
            meta["dependencies"] = [{"name": s.name, "version": s.version} for s in self.subcharts]
        return meta

    def files(self) -> dict[str, bytes]:
        top = self.name
        out = {
            f"{top}/Chart.yaml": yaml.safe_dump(self.metadata()).encode(),
            f"{top}/values.yaml": yaml.safe_dump(self.values).encode(),
        }
        for path, text in self.templates.items():
            out[f"{top}/templates/{path}"] = text.encode()
        for sub in self.subcharts:
            out[f"{top}/charts/{sub.name}-{sub.version}.tgz"] = sub.archive()
        for path, data in self.extra.items():
            out[path if path.startswith("..") else f"{top}/{path}"] = data
        return out

    def archive(self) -> bytes:
        return tgz(self.files())

    def config(self) -> bytes:
        return json.dumps(self.metadata(), separators=(",", ":")).encode()


def workload_chart(
    name: str,
    image: dict[str, str],
    *,
    security: dict[str, Any] | None = None,
    pod: dict[str, Any] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    subcharts: list[Chart] | None = None,
    version: str = "1.0.0",
) -> Chart:
    """A chart deploying one Deployment of `image` (registry, repository, tag, digest),
    hardened unless `security`/`pod`/`volumes` say otherwise."""
    values: dict[str, Any] = {
        "component": name,
        "replicas": 1,
        "image": {"registry": "", "repository": "", "tag": "", "digest": "", **image},
        "securityContext": HARDENED_SECURITY if security is None else security,
        "resources": RESOURCES,
    }
    if pod:
        values["pod"] = pod
    if volumes:
        values["volumes"] = volumes
    return Chart(
        name,
        version,
        values=values,
        templates={"deployment.yaml": DEPLOYMENT},
        subcharts=subcharts or [],
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chart_manifest(config: bytes, archive: bytes) -> bytes:
    """The manifest `helm push` writes for a chart."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.HELM_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": mt.HELM_CHART, "digest": sha256(archive), "size": len(archive)}
            ],
        },
        separators=(",", ":"),
    ).encode()

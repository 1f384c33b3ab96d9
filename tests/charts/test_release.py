"""A release shaped like openDesk's — several charts, tens of images sharing base layers,
an image listed under two keys — mirrored from a real upstream (CNCF distribution) into an
enforcing Zoll with one command, `zoll mirror apply release.yaml --wait`, and reported per
release, per chart and per image."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.oci import mediatypes as mt
from registry.oci.client import RegistryClient, RegistryConfig
from registry.oci.digest import Digest
from tests.charts.conftest import REGISTRY_NAME
from tests.mirror.test_mirror_api import zoll
from tests.oci_client.upstream import running_distribution
from tests.support.charts import HARDENED_SECURITY, RESOURCES, Chart, chart_manifest
from tests.support.servers import live_registry, registry_config

pytestmark = pytest.mark.slow
CHARTS = {"groupware": 9, "fileshare": 8, "chat": 7}
"""Chart → how many images it deploys (24 images, as openDesk's charts deploy tens)."""

SUITE = """\
{{- range .Values.components }}
---
apiVersion: apps/v1
kind: {{ .kind | default "Deployment" }}
metadata:
  name: {{ $.Release.Name }}-{{ .name }}
spec:
  selector:
    matchLabels: {app: {{ .name }}}
  template:
    metadata:
      labels: {app: {{ .name }}}
    spec:
      containers:
        - name: {{ .name }}
          image: "{{ $.Values.registry }}/{{ .repository }}:{{ .tag }}@{{ .digest }}"
          securityContext: {{ toJson $.Values.securityContext }}
          resources: {{ toJson $.Values.resources }}
{{- end }}
"""


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


BASE = _layer(
    {
        "etc/passwd": b"root:x:0:0:root:/root:/sbin/nologin\napp:x:10001:10001::/app:/bin/false\n",
        "usr/lib/base.bin": os.urandom(512 * 1024),  # the shared base every image carries
    }
)


def _image(name: str) -> tuple[bytes, list[bytes]]:
    app, app_diff = _layer({f"app/{name}": f"{name}\n".encode()})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "10001", "Cmd": [f"/app/{name}"]},
            "rootfs": {"type": "layers", "diff_ids": [BASE[1], app_diff]},
            "history": [{"created_by": "base"}, {"created_by": f"COPY {name}"}],
        }
    ).encode()
    return config, [BASE[0], app]


async def _push(client: RegistryClient, ref: str, config: bytes, layers: list[bytes],
                config_type: str, layer_type: str) -> Digest:  # fmt: skip
    repo, tag = client.for_reference(ref)
    for blob in (config, *layers):
        await repo.push_blob(blob, Digest.of(blob), len(blob))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": str(Digest.of(config)),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": str(Digest.of(b)), "size": len(b)}
                for b in layers
            ],
        }
    ).encode()
    await repo.put_manifest(manifest, mt.OCI_MANIFEST, tag)
    return Digest.of(manifest)


async def seed_upstream(host: str, plan: dict[str, int] = CHARTS) -> dict[str, Any]:
    """Images and charts upstream, and the release description that lists them."""
    images: dict[str, Any] = {}
    charts: dict[str, Any] = {}
    async with RegistryClient([RegistryConfig(host, insecure=True)]) as client:
        for chart_name, count in plan.items():
            components = []
            for n in range(count):
                name = f"{chart_name}{n}"
                config, layers = _image(name)
                digest = await _push(client, f"{host}/suite/{name}:1.0", config, layers,
                                     mt.OCI_CONFIG, mt.OCI_LAYER_GZIP)  # fmt: skip
                key = f"{chart_name}Component{n}"  # openDesk's camelCase keys
                images[key] = {
                    "registry": host,
                    "repository": f"suite/{name}",
                    "tag": f"1.0@{digest}",
                }
                components.append(
                    {
                        "name": name,
                        "repository": f"suite/{name}",
                        "tag": "1.0",
                        "digest": str(digest),
                    }
                )
            chart = Chart(
                chart_name,
                "2.1.0",
                values={
                    "registry": host,
                    "components": components,
                    "securityContext": HARDENED_SECURITY,
                    "resources": RESOURCES,
                },
                templates={"suite.yaml": SUITE},
            )
            archive, meta = chart.archive(), chart.config()
            repo, _ = client.for_reference(f"{host}/suite/charts/{chart_name}:2.1.0")
            for blob in (meta, archive):
                await repo.push_blob(blob, Digest.of(blob), len(blob))
            raw = chart_manifest(meta, archive)
            await repo.put_manifest(raw, mt.OCI_MANIFEST, "2.1.0")
            charts[chart_name] = {
                "registry": host,
                "repository": f"suite/charts/{chart_name}",
                "version": "2.1.0",
                "digest": str(Digest.of(raw)),
            }
    if "groupwareComponent0" in images:
        images["groupwareAntivirus"] = dict(images["groupwareComponent0"])  # listed twice
    return {
        "release": "suite",
        "version": "1.17.0",
        "target": "suite/",
        "insecure": True,
        "charts": charts,
        "images": images,
    }


async def test_a_release_mirrors_end_to_end_in_one_command(pg_dsn: str, tmp_path: Path) -> None:
    async with running_distribution(tmp_path / "upstream") as upstream:
        release = await seed_upstream(upstream.host)
        path = tmp_path / "release.yaml"
        path.write_text(yaml.safe_dump(release))
        config = registry_config(
            pg_dsn,
            tmp_path / "data",
            "filesystem",
            None,
            charts={"registry_names": [REGISTRY_NAME]},
            pipeline={"concurrency": 4},
            namespaces=[
                {
                    "prefix": "suite/",
                    "admission": "enforce",
                    "require_verification": False,
                    "fail_on": "critical",
                }
            ],
        )
        async with live_registry(config, pipeline=True) as live:
            code, out, err = await asyncio.wait_for(
                zoll("mirror", "apply", str(path), "--wait", "--json", "--url", live.url), 600
            )
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["failed"] == []
    assert report["release"]["name"] == "suite" and report["release"]["version"] == "1.17.0"
    keys = report["release"]["images"]
    assert keys["groupwareAntivirus"] == keys["groupwareComponent0"]  # one entry for both
    charts = {c["repository"]: c for c in report["charts"]}
    assert set(charts) == {f"suite/charts/{name}" for name in CHARTS}
    for name, count in CHARTS.items():
        chart = charts[f"suite/charts/{name}"]
        assert chart["state"] == "admitted", chart["reasons"]
        assert chart["digest"] == release["charts"][name]["digest"]  # bit-identical copy
        assert len(chart["images"]) == count
        for image in chart["images"]:
            assert image["state"] == "admitted", image
            assert image["repository"].startswith("suite/") and image["digest"]
    mirrored = [i for i in report["images"] if not i["repository"].startswith("suite/charts/")]
    assert len(mirrored) == sum(CHARTS.values())  # the image listed twice is mirrored once
    assert {i["state"] for i in report["images"]} == {"admitted"}


async def test_a_mirror_entry_naming_a_chart_mirrors_its_images(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with running_distribution(tmp_path / "upstream") as upstream:
        release = await seed_upstream(upstream.host, {"wiki": 3})
        chart = release["charts"]["wiki"]
        path = tmp_path / "set.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "name": "wiki",
                    "mirrors": [
                        {
                            "name": "wiki-chart",
                            "source": f"{upstream.host}/{chart['repository']}",
                            "target": "suite/charts/wiki",
                            "tags": [f"2.1.0@{chart['digest']}"],
                            "insecure": True,
                            "images_target": "suite/mirror/",
                            "values": {"resources": {"limits": {"memory": "256Mi"}}},
                        }
                    ],
                }
            )
        )
        config = registry_config(
            pg_dsn,
            tmp_path / "data",
            "filesystem",
            None,
            charts={"registry_names": [REGISTRY_NAME]},
            namespaces=[
                {
                    "prefix": "suite/",
                    "admission": "enforce",
                    "require_verification": False,
                    "fail_on": "critical",
                }
            ],
        )
        async with live_registry(config, pipeline=True) as live:
            code, out, err = await asyncio.wait_for(
                zoll("mirror", "apply", str(path), "--wait", "--json", "--url", live.url), 600
            )
    assert code == 0, (out, err)
    report = json.loads(out)
    [wiki] = report["charts"]
    assert wiki["state"] == "admitted", wiki["reasons"]
    assert sorted(i["repository"] for i in wiki["images"]) == [
        f"suite/mirror/suite/wiki{n}" for n in range(3)
    ]
    assert {i["state"] for i in wiki["images"]} == {"admitted"}
    copies = [i for i in report["images"] if i["repository"].startswith("suite/mirror/")]
    assert len(copies) == 3 and {i["entry"] for i in copies} == {"wiki-chart"}

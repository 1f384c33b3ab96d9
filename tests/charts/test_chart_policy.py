"""Charts judged offline, as the pipeline's scan stage judges them: unpacked under limits,
rendered by Helm's own engine with the chart's defaults plus the mirror set's values, every
workload and image listed, each chart criterion naming the workload and the field."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from policy.catalog import load_catalog
from policy.chart import ChartContext, ChartLimits, analyze_chart, chart_sbom, evaluate_chart
from policy.report import HardeningReport
from registry.oci.reader import OCILayoutReader
from tests.charts.layout import chart_layout
from tests.support.charts import Chart, tgz, workload_chart

DIGEST = "sha256:" + "ab" * 32
HERE = {"registry": "zoll.test", "repository": "opendesk/web", "tag": "1.0", "digest": DIGEST}
CONTEXT = ChartContext(repository="opendesk/charts/web", registry_names=("zoll.test",))
PEAK_RSS_MIB = 300


async def judge(
    tmp: Path, chart: Chart, values: dict[str, Any] | None = None, archive: bytes | None = None
) -> tuple[Any, HardeningReport]:
    digest = chart_layout(tmp / "layout", chart, archive)
    analysis = await analyze_chart(OCILayoutReader(tmp / "layout"), digest, values)
    return analysis, evaluate_chart(analysis, CONTEXT, load_catalog())


def failed(report: HardeningReport) -> dict[str, list[str]]:
    return {r.id: list(r.evidence) for r in report.results if r.status == "fail"}


async def test_hardened_chart_with_a_subchart_passes_and_lists_its_images(tmp_path: Path) -> None:
    sub = workload_chart("cache", {**HERE, "repository": "opendesk/cache", "tag": ""})
    chart = workload_chart("web", HERE, subcharts=[sub])
    analysis, report = await judge(tmp_path, chart)
    assert analysis.complete and analysis.engine.startswith("helm v")
    assert failed(report) == {}
    assert {r.status for r in report.results} == {"pass"}
    assert [r.id for r in report.results] == [c.id for c in load_catalog().for_subject("chart")]
    images = {i.reference: i for i in analysis.images}
    assert set(images) == {
        f"zoll.test/opendesk/web:1.0@{DIGEST}",
        f"zoll.test/opendesk/cache@{DIGEST}",
    }
    web = images[f"zoll.test/opendesk/web:1.0@{DIGEST}"]
    assert web.used_by == (
        "Deployment/web-web container web (spec.template.spec.containers[0].image)",
    )
    assert [(s.name, s.path) for s in analysis.subcharts] == [("cache", "charts/cache-1.0.0")]
    sbom = chart_sbom(analysis, name="opendesk/charts/web")
    kinds = {(c["type"], c["name"]) for c in sbom["components"]}
    assert kinds == {
        ("application", "cache"),
        ("container", "opendesk/web"),
        ("container", "opendesk/cache"),
    }
    purls = {c.get("purl") for c in sbom["components"] if c["type"] == "container"}
    assert (
        f"pkg:oci/web@sha256%3A{'ab' * 32}?repository_url=zoll.test%2Fopendesk%2Fweb&tag=1.0"
        in purls
    )


async def test_values_from_the_mirror_set_are_rendered(tmp_path: Path) -> None:
    chart = workload_chart("web", {**HERE, "registry": "registry.example.org"})
    _, report = await judge(tmp_path, chart)
    assert "HC-06" in failed(report)
    analysis, report = await judge(tmp_path, chart, {"image": {"registry": "zoll.test"}})
    assert "HC-06" not in failed(report)
    assert analysis.images[0].registry == "zoll.test"


async def test_privileged_pod_hostpath_and_foreign_image_name_workload_and_field(
    tmp_path: Path,
) -> None:
    chart = workload_chart(
        "agent",
        {"registry": "docker.io", "repository": "library/busybox", "tag": "1.36", "digest": ""},
        security={"privileged": True},
        pod={"hostNetwork": True},
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
    )
    _, report = await judge(tmp_path, chart)
    problems = failed(report)
    where = "Deployment/agent-agent (agent/templates/deployment.yaml)"
    container = "spec.template.spec.containers[0]"
    assert problems["HC-45"] == [
        f"{where}: spec.template.spec.hostNetwork is true",
        f"{where} container agent: {container}.securityContext.privileged is true",
    ]
    assert problems["HC-46"] == [
        f"{where}: spec.template.spec.volumes[0].hostPath mounts / (volume root)"
    ]
    assert problems["HC-06"][0].startswith(
        "docker.io/library/busybox:1.36 comes from docker.io, not from zoll.test: used by "
        f"Deployment/agent-agent container agent ({container}.image)"
    )
    assert problems["HC-01"][0].startswith("docker.io/library/busybox:1.36 is not pinned")
    for cid in ("HC-40", "HC-41", "HC-42", "HC-43", "HC-24"):
        assert problems[cid][0].startswith(f"{where} container agent: {container}.securityContext")
    assert "HC-44" not in problems  # resources are set


async def test_traversal_names_are_findings_and_the_chart_is_not_rendered(tmp_path: Path) -> None:
    chart = workload_chart("web", HERE)
    chart.extra["../../etc/cron.d/evil"] = b"* * * * * root sh\n"
    analysis, report = await judge(tmp_path, chart)
    assert not analysis.complete and analysis.engine is None
    assert "../../etc/cron.d/evil: name contains '..'" in failed(report)["HC-47"][0]
    assert report.result("HC-45").status == "not_applicable"


async def test_a_template_that_does_not_render_is_named(tmp_path: Path) -> None:
    chart = Chart("broken", templates={"x.yaml": "{{ .Values.missing.deeper }}"})
    analysis, report = await judge(tmp_path, chart)
    assert analysis.render_error and "nil pointer" in analysis.render_error
    assert failed(report)["HC-47"][0].startswith("render: ")


async def test_a_template_that_allocates_without_end_is_stopped(tmp_path: Path) -> None:
    chart = Chart(
        "hog", templates={"x.yaml": '{{ range until 100000000 }}{{ repeat 100 "x" }}{{ end }}'}
    )
    digest = chart_layout(tmp_path / "layout", chart)
    limits = ChartLimits(render_memory_bytes=1 << 30, render_seconds=30, max_rendered_bytes=1 << 20)
    analysis = await analyze_chart(OCILayoutReader(tmp_path / "layout"), digest, None, limits)
    assert not analysis.complete and analysis.render_error
    assert analysis.seconds < 30


def _bomb_archive(files: int, size: int) -> bytes:
    """A chart whose templates expand to `files` × `size` zero bytes: a few hundred KiB
    compressed, written without ever holding the expansion."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()

    def add(name: str, data_size: int, data: bytes | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.size = data_size
        out.write(packer.compress(info.tobuf(format=tarfile.PAX_FORMAT)))
        if data is not None:
            out.write(packer.compress(data))
        else:
            zeros = bytes(1 << 20)
            for start in range(0, data_size, len(zeros)):
                out.write(packer.compress(zeros[: min(len(zeros), data_size - start)]))
        out.write(packer.compress(bytes(-data_size % 512)))

    meta = b"apiVersion: v2\nname: bomb\nversion: 1.0.0\n"
    add("bomb/Chart.yaml", len(meta), meta)
    for n in range(files):
        add(f"bomb/templates/zeros-{n}.yaml", size)
    out.write(packer.compress(bytes(1024)))
    out.write(packer.flush())
    return out.getvalue()


def test_chart_bomb_is_rejected_within_the_memory_bound(tmp_path: Path) -> None:
    archive = _bomb_archive(64, 4 << 20)  # 256 MiB expanded, ~250 KiB packed
    assert len(archive) < 1 << 20
    chart_layout(tmp_path / "layout", Chart("bomb"), archive)
    done = subprocess.run(
        [sys.executable, "-m", "tests.charts.chart_probe", str(tmp_path / "layout"), "{}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert not result["complete"] and result["hc47"] == "fail"
    assert result["hc47_evidence"] == [
        f"limit: the chart expands to more than {ChartLimits().max_uncompressed_bytes} bytes"
    ]
    assert result["render_error"] is None  # never handed to the template engine
    grown_mib = (result["peak_rss_kib"] - result["baseline_rss_kib"]) / 1024
    assert result["peak_rss_kib"] < PEAK_RSS_MIB * 1024 and grown_mib < 96, result


def test_nested_subchart_archives_stop_at_the_depth_limit() -> None:
    from policy.chart.archive import unpack_chart

    inner = tgz({"deep/Chart.yaml": b"name: deep\nversion: 1.0.0\n"})
    for level in range(7):
        inner = tgz(
            {f"l{level}/Chart.yaml": b"name: l\nversion: 1.0.0\n", f"l{level}/charts/x.tgz": inner}
        )
    unpacked = unpack_chart(inner)
    assert not unpacked.complete
    assert [f.detail.get("limit") for f in unpacked.findings] == ["max_depth"]


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_not_unpacked(kind: bytes) -> None:
    from policy.chart.archive import unpack_chart

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        meta = b"name: c\nversion: 1.0.0\n"
        info = tarfile.TarInfo("c/Chart.yaml")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        link = tarfile.TarInfo("c/templates/x.yaml")
        link.type, link.linkname = kind, "/etc/shadow"
        tar.addfile(link)
    unpacked = unpack_chart(raw.getvalue())
    assert "templates/x.yaml" not in unpacked.files
    assert unpacked.findings[0].kind == "unsupported"

"""Helm charts through the pipeline as goods: quarantine → verify → scan → attest → admit,
with real chart archives pushed by oras and by Zoll's own OCI client, a supplier's cosign
signatures, and closure over the images each chart deploys."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import oras.client
import pytest

from registry.oci import mediatypes as mt
from registry.oci.client import RegistryClient, RegistryConfig
from registry.oci.digest import Digest
from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter, simple_signing_payload
from tests.charts.conftest import REGISTRY_NAME
from tests.charts.test_chart_policy import _bomb_archive
from tests.pipeline.conftest import Supplier, containerfile
from tests.pipeline.test_pipeline import push, sign
from tests.support.buildah import Builder
from tests.support.charts import Chart, chart_manifest, workload_chart
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry

pytestmark = pytest.mark.slow


async def oras_push(zoll: LiveRegistry, tmp: Path, name: str, tag: str, chart: Chart) -> Digest:
    """`helm push` as oras does it: the Helm config and the chart archive as its layer."""
    folder = tmp / f"oras-{chart.name}-{tag}"
    folder.mkdir()
    (folder / "config.json").write_bytes(chart.config())
    archive = folder / f"{chart.name}-{chart.version}.tgz"
    archive.write_bytes(chart.archive())
    client = oras.client.OrasClient(hostname=zoll.host, insecure=True)

    def run() -> None:
        client.push(
            target=f"{zoll.host}/{name}:{tag}",
            files=[f"{archive}:{mt.HELM_CHART}"],
            manifest_config=f"{folder / 'config.json'}:{mt.HELM_CONFIG}",
            disable_path_validation=True,
            quiet=True,
        )

    await asyncio.to_thread(run)
    return await tagged(zoll, name, tag)


async def tagged(zoll: LiveRegistry, name: str, tag: str) -> Digest:
    """The digest a tag points at, from the API (a quarantined manifest is not served)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{zoll.url}/api/v1/repositories/{name}/images") as r,
    ):
        images = (await r.json())["images"]
    return Digest.parse(next(i["digest"] for i in images if tag in i["tags"]))


async def client_push(
    zoll: LiveRegistry, name: str, tag: str, chart: Chart, archive: bytes | None = None
) -> Digest:
    """The same with Zoll's own OCI client (`registry.oci.client`)."""
    archive = chart.archive() if archive is None else archive
    config = chart.config()
    raw = chart_manifest(config, archive)
    async with RegistryClient([RegistryConfig(zoll.host, insecure=True)]) as client:
        repo, _ = client.for_reference(f"{zoll.host}/{name}:{tag}")
        for blob in (config, archive):
            await repo.push_blob(blob, Digest.of(blob), len(blob))
        await repo.put_manifest(raw, mt.OCI_MANIFEST, tag)
    return Digest.of(raw)


async def api(http: aiohttp.ClientSession, zoll: LiveRegistry, path: str) -> Any:
    async with http.get(f"{zoll.url}/api/v1{path}") as r:
        assert r.status == 200, (path, r.status, await r.text())
        return await r.json()


async def pull(
    http: aiohttp.ClientSession, zoll: LiveRegistry, name: str, ref: str
) -> tuple[int, Any]:
    async with http.get(
        f"{zoll.url}/v2/{name}/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST}
    ) as r:
        body = await r.read()
        return r.status, body if r.status == 200 else json.loads(body)


def image_values(digest: Digest, repository: str = "opendesk/app") -> dict[str, str]:
    return {
        "registry": REGISTRY_NAME,
        "repository": repository,
        "tag": "1.0.0",
        "digest": str(digest),
    }


async def test_hardened_chart_is_admitted_once_its_image_is(
    chart_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    image = await push(zoll, builder, tmp_path, "opendesk/app", containerfile(marker="chart"))
    chart = workload_chart("app", image_values(image))
    digest = await oras_push(zoll, tmp_path, "opendesk/charts/app", "1.0.0", chart)
    status, body = await pull(http, zoll, "opendesk/charts/app", "1.0.0")
    assert status == 403 and body["errors"][0]["code"] == "DENIED"  # a chart is quarantined
    await sign(zoll, "opendesk/charts/app", digest, supplier)
    await drain(PipelineRunner(zoll.services))

    state = await api(http, zoll, f"/images/opendesk/charts/app@{digest}/status")
    assert state["kind"] == "chart" and state["state"] == "quarantined"
    assert state["verification_passed"] and state["hardening_passed"], state
    [held] = state["reasons"]
    assert held.startswith(
        f"image {REGISTRY_NAME}/opendesk/app:1.0.0@{image} (opendesk/app@{image}) is quarantined:"
    )

    await sign(zoll, "opendesk/app", image, supplier)  # the image's supplier signs it
    await drain(PipelineRunner(zoll.services))
    assert (await api(http, zoll, f"/images/opendesk/app@{image}/status"))["state"] == "admitted"
    state = await api(http, zoll, f"/images/opendesk/charts/app@{digest}/status")
    assert state["state"] == "admitted", state["reasons"]
    assert [e["stage"] for e in state["events"]][:4] == ["verify", "scan", "attest", "admit"]

    hardening = (await api(http, zoll, f"/images/opendesk/charts/app@{digest}/hardening"))[
        "document"
    ]
    assert {r["status"] for r in hardening["results"]} == {"pass"}
    assert "HC-45" in {r["id"] for r in hardening["results"]}
    assert hardening["chart"]["images"][0]["reference"].endswith(str(image))
    sbom = (await api(http, zoll, f"/images/opendesk/charts/app@{digest}/sbom"))["document"]
    assert any(c["type"] == "container" and c["version"] == str(image) for c in sbom["components"])
    attestations = await api(http, zoll, f"/images/opendesk/charts/app@{digest}/attestations")
    assert {a["predicate_type"] for a in attestations["attestations"]} == {
        "https://slsa.dev/verification_summary/v1",
        "https://zoll.dev/attestations/hardening/v1",
        "https://cyclonedx.org/bom",
    }
    status, raw = await pull(http, zoll, "opendesk/charts/app", "1.0.0")
    assert status == 200 and Digest.of(raw) == digest
    client = oras.client.OrasClient(hostname=zoll.host, insecure=True)
    pulled = await asyncio.to_thread(
        client.pull, target=f"{zoll.host}/opendesk/charts/app:1.0.0", outdir=str(tmp_path / "out")
    )
    assert Path(pulled[0]).read_bytes() == chart.archive()  # bit-identical


async def test_unsafe_charts_are_quarantined_naming_workload_and_field(
    chart_zoll: LiveRegistry,
    supplier: Supplier,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    pinned = {"tag": "1.36", "digest": "sha256:" + "1" * 64}
    cases = {
        "privileged": workload_chart(
            "agent",
            {"registry": REGISTRY_NAME, "repository": "opendesk/agent", **pinned},
            security={"privileged": True},
        ),
        "hostpath": workload_chart(
            "backup",
            {"registry": REGISTRY_NAME, "repository": "opendesk/backup", **pinned},
            volumes=[{"name": "node", "hostPath": {"path": "/var/lib/kubelet"}}],
        ),
        "foreign": workload_chart(
            "proxy", {"registry": "ghcr.io", "repository": "example/proxy", **pinned}
        ),
    }
    digests = {}
    for name, chart in cases.items():
        digests[name] = await client_push(zoll, f"opendesk/charts/{name}", "1.0.0", chart)
        await sign(zoll, f"opendesk/charts/{name}", digests[name], supplier)
    await drain(PipelineRunner(zoll.services))
    reasons = {}
    for name, digest in digests.items():
        state = await api(http, zoll, f"/images/opendesk/charts/{name}@{digest}/status")
        assert state["state"] == "quarantined" and state["verification_passed"]
        reasons[name] = state["reasons"]
        status, body = await pull(http, zoll, f"opendesk/charts/{name}", "1.0.0")
        assert status == 403 and body["errors"][0]["code"] == "DENIED"
    container = "spec.template.spec.containers[0]"
    expected = {
        "privileged": (
            "HC-45 (critical)",
            "Deployment/agent-agent (agent/templates/deployment.yaml) container agent: "
            f"{container}.securityContext.privileged is true",
        ),
        "hostpath": (
            "HC-46 (high)",
            "Deployment/backup-backup (backup/templates/deployment.yaml): "
            "spec.template.spec.volumes[0].hostPath mounts /var/lib/kubelet (volume node)",
        ),
        "foreign": (
            "HC-06 (high)",
            f"ghcr.io/example/proxy:1.36@{pinned['digest']} comes from ghcr.io, not from "
            f"{REGISTRY_NAME}: used by Deployment/proxy-proxy container proxy ({container}.image)",
        ),
    }
    for name, (criterion, evidence) in expected.items():
        assert any(
            r.startswith(f"hardening criterion {criterion} failed") and evidence in r
            for r in reasons[name]
        ), reasons[name]
    assert (
        f"image ghcr.io/example/proxy:1.36@{pinned['digest']} is not in this registry"
        in reasons["foreign"]
    )


async def test_a_chart_whose_image_is_quarantined_stays_quarantined(
    chart_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    image = await push(zoll, builder, tmp_path, "opendesk/rootapp", containerfile(user="0"))
    await sign(zoll, "opendesk/rootapp", image, supplier)
    chart = workload_chart("rootapp", image_values(image, "opendesk/rootapp"))
    digest = await client_push(zoll, "opendesk/charts/rootapp", "1.0.0", chart)
    await sign(zoll, "opendesk/charts/rootapp", digest, supplier)
    await drain(PipelineRunner(zoll.services))
    image_state = await api(http, zoll, f"/images/opendesk/rootapp@{image}/status")
    assert image_state["state"] == "quarantined"
    state = await api(http, zoll, f"/images/opendesk/charts/rootapp@{digest}/status")
    assert state["state"] == "quarantined" and state["hardening_passed"]
    assert state["reasons"] == [
        f"image {REGISTRY_NAME}/opendesk/rootapp:1.0.0@{image} (opendesk/rootapp@{image}) "
        f"is quarantined: {image_state['reasons'][0]}"
    ]
    assert "HC-18" in image_state["reasons"][0]


async def test_a_tampered_chart_fails_its_signature(
    chart_zoll: LiveRegistry,
    supplier: Supplier,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    pinned = {
        "registry": REGISTRY_NAME,
        "repository": "opendesk/web",
        "digest": "sha256:" + "2" * 64,
    }
    honest = workload_chart("web", pinned)
    original = await client_push(zoll, "opendesk/charts/web", "1.0.0", honest)
    await sign(zoll, "opendesk/charts/web", original, supplier)
    # Someone swaps the chart under the tag: same name and version, a privileged pod, and
    # the supplier's signature copied onto the new digest.
    tampered_chart = workload_chart("web", pinned, security={"privileged": True})
    tampered = await client_push(zoll, "opendesk/charts/web", "1.0.0", tampered_chart)
    writer = CosignWriter(RegistrySink(zoll.url, "opendesk/charts/web"))
    await asyncio.to_thread(
        writer.sign, tampered, supplier.key, payload=simple_signing_payload(original)
    )
    await drain(PipelineRunner(zoll.services))
    state = await api(http, zoll, f"/images/opendesk/charts/web@{tampered}/status")
    assert state["state"] == "quarantined" and state["verification_passed"] is False
    assert any(r.startswith("verification requirement signature failed") for r in state["reasons"])
    verification = (await api(http, zoll, f"/images/opendesk/charts/web@{tampered}/verification"))[
        "document"
    ]
    assert not verification["passed"]
    status, body = await pull(http, zoll, "opendesk/charts/web", "1.0.0")
    assert status == 403 and body["errors"][0]["detail"]["digest"] == str(tampered)


def _clear_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux ≥ 4.0)


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def test_a_chart_bomb_is_rejected_with_a_reason_within_the_memory_bound(
    chart_zoll: LiveRegistry,
    supplier: Supplier,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    archive = _bomb_archive(64, 4 << 20)  # 256 MiB of templates in ~250 KiB
    digest = await client_push(zoll, "opendesk/charts/bomb", "1.0.0", Chart("bomb"), archive)
    await sign(zoll, "opendesk/charts/bomb", digest, supplier)
    _clear_peak()
    before = _peak_kib()
    await drain(PipelineRunner(zoll.services))
    grown_mib = (_peak_kib() - before) / 1024
    state = await api(http, zoll, f"/images/opendesk/charts/bomb@{digest}/status")
    assert state["state"] == "quarantined"
    assert any(
        "HC-47 (high)" in r and "limit: the chart expands to more than 67108864 bytes" in r
        for r in state["reasons"]
    ), state["reasons"]
    assert grown_mib < 128, f"the service grew by {grown_mib:.0f} MiB reading a chart bomb"


async def test_no_silent_exemptions_for_artifacts_the_pipeline_does_not_judge(
    chart_zoll: LiveRegistry,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = chart_zoll
    notes = tmp_path / "notes.txt"
    notes.write_text("release notes\n")
    config = tmp_path / "config.json"
    config.write_text("{}")
    client = oras.client.OrasClient(hostname=zoll.host, insecure=True)

    def push_notes(target: str, config_type: str) -> None:
        client.push(
            target=f"{zoll.host}/{target}",
            files=[f"{notes}:text/plain"],
            manifest_config=f"{config}:{config_type}",
            disable_path_validation=True,
            quiet=True,
        )

    for target in ("opendesk/notes:1.0", "tools/notes:1.0", "tools/other:1.0"):
        kind = (
            "application/vnd.example.tool.v1+json"
            if "other" in target
            else ("application/vnd.example.notes.v1+json")
        )
        await asyncio.to_thread(push_notes, target, kind)
    held, body = await pull(http, zoll, "opendesk/notes", "1.0")
    assert held == 403
    reason = body["errors"][0]["detail"]["reasons"][0]
    assert reason == (
        "artifact type application/vnd.example.notes.v1+json is not judged by the pipeline and "
        "namespace 'opendesk/' (admission: enforce) does not allow it: list it in "
        "allow_artifact_types to serve it"
    )
    assert (await pull(http, zoll, "tools/other", "1.0"))[0] == 403
    served, raw = await pull(http, zoll, "tools/notes", "1.0")
    assert served == 200
    state = await api(http, zoll, f"/images/tools/notes@{Digest.of(raw)}/status")
    assert state["state"] == "exempt" and state["reasons"] == [
        "artifact type application/vnd.example.notes.v1+json is not judged by the pipeline; "
        "served because namespace 'tools/' allows it "
        "(allow_artifact_types: application/vnd.example.notes.*)"
    ]

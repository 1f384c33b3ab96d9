"""Real images built with buildah, each violating exactly one criterion, and one passing all.

Every criterion of the shipped catalog is asserted for every image: the violating one
fails (with evidence naming the problem), every other one passes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from policy import (
    BaseImage,
    ImageContext,
    ProvenanceSummary,
    analyze_image,
    context_from_reader,
    evaluate,
    load_catalog,
)
from policy.packages import Package, VulnFinding
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.policy.conftest import BuildImage
from tests.policy.layouts import Layout, member, tar_bytes

SIZE_OVERRIDE = {
    "name": "small-images",
    "criteria": {"HC-34": {"params": {"max_bytes": 8_000_000}}},
}
GOOD_CONTEXT = ImageContext(
    repository="zoll.test/app",
    tags=("1.0.0",),
    attestation_types=("https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1"),
    provenance=ProvenanceSummary(
        builder_id="https://zoll.test/builder",
        base_images=(BaseImage("zoll.test/busybox", "sha256:" + "ab" * 32),),
    ),
    signature_verified=True,
)
LABELS = {
    "org.opencontainers.image.source": "https://code.example.org/app",
    "org.opencontainers.image.revision": "4f1c2d9",
    "org.opencontainers.image.licenses": "EUPL-1.2",
    "org.opencontainers.image.version": "1.0.0",
    "io.zoll.probe.liveness": "http :8080/healthz",
}


@dataclass
class Spec:
    """The passing image; each case changes one thing."""

    run: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    expose: str = "8080"
    user: str | None = "10001"
    cmd: str = '["/app/run"]'
    env: str = ""
    files: dict[str, bytes | str] = field(default_factory=dict)
    layers: bool = False

    def containerfile(self) -> str:
        lines = [
            "FROM scratch",
            "COPY rootfs/ /",
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
            "RUN mkdir -p /etc /tmp /app && chmod 1777 /tmp && "
            "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:10001:10001::/app:/bin/sh\\n' "
            "> /etc/passwd",
            *self.run,
        ]
        if self.env:
            lines.append(f"ENV {self.env}")
        if self.labels:
            lines.append("LABEL " + " ".join(f'{k}="{v}"' for k, v in self.labels.items()))
        if self.expose:
            lines.append(f"EXPOSE {self.expose}")
        if self.user is not None:
            lines.append(f"USER {self.user}")
        lines.append(f"CMD {self.cmd}")
        return "\n".join(lines) + "\n"


def _private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _aws_key_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AKIA" + "".join(alphabet[b % 32] for b in os.urandom(16))


def _labels_without(key: str) -> dict[str, str]:
    return {k: v for k, v in LABELS.items() if k != key}


IMAGE_CASES: dict[str, tuple[Spec, str, str]] = {
    "root-user": (Spec(user=None), "HC-18", "config.User is empty"),
    "unknown-uid": (Spec(user="4242"), "HC-18", "UID 4242 does not exist"),
    "named-user": (Spec(user="app"), "HC-18", "is a name, not a numeric UID"),
    "setuid": (
        Spec(run=["RUN cp /bin/busybox /app/helper && chmod 4755 /app/helper"]),
        "HC-20",
        "setuid: /app/helper",
    ),
    "world-writable": (
        Spec(run=["RUN mkdir /data && chmod 777 /data"]),
        "HC-33",
        "world-writable: /data",
    ),
    "secret-deleted-later": (
        Spec(
            run=["COPY deploy.pem /app/deploy.pem", "RUN rm /app/deploy.pem"],
            files={"deploy.pem": _private_key_pem()},
            layers=True,
        ),
        "HC-17",
        "private key in /app/deploy.pem (layer 3, in final tree: no (deleted later))",
    ),
    "secret-in-env": (
        Spec(env=f"AWS_ACCESS_KEY_ID={_aws_key_id()}"),
        "HC-17",
        "AWS access key in config env AWS_ACCESS_KEY_ID",
    ),
    "apk-cache": (
        Spec(
            run=["RUN mkdir -p /var/cache/apk && echo index > /var/cache/apk/APKINDEX.0a1b.tar.gz"]
        ),
        "HC-21",
        "/var/cache/apk: 6 bytes",
    ),
    "package-manager": (
        Spec(run=["RUN mkdir -p /sbin && cp /bin/busybox /sbin/apk"]),
        "HC-36",
        "package manager: /sbin/apk",
    ),
    "no-revision-label": (
        Spec(labels=_labels_without("org.opencontainers.image.revision")),
        "HC-05",
        "missing label or annotation org.opencontainers.image.revision",
    ),
    "no-probe": (
        Spec(labels=_labels_without("io.zoll.probe.liveness")),
        "HC-25",
        "no HEALTHCHECK and no probe label",
    ),
    "privileged-port": (Spec(expose="80"), "HC-26", "privileged port exposed: 80/tcp"),
    "sshd": (
        Spec(run=["RUN mkdir -p /usr/sbin && cp /bin/busybox /usr/sbin/sshd"]),
        "HC-22",
        "remote-access server: /usr/sbin/sshd",
    ),
    "supervisor": (Spec(cmd='["supervisord", "-n"]'), "HC-23", "starts a supervisor"),
    "curl-pipe-sh": (
        Spec(run=["RUN true || wget -qO- http://installer.invalid/get.sh | sh"]),
        "HC-29",
        "pipes a download into a shell",
    ),
    "oversized": (
        Spec(run=["COPY blob /app/blob"], files={"blob": os.urandom(6_000_000)}),
        "HC-34",
        "exceeds 8000000",
    ),
}

CYCLONEDX = "application/vnd.cyclonedx+json"
CRITICAL = Package("Debian", "openssl", "3.0.11-1", "pkg:deb/debian/openssl@3.0.11-1", "12")


def _vuln(vex: Any = None) -> VulnFinding:
    return VulnFinding("CVE-2024-0001", CRITICAL, "critical", vex_status=vex)


CONTEXT_CASES: dict[str, tuple[ImageContext, list[VulnFinding], str, str]] = {
    "latest-only": (replace(GOOD_CONTEXT, tags=("latest",)), [], "HC-02", "latest"),
    "no-sbom": (
        replace(GOOD_CONTEXT, attestation_types=("https://slsa.dev/provenance/v1",)),
        [],
        "HC-10",
        "no SBOM attached",
    ),
    "no-provenance": (
        replace(GOOD_CONTEXT, attestation_types=("https://cyclonedx.org/bom",)),
        [],
        "HC-04",
        "no provenance attestation attached",
    ),
    "unsigned": (replace(GOOD_CONTEXT, signature_verified=False), [], "HC-03", "no signature"),
    "critical-vulnerability": (GOOD_CONTEXT, [_vuln()], "HC-12", "CVE-2024-0001 (critical)"),
    "base-by-tag": (
        replace(
            GOOD_CONTEXT,
            provenance=ProvenanceSummary(base_images=(BaseImage("zoll.test/busybox:1.36"),)),
        ),
        [],
        "HC-30",
        "zoll.test/busybox:1.36 (provenance) has no digest",
    ),
}


async def _report(
    build_image: BuildImage, name: str, spec: Spec, context: ImageContext, vulns: list[VulnFinding]
) -> Any:
    reader, digest = build_image(name, spec.containerfile(), files=spec.files, layers=spec.layers)
    analysis = await analyze_image(reader, digest)
    assert analysis.complete, analysis.findings
    return evaluate(analysis, context, load_catalog([SIZE_OVERRIDE]), vulns)


def _assert_only(report: Any, failing: str | None, evidence: str | None) -> None:
    statuses = {r.id: r.status for r in report.results}
    expected = dict.fromkeys(statuses, "pass")
    if failing:
        expected[failing] = "fail"
    assert statuses == expected, [
        (r.id, r.status, r.evidence) for r in report.results if r.status != expected[r.id]
    ]
    if failing and evidence:
        assert any(evidence in line for line in report.result(failing).evidence), report.result(
            failing
        ).evidence


async def test_hardened_image_passes_every_criterion(build_image: BuildImage) -> None:
    report = await _report(build_image, "good", Spec(), GOOD_CONTEXT, [])
    _assert_only(report, None, None)
    assert len(report.results) == len(load_catalog().for_subject("image"))
    assert report.result("HC-18").evidence[0] == "runs as UID 10001 (app)"


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
async def test_image_violating_one_criterion(build_image: BuildImage, case: str) -> None:
    spec, failing, evidence = IMAGE_CASES[case]
    report = await _report(build_image, case, spec, GOOD_CONTEXT, [])
    _assert_only(report, failing, evidence)


@pytest.mark.parametrize("case", sorted(CONTEXT_CASES))
async def test_context_violating_one_criterion(build_image: BuildImage, case: str) -> None:
    context, vulns, failing, evidence = CONTEXT_CASES[case]
    report = await _report(build_image, "good", Spec(), context, vulns)
    _assert_only(report, failing, evidence)


async def test_vex_clears_a_critical_vulnerability(build_image: BuildImage) -> None:
    report = await _report(build_image, "good", Spec(), GOOD_CONTEXT, [_vuln("not_affected")])
    _assert_only(report, None, None)
    assert "1 cleared by VEX" in report.result("HC-12").evidence[0]


async def test_unknown_context_makes_context_criteria_not_applicable(
    build_image: BuildImage,
) -> None:
    report = await _report(build_image, "good", Spec(), ImageContext(), None)  # type: ignore[arg-type]
    not_applicable = {r.id for r in report.results if r.status == "not_applicable"}
    assert not_applicable == {"HC-02", "HC-10", "HC-04", "HC-03", "HC-12", "HC-30"}
    assert report.result("HC-12").evidence == ("no vulnerability data for this image",)
    assert not report.failed()


async def test_docker_healthcheck_and_sbom_referrer_from_the_layout(tmp_path: Path) -> None:
    """A Docker-format HEALTHCHECK counts for HC-25; an SBOM referrer in the layout for HC-10."""
    layout = Layout(tmp_path)
    digest, size = layout.blob(tar_bytes([(member("etc/passwd"), b"app:x:1000:1000::/:/x\n")]))
    health = {"Test": ["CMD", "/bin/healthy"], "Interval": 30_000_000_000}
    image = layout.image(
        [(digest, size, mt.OCI_LAYER)], {"config": {"User": "1000", "Healthcheck": health}}
    )
    sbom_digest, sbom_size = layout.blob(b'{"bomFormat": "CycloneDX"}')
    empty_digest, empty_size = layout.blob(b"{}")
    image_size = (tmp_path / "blobs" / "sha256" / image[7:]).stat().st_size
    referrer = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": CYCLONEDX,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": empty_digest, "size": empty_size},
        "layers": [
            {
                "mediaType": "application/vnd.cyclonedx+json",
                "digest": sbom_digest,
                "size": sbom_size,
            }
        ],
        "subject": {"mediaType": mt.OCI_MANIFEST, "digest": image, "size": image_size},
    }
    ref_digest, ref_size = layout.blob(json.dumps(referrer).encode())
    index = json.loads((tmp_path / "index.json").read_text())
    index["manifests"].append(
        {"mediaType": mt.OCI_MANIFEST, "digest": ref_digest, "size": ref_size}
    )
    (tmp_path / "index.json").write_text(json.dumps(index))

    reader = OCILayoutReader(tmp_path)
    analysis = await analyze_image(reader, image)
    context = await context_from_reader(reader, Digest.parse(image))
    assert context.attestation_types == (CYCLONEDX,)
    assert context.tags == ("latest",)
    report = evaluate(analysis, context, load_catalog(), None)
    assert report.result("HC-25").status == "pass"
    assert report.result("HC-25").evidence == ("HEALTHCHECK CMD /bin/healthy",)
    assert report.result("HC-10").status == "pass"
    assert report.result("HC-04").status == "fail"
    assert report.result("HC-02").status == "fail"  # only "latest"

"""`zoll policy check` on a real image layout: table, JSON, override, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.cli.main import main
from tests.policy.conftest import BuildImage

CONTAINERFILE = (
    'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    "RUN mkdir -p /etc && echo 'app:x:10001:10001::/:/bin/sh' > /etc/passwd\n"
    "USER 10001\n"
)


def test_check_prints_json_and_fails_on_high(
    build_image: BuildImage, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reader, digest = build_image("cli", CONTAINERFILE)
    layout = reader.root
    sbom = tmp_path / "sbom.json"
    code = main(["policy", "check", f"oci:{layout}:1.0.0", "--json", "--sbom", str(sbom)])
    out = json.loads(capsys.readouterr().out)
    report = out["report"]
    assert report["subject"]["digest"] == str(digest)
    results = {r["id"]: r["status"] for r in report["results"]}
    assert results["HC-18"] == "pass" and results["HC-05"] == "fail"
    assert results["HC-02"] == "pass"  # tag 1.0.0 read from the layout
    assert results["HC-10"] == "fail"  # the layout has no SBOM referrer
    assert code == 1
    assert json.loads(sbom.read_text())["specVersion"] == "1.6"

    override = tmp_path / "lenient.yaml"
    override.write_text(
        "name: lenient\ncriteria:\n  HC-10: {enabled: false}\n  HC-04: {enabled: false}\n"
    )
    code = main(["policy", "check", f"oci:{layout}:1.0.0", "--catalog", str(override)])
    table = capsys.readouterr().err
    assert code == 0
    assert "HC-18" in table and "not_applicable" in table


def test_check_reports_unreadable_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", f"oci:{tmp_path}"]) == 2
    assert "is not an OCI image layout" in " ".join(capsys.readouterr().err.split())
    assert main(["policy", "check", "ftp://example/app"]) == 2
    assert "use oci:<layout-dir>" in " ".join(capsys.readouterr().err.split())

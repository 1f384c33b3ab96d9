"""Supplier SBOMs attached to an image — SPDX under cosign's `.sbom` tag, CycloneDX as a
signed attestation — are read at scan time, compared with the SBOM Zoll builds from the
layers, and served beside it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter
from tests.pipeline.conftest import Supplier, containerfile
from tests.pipeline.test_pipeline import PROVENANCE, SBOM, api, push
from tests.support.buildah import Builder
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry

pytestmark = pytest.mark.slow

SPDX = {
    "spdxVersion": "SPDX-2.3",
    "SPDXID": "SPDXRef-DOCUMENT",
    "documentDescribes": ["SPDXRef-image"],
    "packages": [
        {"SPDXID": "SPDXRef-image", "name": "app", "versionInfo": "1.0.0"},
        {
            "SPDXID": "SPDXRef-openssl",
            "name": "openssl",
            "versionInfo": "3.0.13",
            "externalRefs": [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": "pkg:deb/debian/openssl@3.0.13?arch=amd64",
                }
            ],
        },
    ],
}
CYCLONEDX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "components": [{"type": "library", "name": "app-runtime", "version": "2.4.1"}],
}


async def test_supplier_sboms_are_read_compared_and_served(
    enforcing_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = enforcing_zoll
    digest = await push(zoll, builder, tmp_path, "opendesk/sbomapp", containerfile(marker="s"))
    writer = CosignWriter(RegistrySink(zoll.url, "opendesk/sbomapp"))
    await asyncio.to_thread(writer.sign, digest, supplier.key)
    await asyncio.to_thread(writer.attest, digest, supplier.key, SBOM, CYCLONEDX)
    await asyncio.to_thread(
        writer.attest, digest, supplier.key, PROVENANCE, {"runDetails": {"builder": {"id": "x"}}}
    )
    await asyncio.to_thread(writer.attach_sbom, digest, json.dumps(SPDX).encode())
    await drain(PipelineRunner(zoll.services))

    state = await api(http, zoll, f"/images/opendesk/sbomapp@{digest}/status")
    assert state["state"] == "admitted", state["reasons"]  # the .sbom tag is an attachment
    served = await api(http, zoll, f"/images/opendesk/sbomapp@{digest}/sbom/supplier")
    by_format = {s["format"]: s for s in served["sboms"]}
    assert set(by_format) == {"CycloneDX 1.6", "SPDX-2.3"}
    spdx = by_format["SPDX-2.3"]
    assert spdx["source"] == f"cosign tag sha256-{digest.encoded}.sbom"
    assert spdx["document"] == SPDX
    assert spdx["comparison"]["supplier_packages"] == 1  # the image itself is not a package
    assert spdx["comparison"]["only_supplier"] == ["pkg:deb/debian/openssl@3.0.13"]
    cdx = by_format["CycloneDX 1.6"]
    assert cdx["source"] == f"attestation in sha256-{digest.encoded}.att"
    assert cdx["predicate_type"] == SBOM
    assert cdx["comparison"]["only_supplier"] == ["app-runtime@2.4.1"]
    ours = (await api(http, zoll, f"/images/opendesk/sbomapp@{digest}/sbom"))["document"]
    zoll_packages = len([c for c in ours["components"] if c["type"] != "operating-system"])
    assert cdx["comparison"]["zoll_packages"] == zoll_packages
    assert cdx["comparison"]["only_zoll_count"] == zoll_packages  # nothing in common

"""An image's way through Zoll: quarantine → verify → scan → attest → admit, with real
images, a supplier's cosign signatures and attestations, and Zoll's own signed statements
checked by an independent implementation."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.signer import SSlibKey

from attest.dsse import Envelope
from attest.tlog.checkpoint import SignedCheckpoint
from attest.tlog.entries import attestation_record
from attest.tlog.proofs import InclusionProof, verify_inclusion
from registry.oci.digest import Digest
from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter
from tests.pipeline.conftest import Supplier, containerfile
from tests.support.buildah import Builder
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry
from tests.support.tools import layout_index, skopeo

pytestmark = pytest.mark.slow
SBOM = "https://cyclonedx.org/bom"
PROVENANCE = "https://slsa.dev/provenance/v1"


async def push(zoll: LiveRegistry, builder: Builder, tmp: Path, name: str, spec: str) -> Digest:
    image = builder.build(name.replace("/", "-"), spec)
    layout = builder.push_oci_layout(image, tmp / name.replace("/", "_"), "1.0.0")
    await skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"oci:{layout}:1.0.0",
        f"docker://{zoll.host}/{name}:1.0.0",
    )
    return Digest.parse(layout_index(layout)["manifests"][0]["digest"])


async def sign(
    zoll: LiveRegistry, name: str, digest: Digest, supplier: Supplier, attestations: bool = True
) -> None:
    writer = CosignWriter(RegistrySink(zoll.url, name))
    await asyncio.to_thread(writer.sign, digest, supplier.key)
    if attestations:
        await asyncio.to_thread(
            writer.attest,
            digest,
            supplier.key,
            SBOM,
            {"bomFormat": "CycloneDX", "specVersion": "1.6"},
        )
        await asyncio.to_thread(
            writer.attest,
            digest,
            supplier.key,
            PROVENANCE,
            {
                "buildDefinition": {"buildType": "https://example.org/build"},
                "runDetails": {"builder": {"id": "https://ci.example.org"}},
            },
        )


async def pull_status(http: aiohttp.ClientSession, zoll: LiveRegistry, ref: str) -> tuple[int, Any]:
    name, _, tag = ref.partition(":")
    async with http.get(f"{zoll.url}/v2/{name}/manifests/{tag}") as r:
        return r.status, await r.json(content_type=None) if r.status != 200 else None


async def api(http: aiohttp.ClientSession, zoll: LiveRegistry, path: str) -> Any:
    async with http.get(f"{zoll.url}/api/v1{path}") as r:
        assert r.status == 200, (path, r.status, await r.text())
        return await r.json(content_type=None) if r.content_type != "text/plain" else await r.text()


async def test_signed_hardened_image_is_admitted_and_attested(
    enforcing_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = enforcing_zoll
    digest = await push(zoll, builder, tmp_path, "opendesk/app", containerfile(marker="good"))
    status, body = await pull_status(http, zoll, "opendesk/app:1.0.0")
    assert status == 403 and body["errors"][0]["code"] == "DENIED"  # quarantined on arrival
    await sign(zoll, "opendesk/app", digest, supplier)

    started = time.monotonic()
    counts = await drain(PipelineRunner(zoll.services))
    elapsed = time.monotonic() - started
    assert all(states.get("failed", 0) == 0 for states in counts.values()), counts

    state = await api(http, zoll, f"/images/opendesk/app@{digest}/status")
    assert state["state"] == "admitted", state["reasons"]
    assert [e["stage"] for e in state["events"]][-4:] == ["verify", "scan", "attest", "admit"]
    assert (await pull_status(http, zoll, "opendesk/app:1.0.0"))[0] == 200

    verification = (await api(http, zoll, f"/images/opendesk/app@{digest}/verification"))[
        "document"
    ]
    assert verification["passed"] and verification["policy"].startswith("supplier@sha256:")
    hardening = (await api(http, zoll, f"/images/opendesk/app@{digest}/hardening"))["document"]
    assert {r["id"]: r["status"] for r in hardening["results"]}["HC-18"] == "pass"

    # Zoll's own attestations: attached as referrers, signed with the published key,
    # verified here by securesystemslib (not Zoll's code), and included in the log.
    keys = await api(http, zoll, "/keys")
    active = next(k for k in keys["keys"] if k["keyid"] == keys["activeKeyid"])
    attestations = await api(http, zoll, f"/images/opendesk/app@{digest}/attestations")
    kinds = {a["predicate_type"] for a in attestations["attestations"]}
    assert kinds == {
        "https://slsa.dev/verification_summary/v1",
        "https://zoll.dev/attestations/hardening/v1",
        SBOM,
    }
    public = serialization.load_pem_public_key(active["publicKey"].encode())
    verifier_key = SSlibKey.from_crypto(public, keyid=active["keyid"])  # type: ignore[arg-type]
    checkpoint = SignedCheckpoint.parse(attestations["checkpoint"]).checkpoint
    for att in attestations["attestations"]:
        envelope = SslibEnvelope.from_dict(copy.deepcopy(att["envelope"]))  # it edits in place
        assert envelope.verify([verifier_key], 1)
        statement = json.loads(base64.b64decode(att["envelope"]["payload"]))
        assert statement["subject"][0]["digest"] == {"sha256": digest.encoded}
        proof = InclusionProof.from_json(att["inclusion_proof"])
        leaf = attestation_record(Envelope.from_json(att["envelope"]), att["id"]).leaf_hash()
        assert proof.tree_size == checkpoint.size
        verify_inclusion(proof.index, proof.tree_size, leaf, proof.hashes, checkpoint.root)
    async with http.get(f"{zoll.url}/v2/opendesk/app/referrers/{digest}") as r:
        referrers = (await r.json(content_type=None))["manifests"]
    zoll_referrers = [
        m for m in referrers if "dev.zoll.attestation.keyid" in (m.get("annotations") or {})
    ]
    assert len(zoll_referrers) == 3
    att_tag = f"sha256-{digest.encoded}.att"
    async with http.get(f"{zoll.url}/v2/opendesk/app/manifests/{att_tag}") as r:
        assert r.status == 200  # artifacts are never gated
        att_layers = (await r.json(content_type=None))["layers"]
    assert len(att_layers) == 2 + 3  # the supplier's two and Zoll's three
    print(f"pipeline for one image: {elapsed:.1f}s")


async def test_failures_stay_quarantined_with_reasons(
    enforcing_zoll: LiveRegistry,
    builder: Builder,
    supplier: Supplier,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll = enforcing_zoll
    root = await push(
        zoll, builder, tmp_path, "opendesk/rootapp", containerfile(user="0", marker="root")
    )
    await sign(zoll, "opendesk/rootapp", root, supplier)
    unsigned = await push(
        zoll, builder, tmp_path, "opendesk/unsigned", containerfile(marker="unsigned")
    )
    await drain(PipelineRunner(zoll.services))

    state = await api(http, zoll, f"/images/opendesk/rootapp@{root}/status")
    assert state["state"] == "quarantined"
    assert any("HC-18" in r for r in state["reasons"]), state["reasons"]
    status, body = await pull_status(http, zoll, "opendesk/rootapp:1.0.0")
    assert status == 403
    assert "HC-18" in json.dumps(body["errors"][0]["detail"])

    state = await api(http, zoll, f"/images/opendesk/unsigned@{unsigned}/status")
    assert state["state"] == "quarantined"
    assert any("verification requirement signature failed" in r for r in state["reasons"])

    # The supplier signs later: the new signature sends the image through again.
    await sign(zoll, "opendesk/unsigned", unsigned, supplier)
    await drain(PipelineRunner(zoll.services))
    state = await api(http, zoll, f"/images/opendesk/unsigned@{unsigned}/status")
    assert state["state"] == "admitted", state["reasons"]
    assert (await pull_status(http, zoll, "opendesk/unsigned:1.0.0"))[0] == 200

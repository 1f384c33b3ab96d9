"""An auditor traces one verdict end to end: the VSA names the registry, the supplier's
attestations it relied on and the trust policy in force (served by its digest), and
every statement Zoll made about the image is in the log, with proofs that check offline."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from attest.keys import PrivateKey
from registry.cli.main import main
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter
from tests.support.oci import Image, push_image
from tests.support.pipeline import RegistrySink, drain
from tests.support.servers import LiveRegistry, live_registry, registry_config

PUBLIC = "https://registry.example.org"
PROVENANCE = "https://slsa.dev/provenance/v1"
POLICY = """\
signers:
  supplier: {key: keys/supplier.pub}
require:
  signature: {signers: [supplier]}
  attestations:
    - predicate_type: https://slsa.dev/provenance/v1
      signers: [supplier]
"""


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[LiveRegistry, PrivateKey]]:
    key = PrivateKey.generate()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "supplier.pub").write_text(key.public.pem())
    (tmp_path / "trust.yaml").write_text(POLICY)
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        http={"public_url": PUBLIC},
        attest={"trust_policy": str(tmp_path / "trust.yaml")},
    )
    async with live_registry(config) as live:
        yield live, key


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200, (url, r.status, await r.text())
        return await r.json()


async def judged(
    zoll: LiveRegistry, key: PrivateKey, http: aiohttp.ClientSession
) -> tuple[str, CosignWriter]:
    digest = await push_image(http, zoll.url, "opendesk/app", Image.random(layers=1), "1.0")
    writer = CosignWriter(RegistrySink(zoll.url, "opendesk/app"))
    await asyncio.to_thread(writer.sign, Digest.parse(digest), key)
    await asyncio.to_thread(
        writer.attest, Digest.parse(digest), key, PROVENANCE, {"buildDefinition": {}}
    )
    await drain(PipelineRunner(zoll.services))
    return digest, writer


def vsa_of(attestations: dict[str, Any]) -> dict[str, Any]:
    [vsa] = [
        a
        for a in attestations["attestations"]
        if a["predicate_type"] == "https://slsa.dev/verification_summary/v1"
    ]
    statement: dict[str, Any] = json.loads(base64.b64decode(vsa["envelope"]["payload"]))
    return statement["predicate"]


async def test_the_vsa_names_the_registry_the_inputs_and_a_policy_that_is_served(
    zoll: tuple[LiveRegistry, PrivateKey], http: aiohttp.ClientSession
) -> None:
    live, key = zoll
    digest, _ = await judged(live, key, http)
    api = f"{live.url}/api/v1"
    predicate = vsa_of(await get(http, f"{api}/images/opendesk/app@{digest}/attestations"))
    # The VSA states the node's verdict: PASSED exactly when the image is admitted. This
    # random image fails the hardening criteria while its supplier's signature holds.
    status = await get(http, f"{api}/images/opendesk/app@{digest}/status")
    verification = await get(http, f"{api}/images/opendesk/app@{digest}/verification")
    assert status["state"] == "quarantined" and verification["document"]["passed"]
    assert predicate["verificationResult"] == "FAILED"
    assert predicate["resourceUri"] == f"oci://registry.example.org/opendesk/app@{digest}"

    # Every supplier attestation the verification relied on, each resolvable and pinned.
    inputs = predicate["inputAttestations"]
    assert len(inputs) == 2, inputs
    for item in inputs:
        reference, _, attachment = item["uri"].rpartition("@")
        assert reference == "registry.example.org/opendesk/app"
        assert item["digest"] == {"sha256": attachment.removeprefix("sha256:")}
        async with http.get(
            f"{live.url}/v2/opendesk/app/manifests/{attachment}",
            headers={"Accept": mt.OCI_MANIFEST},
        ) as r:
            assert r.status == 200
            assert hashlib.sha256(await r.read()).hexdigest() == item["digest"]["sha256"]

    # The trust policy in force, served by the digest the VSA names: the YAML and the
    # key file it refers to, so a changed key changes the digest too.
    policy = predicate["policy"]
    hexdigest = policy["digest"]["sha256"]
    assert policy["uri"] == f"{PUBLIC}/api/v1/trust-policies/sha256:{hexdigest}#default"
    async with http.get(f"{api}/trust-policies/sha256:{hexdigest}") as r:
        assert r.status == 200
        body = await r.read()
    assert hashlib.sha256(body).hexdigest() == hexdigest
    document = json.loads(body)
    files = {f["path"]: f for f in document["files"]}
    assert base64.b64decode(files["trust.yaml"]["content"]).decode() == POLICY
    assert base64.b64decode(files["keys/supplier.pub"]["content"]).decode() == key.public.pem()
    async with http.get(f"{api}/trust-policies/sha256:{'0' * 64}") as r:
        assert r.status == 404


async def test_every_statement_about_an_image_is_listed_with_its_proof(
    zoll: tuple[LiveRegistry, PrivateKey],
    http: aiohttp.ClientSession,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live, key = zoll
    digest, _ = await judged(live, key, http)
    other = await push_image(http, live.url, "opendesk/other", Image.random(layers=1), "1.0")
    await drain(PipelineRunner(live.services))
    api = f"{live.url}/api/v1"
    listed = await get(http, f"{api}/images/opendesk/app@{digest}/log")
    kinds = sorted(e.get("predicateType") or e["decision"] for e in listed["entries"])
    assert kinds == sorted(
        [
            "https://slsa.dev/verification_summary/v1",
            "https://zoll.dev/attestations/hardening/v1",
            "https://cyclonedx.org/bom",
            "denied",  # random layers fail the hardening criteria
        ]
    ), listed
    status = await get(http, f"{api}/images/opendesk/app@{digest}/status")
    indexes = [e["logIndex"] for e in listed["entries"]]
    assert status["log_indexes"] == indexes
    [admit] = [e for e in status["events"] if e["stage"] == "admit"]
    [decision] = [e for e in listed["entries"] if e["kind"] == "admission"]
    assert admit["detail"]["log_index"] == decision["logIndex"]
    others = await get(http, f"{api}/images/opendesk/other@{other}/log")
    assert not set(indexes) & {e["logIndex"] for e in others["entries"]}

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(await get(http, f"{api}/keys")))
    for item in listed["entries"]:
        saved = tmp_path / f"entry-{item['logIndex']}.json"
        saved.write_text(json.dumps(item))
        capsys.readouterr()
        code = main(
            ["log", "verify-inclusion", "--entry", str(saved), "--proof", str(saved),
             "--key", str(keys), "--json"]
        )  # fmt: skip
        out = json.loads(capsys.readouterr().out)
        assert (code, out["logIndex"], out["kind"]) == (0, item["logIndex"], item["kind"]), out

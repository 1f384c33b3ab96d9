"""A quarantined image says what was found, not what the rule says: the status, the
registry's pull refusal and the admission log entry quote the evidence ("UID 65534 …
there is no /etc/passwd"), not the criterion's rule text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from policy.catalog import load_catalog
from registry.oci import mediatypes as mt
from registry.pipeline.runner import PipelineRunner
from tests.policy.layouts import Layout, member, tar_bytes
from tests.support.pipeline import drain
from tests.support.servers import LiveRegistry, live_registry, registry_config
from tests.support.tools import skopeo


@pytest.fixture
async def zoll(pg_dsn: str, tmp_path: Path) -> AsyncIterator[LiveRegistry]:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        namespaces=[{"prefix": "apps/", "admission": "enforce", "require_verification": False}],
    )
    async with live_registry(config) as live:
        yield live


async def test_reasons_quote_the_evidence(
    zoll: LiveRegistry, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    layout = Layout(tmp_path / "layout")
    layer = tar_bytes([(member("app/run", mode=0o755), b"#!/bin/sh\nexit 0\n")])
    digest, size = layout.blob(layer)
    layout.image([(digest, size, mt.OCI_LAYER)], {"config": {"User": "65534"}}, "1.0")
    await skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout.root}:1.0",
        f"docker://{zoll.host}/apps/tool:1.0",
    )  # fmt: skip
    await drain(PipelineRunner(zoll.services))
    async with http.get(f"{zoll.url}/api/v1/repositories/apps/tool/images") as r:
        listed = (await r.json())["images"]
    [image] = [i["digest"] for i in listed if "1.0" in i["tags"]]  # as skopeo pushed it

    async with http.get(f"{zoll.url}/api/v1/images/apps/tool@{image}/status") as r:
        status = await r.json()
    assert status["state"] == "quarantined"
    [hc18] = [r for r in status["reasons"] if "HC-18" in r]
    assert "UID 65534 does not exist in the image: there is no /etc/passwd" in hc18, hc18
    rules = {c.rule for c in load_catalog().criteria}
    assert not any(rule in reason for rule in rules for reason in status["reasons"]), status

    async with http.get(f"{zoll.url}/v2/apps/tool/manifests/1.0") as r:
        assert r.status == 403
        error = (await r.json())["errors"][0]
    assert "there is no /etc/passwd" in json.dumps(error)

    [decision] = [
        e
        for e in (await zoll.services.log.entries_about("apps/tool", image))
        if e.kind == "admission"
    ]
    assert any("there is no /etc/passwd" in reason for reason in decision.body["reasons"])

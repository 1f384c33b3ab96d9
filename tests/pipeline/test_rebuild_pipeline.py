"""Rebuilds as a pipeline stage: a mirrored image is rebuilt from its declared source in
Zoll's sandbox; a bit-for-bit reproduction is attested and admitted where the namespace
requires it, a difference keeps the image out and names the file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry.mirror.jobs import queue_entry
from registry.mirror.sets import MirrorSet
from registry.mirror.store import apply_set
from registry.pipeline.runner import PipelineRunner
from tests.rebuild.project import Project
from tests.rebuild.test_rebuild import APP
from tests.support.buildah import Builder
from tests.support.pipeline import drain
from tests.support.servers import live_registry, registry_config

pytestmark = pytest.mark.slow
REBUILD = "https://zoll.dev/attestations/rebuild/v1"


async def mirror_and_judge(
    pg_dsn: str, tmp_path: Path, layout: Path, repo: Path, rebuild: str = "require"
) -> Any:
    config = registry_config(
        pg_dsn,
        tmp_path / "data",
        "filesystem",
        None,
        namespaces=[
            {
                "prefix": "opendesk/",
                "rebuild": rebuild,
                "admission": "enforce",
                "require_verification": False,
                "fail_on": "critical",
            }
        ],
    )
    mirror_set = MirrorSet.model_validate(
        {
            "version": 1,
            "name": "vendor",
            "mirrors": [
                {
                    "name": "app",
                    "source": f"oci:{layout}",
                    "target": "opendesk/app",
                    "tags": ["v1"],
                    "rebuild": {"source": {"git": str(repo), "ref": "main"}},
                }
            ],
        }
    )
    return config, mirror_set


async def status_of(http: aiohttp.ClientSession, url: str, digest: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/images/opendesk/app@{digest}/status") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


async def run(
    pg_dsn: str, tmp_path: Path, project: Project, upstream: str, http: aiohttp.ClientSession
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    config, mirror_set = await mirror_and_judge(
        pg_dsn, tmp_path, tmp_path / "upstream", project.repo
    )
    async with live_registry(config) as zoll:
        await apply_set(zoll.registry.pool, mirror_set, "test")
        await queue_entry(zoll.services, "vendor", "app")
        counts = await drain(PipelineRunner(zoll.services), timeout=600)
        assert not any(s.get("failed") for s in counts.values()), counts
        state = await status_of(http, zoll.url, upstream)
        row = await zoll.registry.pool.fetchrow(
            "SELECT rebuild FROM image_status WHERE digest = $1", upstream
        )
        async with http.get(f"{zoll.url}/api/v1/images/opendesk/app@{upstream}/attestations") as r:
            attestations = await r.json()
        async with http.get(f"{zoll.url}/v2/opendesk/app/tags/list") as r:
            tags = (await r.json())["tags"]
        return state, row["rebuild"], (attestations, tags)


async def test_reproducible_image_is_admitted_with_a_signed_rebuild_attestation(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    project = Project(tmp_path / "project", Builder(tmp_path / "vendor"))
    commit = project.commit(APP)
    upstream = str(project.build_upstream(tmp_path / "upstream", timestamp=1700000000))
    state, rebuilt, (attestations, _) = await run(pg_dsn, tmp_path, project, upstream, http)
    assert rebuilt["result"]["outcome"] == "reproduced", rebuilt["result"]
    assert state["state"] == "admitted", state["reasons"]
    assert any(e["stage"] == "rebuild" and e["outcome"] == "reproduced" for e in state["events"])
    [attestation] = [a for a in attestations["attestations"] if a["predicate_type"] == REBUILD]
    predicate = json.loads(base64.b64decode(attestation["envelope"]["payload"]))["predicate"]
    assert predicate["outcome"] == "reproduced"
    assert predicate["source"]["digest"] == {"gitCommit": commit}


async def test_nondeterministic_image_stays_out_and_the_diff_names_the_file(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    project = Project(tmp_path / "project", Builder(tmp_path / "vendor"))
    project.commit(
        {**APP, "Containerfile": APP["Containerfile"] + "RUN date +%s%N > /build-time\n"}
    )
    upstream = str(project.build_upstream(tmp_path / "upstream"))
    state, rebuilt, (attestations, tags) = await run(pg_dsn, tmp_path, project, upstream, http)
    assert rebuilt["result"]["outcome"] == "differs"
    assert state["state"] == "quarantined"
    assert any("not reproducible" in r for r in state["reasons"]), state["reasons"]
    assert "/build-time" in json.dumps(rebuilt["result"]["diff"])
    assert f"sha256-{upstream.split(':')[1]}.rebuilt" in tags  # kept next to the mirrored one
    assert any(a["predicate_type"] == REBUILD for a in attestations["attestations"])


async def test_prefer_makes_a_differing_rebuild_the_sovereign_copy(
    pg_dsn: str, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """`rebuild: prefer`: Zoll's own build of the declared source is judged like any image
    and, once admitted, the tag clients pull points at it; the upstream stays as evidence."""
    project = Project(tmp_path / "project", Builder(tmp_path / "vendor"))
    project.commit(
        {**APP, "Containerfile": APP["Containerfile"] + "RUN date +%s%N > /build-time\n"}
    )
    upstream = str(project.build_upstream(tmp_path / "upstream"))
    hex_ = upstream.split(":")[1]
    config, mirror_set = await mirror_and_judge(
        pg_dsn, tmp_path, tmp_path / "upstream", project.repo, rebuild="prefer"
    )
    async with live_registry(config) as zoll:
        await apply_set(zoll.registry.pool, mirror_set, "test")
        await queue_entry(zoll.services, "vendor", "app")
        counts = await drain(PipelineRunner(zoll.services), timeout=600)
        assert not any(s.get("failed") for s in counts.values()), counts
        digests = {}
        for tag in ("v1", f"sha256-{hex_}.rebuilt", f"sha256-{hex_}.upstream"):
            async with http.head(f"{zoll.url}/v2/opendesk/app/manifests/{tag}") as r:
                assert r.status == 200, (tag, r.status)
                digests[tag] = r.headers["Docker-Content-Digest"]
        rebuilt = digests[f"sha256-{hex_}.rebuilt"]
        assert rebuilt != upstream
        assert digests["v1"] == rebuilt  # what clients pull is Zoll's build
        assert digests[f"sha256-{hex_}.upstream"] == upstream  # the original is kept
        rebuilt_state = await status_of(http, zoll.url, rebuilt)
        assert rebuilt_state["state"] == "admitted", rebuilt_state["reasons"]
        assert rebuilt_state["origin"]["rebuilt_from"] == upstream
        admit = [e for e in rebuilt_state["events"] if e["stage"] == "admit"]
        assert admit and admit[-1]["detail"]["tags_moved"] == ["v1"]
        upstream_state = await status_of(http, zoll.url, upstream)
        assert upstream_state["state"] == "admitted"  # prefer does not require reproduction
        async with http.get(f"{zoll.url}/api/v1/images/opendesk/app@{rebuilt}/attestations") as r:
            kinds = {a["predicate_type"] for a in (await r.json())["attestations"]}
        assert "https://slsa.dev/verification_summary/v1" in kinds
        # The next scheduled mirror run copies the same upstream again: the tag stays on
        # the sovereign copy.
        await queue_entry(zoll.services, "vendor", "app")
        await drain(PipelineRunner(zoll.services), timeout=600)
        async with http.head(f"{zoll.url}/v2/opendesk/app/manifests/v1") as r:
            assert r.headers["Docker-Content-Digest"] == rebuilt
        async with http.get(f"{zoll.url}/api/v1/audit?action=tag.move") as r:
            moves = (await r.json())["events"]
        assert any(m["target"] == "v1" and m["detail"]["to"] == rebuilt for m in moves), moves

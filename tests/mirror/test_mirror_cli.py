"""`zoll mirror apply/run/status` as an operator uses it, from OCI layouts (air-gapped
import) into a running Zoll that shares its database and storage with the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from attest.keys import PrivateKey
from registry.oci.digest import Digest
from tests.attest_verify.cosign_writer import CosignWriter, LayoutSink
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.servers import LiveRegistry, live_registry, registry_config
from tests.support.tools import layout_index, run

pytestmark = pytest.mark.slow
ZOLL = str(Path(sys.executable).parent / "zoll")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Digest]]:
    """One OCI layout with three tags, the middle one signed."""
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    layout = tmp_path_factory.mktemp("upstream") / "layout"
    digests = {}
    for version in ("1.0.0", "1.1.0", "2.0.0"):
        image = builder.build(
            f"up/app-{version}", BUSYBOX_BASE + f"RUN echo {version} > /v\n", layers=True
        )
        builder.push_oci_layout(image, layout, version)
        index = layout_index(layout)
        digests[version] = next(
            Digest.parse(m["digest"])
            for m in index["manifests"]
            if m["annotations"]["org.opencontainers.image.ref.name"] == version
        )
    CosignWriter(LayoutSink(layout)).sign(digests["1.1.0"], PrivateKey.generate())
    return layout, digests


@pytest.fixture
async def shared(pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[LiveRegistry, Path]]:
    config = registry_config(pg_dsn, tmp_path / "data", "filesystem", None)
    cli_config = tmp_path / "zoll.yaml"
    cli_config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "database": {"dsn": pg_dsn},
                "storage": {"driver": "filesystem"},
            }
        )
    )
    async with live_registry(config) as live:
        yield live, cli_config


async def test_apply_run_status(
    shared: tuple[LiveRegistry, Path],
    upstream: tuple[Path, dict[str, Digest]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll, config = shared
    layout, digests = upstream
    mirror_set = tmp_path / "mirror.yaml"
    mirror_set.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "local",
                "mirrors": [
                    {
                        "name": "app",
                        "source": f"oci:{layout}",
                        "target": "imported/app",
                        "semver": ">=1.0.0 <2.0.0",
                    }
                ],
            }
        )
    )
    out = await run(
        ZOLL, "mirror", "apply", str(mirror_set), "--run", "--config", str(config), "--json"
    )
    report = json.loads(out)
    assert report["failed"] == 0
    mirrored = {i["job"]["reference"]: i["result"] for i in report["images"]}
    assert set(mirrored) == {"1.0.0", "1.1.0"}  # 2.0.0 is outside the range
    for version in ("1.0.0", "1.1.0"):
        assert mirrored[version]["digest"] == str(digests[version])
        async with http.get(f"{zoll.url}/v2/imported/app/manifests/{version}") as r:
            assert r.headers["Docker-Content-Digest"] == str(digests[version])
    assert mirrored["1.1.0"]["attachments"] == [f"sha256-{digests['1.1.0'].encoded}.sig"]
    # Both images share their base layers: the second copy reused them.
    assert sum(m["blobs_reused"] for m in mirrored.values()) >= 2

    async with http.get(f"{zoll.url}/api/v1/images/imported/app@{digests['1.0.0']}/status") as r:
        status = await r.json()
    assert status["origin"]["source"] == f"oci:{layout}" and status["origin"]["entry"] == "app"

    again = json.loads(
        await run(
            ZOLL, "mirror", "run", "--set", "local", "--wait", "--config", str(config), "--json"
        )
    )
    assert sum(i["result"]["bytes_fetched"] for i in again["images"]) == 0
    # --wait ran the pipeline too, and each image says what was decided and why: these
    # upstream images are unsigned, so they stay quarantined for that reason.
    for image in again["images"]:
        assert image["image_state"] == "quarantined", image
        assert any("trust policy" in reason for reason in image["reasons"]), image
        # What was found, not the rule: busybox images run as root.
        [hc18] = [reason for reason in image["reasons"] if "HC-18" in reason]
        assert "config.User is empty: the container starts as root" in hc18, hc18

    status_out = json.loads(await run(ZOLL, "mirror", "status", "--config", str(config), "--json"))
    [entry] = status_out["entries"]
    assert entry["images"] == 2 and entry["last_error"] is None


async def test_pinned_tag_that_moved_upstream_is_refused(
    shared: tuple[LiveRegistry, Path],
    upstream: tuple[Path, dict[str, Digest]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    zoll, config = shared
    layout, digests = upstream
    mirror_set = tmp_path / "pinned.yaml"
    mirror_set.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "pinned",
                "mirrors": [
                    {
                        "name": "app",
                        "source": f"oci:{layout}",
                        "target": "pinned/app",
                        "tags": [f"2.0.0@{digests['1.0.0']}", f"1.1.0@{digests['1.1.0']}"],
                    }
                ],
            }
        )
    )
    proc = await __import__("asyncio").create_subprocess_exec(
        ZOLL,
        "mirror",
        "apply",
        str(mirror_set),
        "--run",
        "--config",
        str(config),
        "--json",
        stdout=-1,
        stderr=-3,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 1
    images = {i["job"]["reference"]: i for i in json.loads(out)["images"]}
    assert images["1.1.0"]["state"] == "done"
    assert images["2.0.0"]["state"] == "failed"
    assert "pins" in images["2.0.0"]["error"] and str(digests["2.0.0"]) in images["2.0.0"]["error"]
    async with http.get(f"{zoll.url}/v2/pinned/app/manifests/2.0.0") as r:
        assert r.status == 404
    async with http.get(f"{zoll.url}/v2/pinned/app/manifests/1.1.0") as r:
        assert r.headers["Docker-Content-Digest"] == str(digests["1.1.0"])


async def test_invalid_mirror_set_names_the_fields(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "bad",
                "mirrors": [
                    {
                        "name": "x",
                        "source": "docker.io/library/nginx:1.27",
                        "target": "BAD",
                        "semver": ">=banana",
                    }
                ],
            }
        )
    )
    proc = await __import__("asyncio").create_subprocess_exec(
        ZOLL,
        "mirror",
        "apply",
        str(bad),
        "--dsn",
        "postgresql://nowhere/x",
        stdout=-1,
        stderr=-2,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 2
    text = out.decode()
    for field in ("mirrors.0.source", "mirrors.0.target", "mirrors.0.semver"):
        assert field in text, text

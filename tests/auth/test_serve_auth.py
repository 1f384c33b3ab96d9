"""`zoll serve` as shipped: authentication on, the first start creates `admin` and prints
its password once, tokens issued by one worker verify in the other, and the CLI manages
accounts on the embedded database while the service runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.auth.conftest import basic
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.served import ZOLL, Served
from tests.support.tools import layout_index, run, skopeo

pytestmark = pytest.mark.slow
SERVE_ARGS = ("--workers", "2", "--storage", "filesystem")


async def zoll(data_dir: Path, *args: str) -> str:
    return await run(ZOLL, *args, "--data-dir", str(data_dir))


async def test_first_start_admin_workers_and_cli(tmp_path: Path) -> None:
    data_dir = tmp_path / "zoll-data"
    builder = Builder(tmp_path / "buildah")
    image = builder.build("serve-auth/app", BUSYBOX_BASE + "RUN echo hi > /hi.txt\n")
    layout = builder.push_oci_layout(image, tmp_path / "layout", "1.0")

    served = await asyncio.to_thread(Served, data_dir, *SERVE_ARGS)
    try:
        password = served.admin_password()
        assert password is not None and len(password) >= 40, "".join(served.output)
        ref = f"docker://{served.host}/demo/app:1.0"
        with pytest.raises(RuntimeError, match="authentication required"):
            await skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:1.0", ref)
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"admin:{password}",
            f"oci:{layout}:1.0",
            ref,
        )
        # the CLI attaches to the embedded PostgreSQL the service is using
        secret = (await zoll(data_dir, "robots", "create", "ci", "--grant", "pusher:demo")).strip()
        await skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"robot+ci:{secret}",
            f"oci:{layout}:1.0",
            f"docker://{served.host}/demo/other:1.0",
        )
        with pytest.raises(RuntimeError, match=r"denied|unknown|unauthorized"):
            await skopeo(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"robot+ci:{secret}",
                f"oci:{layout}:1.0",
                f"docker://{served.host}/elsewhere/app:1.0",
            )
        # tokens from either worker verify in both: fresh connections spread over them
        base = f"http://{served.host}"
        digest = layout_index(layout)["manifests"][0]["digest"]
        for _ in range(12):
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as http:
                async with http.get(
                    f"{base}/token",
                    params={"service": "zoll", "scope": "repository:demo/app:pull"},
                    headers={"Authorization": basic("robot+ci", secret)},
                ) as r:
                    token = (await r.json())["token"]
                for _ in range(4):
                    async with http.get(
                        f"{base}/v2/demo/app/manifests/1.0",
                        headers={"Authorization": f"Bearer {token}"},
                    ) as r:
                        assert r.status == 200
                        assert r.headers["Docker-Content-Digest"] == digest
    finally:
        assert await asyncio.to_thread(served.stop) == 0

    again = await asyncio.to_thread(Served, data_dir, *SERVE_ARGS)
    try:
        assert again.admin_password() is None  # only the first start creates it
        raw = await skopeo(
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            f"admin:{password}",
            f"docker://{again.host}/demo/app:1.0",
        )
        assert json.loads(raw)["layers"]
    finally:
        assert await asyncio.to_thread(again.stop) == 0

    report = json.loads(await zoll(data_dir, "audit", "verify", "--json"))
    assert report["ok"] and report["events"] > 5
    users = {p["name"]: p for p in json.loads(await zoll(data_dir, "users", "list", "--json"))}
    assert users["admin"]["grants"] == [{"namespace": "*", "role": "admin"}]
    assert users["admin"]["created_by"] == "zoll-serve"

"""`zoll mirror apply` through a running service's `/api/v1/mirror` — what an operator
gets from `zoll serve` on the same machine (the service announces itself in its data
folder) or from a remote service with `--url` — and the API's own answers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from registry.oci.digest import Digest
from tests.auth.conftest import basic
from tests.support.buildah import BUSYBOX_BASE, Builder
from tests.support.served import ZOLL, Served
from tests.support.tools import layout_index

pytestmark = pytest.mark.slow
SERVE_ARGS = ("--workers", "2", "--storage", "filesystem")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Digest]:
    builder = Builder(tmp_path_factory.mktemp("buildah"))
    image = builder.build("api/app", BUSYBOX_BASE + "RUN echo api > /v\n")
    path = builder.push_oci_layout(image, tmp_path_factory.mktemp("up") / "layout", "1.0")
    return path, Digest.parse(layout_index(path)["manifests"][0]["digest"])


def mirror_set(folder: Path, layout: Path, name: str = "local", target: str = "api/app") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": name,
                "mirrors": [
                    {"name": "app", "source": f"oci:{layout}", "target": target, "tags": ["1.0"]}
                ],
            }
        )
    )
    return path


async def zoll(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZOLL_")}
    proc = await asyncio.create_subprocess_exec(
        ZOLL, *args, stdout=-1, stderr=-1, env={**environ, **(env or {})}
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def open_service(tmp_path: Path) -> AsyncIterator[tuple[Served, Path]]:
    """`zoll serve` without authentication (a trusted network), two workers."""
    data_dir = tmp_path / "zoll-data"
    served = await asyncio.to_thread(
        Served, data_dir, *SERVE_ARGS, env={"ZOLL_AUTH__ENABLED": "false"}
    )
    try:
        yield served, data_dir
    finally:
        await asyncio.to_thread(served.stop)


async def last_apply_actor(
    http: aiohttp.ClientSession, base: str, headers: dict[str, str] | None = None
) -> str:
    query = {"action": "mirror_set.apply"}
    async with http.get(f"{base}/api/v1/audit", params=query, headers=headers) as r:
        assert r.status == 200, await r.text()
        events = (await r.json())["events"]
    return str(events[0]["actor"])


async def test_apply_waits_on_the_running_service_through_its_api(
    open_service: tuple[Served, Path],
    layout: tuple[Path, Digest],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    served, data_dir = open_service
    path, digest = layout
    announced = json.loads((data_dir / "serve.json").read_text())
    assert announced["url"] == f"http://{served.host}" and announced["auth"] is False

    code, out, err = await zoll(
        "mirror", "apply", str(mirror_set(tmp_path, path)), "--wait", "--json",
        "--data-dir", str(data_dir),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert len(report["images"]) == 1, report
    [image] = report["images"]
    assert image["digest"] == str(digest) and image["repository"] == "api/app"
    # the service ran the whole pipeline before the command returned: unsigned, so held
    assert image["state"] == "quarantined"
    assert any("trust policy" in reason for reason in image["reasons"])
    assert report["failed"] == []

    base = f"http://{served.host}"
    # the service applied it (the audit log names the API caller, not a CLI user) …
    assert await last_apply_actor(http, base) == "anonymous"
    # … and reports the same through the progress call
    async with http.get(f"{base}/api/v1/mirror/sets/local/progress") as r:
        progress = await r.json()
    assert progress["finished"] is True and progress["pending"] == 0
    # images count as images (what the progress bar shows), judged ones as ended
    assert (progress["wanted"], progress["ended"]) == (1, 1)
    assert progress["entries"] == [
        {"entry": "app", "state": "done", "images": 1, "copied": 1, "error": None,
         "attempt": None, "max_attempts": None, "next_try_at": None}
    ]  # fmt: skip
    assert [i["digest"] for i in progress["images"]] == [str(digest)]
    async with http.get(f"{base}/api/v1/mirror/sets") as r:
        [entry] = (await r.json())["entries"]
    assert entry["set_name"] == "local" and entry["images"] == 1


async def test_the_api_refuses_bad_requests_as_problem_documents(
    open_service: tuple[Served, Path], tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    served, data_dir = open_service
    base = f"http://{served.host}/api/v1/mirror/sets"
    bad = "version: 1\nname: bad\nmirrors:\n  - {name: x, source: 'oci:/x', target: BAD}\n"
    async with http.post(base, data=bad, params={"source": "bad.yaml"}) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        problem = await r.json()
    assert "bad.yaml" in problem["detail"] and "mirrors.0.target" in problem["detail"]
    async with http.get(f"{base}/nothing/progress") as r:
        assert r.status == 404 and (await r.json())["title"] == "No such mirror set"
    async with http.get(f"{base}/bad/progress", params={"wait": "31"}) as r:
        assert r.status == 400

    # the command shows the service's reasons, naming the file
    (tmp_path / "bad.yaml").write_text(bad)
    code, _, err = await zoll(
        "mirror", "apply", str(tmp_path / "bad.yaml"), "--data-dir", str(data_dir)
    )
    assert code == 2
    assert "bad.yaml" in err and "mirrors.0.target" in err


async def test_a_stopped_service_is_not_asked(tmp_path: Path, layout: tuple[Path, Digest]) -> None:
    data_dir = tmp_path / "zoll-data"
    served = await asyncio.to_thread(
        Served, data_dir, "--storage", "filesystem", env={"ZOLL_AUTH__ENABLED": "false"}
    )
    announced = (data_dir / "serve.json").read_text()
    assert await asyncio.to_thread(served.stop) == 0
    assert not (data_dir / "serve.json").exists()
    # a crashed service leaves its announcement behind: its process is gone, so the command
    # goes to the database, and says there is none
    (data_dir / "serve.json").write_text(announced)
    code, _, err = await zoll(
        "mirror", "apply", str(mirror_set(tmp_path, layout[0])), "--data-dir", str(data_dir)
    )
    assert code == 2 and "no database" in err


async def test_a_service_that_asks_for_credentials(
    tmp_path: Path, layout: tuple[Path, Digest], http: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "zoll-data"
    served = await asyncio.to_thread(Served, data_dir, *SERVE_ARGS)
    try:
        password = served.admin_password()
        assert password is not None
        base = f"http://{served.host}"
        the_set = mirror_set(tmp_path, layout[0])
        async with http.post(f"{base}/api/v1/mirror/sets", data=the_set.read_bytes()) as r:
            assert r.status == 401

        # remote: --url with credentials from the environment
        admin = {"ZOLL_USER": "admin", "ZOLL_PASSWORD": password}
        code, out, err = await zoll(
            "mirror", "apply", str(the_set), "--url", base, "--json", env=admin
        )
        assert code == 0, err
        assert json.loads(out) == {"set": "local", "entries": ["app"], "queued": True}
        auth = {"Authorization": basic("admin", password)}
        assert await last_apply_actor(http, base, auth) == "admin"

        # a registry-wide auditor follows the set; auditors of one namespace do not
        for namespace, status in (("*", 200), ("api", 403)):
            robot = {
                "name": f"watch{status}",
                "grants": [{"namespace": namespace, "role": "auditor"}],
            }
            async with http.post(f"{base}/api/v1/admin/robots", json=robot, headers=auth) as r:
                assert r.status == 201, await r.text()
                secret = (await r.json())["secret"]
            async with http.get(
                f"{base}/api/v1/mirror/sets/local/progress",
                headers={"Authorization": basic(f"robot+watch{status}", secret)},
            ) as r:
                assert r.status == status, await r.text()

        wrong = {"ZOLL_USER": "admin", "ZOLL_PASSWORD": "wrong"}
        code, _, err = await zoll("mirror", "apply", str(the_set), "--url", base, env=wrong)
        assert code == 2 and "invalid credentials" in err and "ZOLL_PASSWORD" in err, err

        # on the service's machine without credentials: the database, as a CLI user
        # (and --wait follows the service's jobs in the database)
        code, out, err = await zoll(
            "mirror", "apply", str(the_set), "--wait", "--json", "--data-dir", str(data_dir)
        )
        assert code == 0, err
        assert (await last_apply_actor(http, base, auth)).startswith("cli:")
        [image] = json.loads(out)["images"]
        assert image["digest"] == str(layout[1]) and image["state"] == "quarantined"

        # One way to reach the service, for every command: ZOLL_URL, ZOLL_USER and
        # ZOLL_PASSWORD (as docs/mirroring.md says to set for apply) or --url; commands
        # that work on the database read no configuration from them.
        remote = {"ZOLL_URL": base, **admin}
        for argv in (["mirror", "status", "--json"], ["mirror", "status", "--url", base, "--json"]):
            code, out, err = await zoll(*argv, env=remote if "--url" not in argv else admin)
            assert code == 0, err
            [entry] = json.loads(out)["entries"]
            assert entry["set_name"] == "local" and entry["images"] == 1, entry
        code, out, err = await zoll(
            "users", "list", "--json", "--data-dir", str(data_dir), env=remote
        )
        assert code == 0, err
        assert "admin" in {p["name"] for p in json.loads(out)}
    finally:
        await asyncio.to_thread(served.stop)


async def test_applying_through_the_service_loads_no_database_client(
    open_service: tuple[Served, Path], layout: tuple[Path, Digest], tmp_path: Path
) -> None:
    """What makes it start in ~60 ms: the service's workers wait for this command."""
    _, data_dir = open_service
    argv = ["mirror", "apply", str(mirror_set(tmp_path, layout[0])), "--json"]
    argv += ["--data-dir", str(data_dir)]
    heavy = ("asyncio", "asyncpg", "pydantic", "yaml", "registry.config", "rich")
    probe = (
        "import sys\nfrom registry.cli.main import main\n"
        f"code = main({argv!r})\n"
        f"print(code, ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", probe, stdout=-1, stderr=-1)
    out, err = await proc.communicate()
    assert json.loads(out)["queued"] is True
    assert err.decode().split("\n")[-2].strip() == "0", err.decode()

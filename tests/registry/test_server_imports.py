"""A registry that stores and serves images never loads the verification stack.

sigstore (with TUF, securesystemslib and, where installed, boto3) and in-toto cost each
`zoll serve` process ~25 MiB and most of its start; only verification needs them, and it
loads them at its first use (registry/pipeline/services.py, docs/benchmarks.md "memory:
the verification stack loaded on first use"). Watched in a real `zoll serve`, supervisor
and workers, through a Python audit hook that records every import of those packages
(a `sitecustomize` on the service's path: no debug route in the service itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.charts import tgz
from tests.support.oci import Image, push_image, sha256
from tests.support.served import Served

pytestmark = pytest.mark.slow

VERIFICATION_STACK = ("sigstore", "tuf", "securesystemslib", "in_toto", "boto3", "botocore")

HOOK = """\
import os, sys

_WATCHED = {watched!r}
_FOLDER = {folder!r}


def _record(event, args):
    if event == "import" and args[0].partition(".")[0] in _WATCHED:
        with open(os.path.join(_FOLDER, str(os.getpid())), "a") as out:
            out.write(args[0] + "\\n")


sys.addaudithook(_record)
"""


def _children(pid: int) -> set[str]:
    return set(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def _imports(folder: Path) -> dict[str, set[str]]:
    """Process id → the watched packages it imported."""
    return {
        path.name: {line.partition(".")[0] for line in path.read_text().split()}
        for path in folder.iterdir()
    }


async def _push_and_pull(http: aiohttp.ClientSession, base: str) -> str:
    """An image whose layer the pipeline's scan can read (a gzipped tar), pushed and read
    back."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = tgz({"srv/data.bin": os.urandom(64 * 1024)})
    image = Image(config, [layer])
    digest = await push_image(http, base, "demo/app", image, "1.0")
    headers = {"Accept": image.media_type}
    async with http.get(f"{base}/v2/demo/app/manifests/1.0", headers=headers) as r:
        assert r.status == 200 and await r.read() == image.manifest()
    async with http.get(f"{base}/v2/demo/app/blobs/{sha256(layer)}") as r:
        assert r.status == 200 and await r.read() == layer
    return digest


async def _judged(http: aiohttp.ClientSession, base: str, digest: str) -> list[str]:
    """The pipeline's stages for the image once it has been judged (no trust policy
    applies: nothing is verified; it is scanned, attested and judged)."""
    deadline = time.monotonic() + 120
    while True:
        async with http.get(f"{base}/api/v1/images/demo/app@{digest}/status") as r:
            state: dict[str, Any] = await r.json() if r.status == 200 else {}
        stages = [event["stage"] for event in state.get("events", [])]
        if "admit" in stages:
            return stages
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.5)


async def test_a_serving_registry_never_loads_the_verification_stack(tmp_path: Path) -> None:
    hook, seen = tmp_path / "hook", tmp_path / "imports"
    hook.mkdir()
    seen.mkdir()
    (hook / "sitecustomize.py").write_text(
        HOOK.format(watched=VERIFICATION_STACK, folder=str(seen))
    )
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {"ZOLL_AUTH__ENABLED": "false", "PYTHONPATH": path}
    served = await asyncio.to_thread(
        Served, tmp_path / "data", "--workers", "2", "--storage", "filesystem", env=env
    )
    try:
        base = f"http://{served.host}"
        async with aiohttp.ClientSession() as http:
            digest = await _push_and_pull(http, base)
            stages = await _judged(http, base, digest)
        assert stages[-4:] == ["verify", "scan", "attest", "admit"], stages
        supervisor = served.proc.pid
        service = {str(supervisor), *_children(supervisor)}  # the supervisor and its workers
        assert len(service) >= 3, service
    finally:
        assert await asyncio.to_thread(served.stop) == 0
    imports = _imports(seen)
    loaded = {pid: sorted(names) for pid, names in imports.items() if pid in service}
    assert loaded == {}, f"the verification stack was loaded by the service: {loaded}"
    # The hook works: the start's check of the trusted roots loads sigstore, in a child
    # process that ended before the workers started (registry/cli/commands/serve.py).
    assert any("sigstore" in names for names in imports.values()), imports

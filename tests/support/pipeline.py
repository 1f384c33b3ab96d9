"""Drive the pipeline from tests: push cosign-format content over HTTP, run jobs to the end."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

from registry.oci import mediatypes as mt
from registry.pipeline.runner import PipelineRunner
from tests.support.oci import sha256


class RegistrySink:
    """The `OCISink` of tests/attest_verify/cosign_writer.py, over Zoll's HTTP API.

    Synchronous (urllib) like the writer: call the writer from a thread when the registry
    runs in the same event loop."""

    def __init__(self, base: str, repository: str, auth: tuple[str, str] | None = None) -> None:
        self.base = base
        self.repository = repository
        self.headers: dict[str, str] = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _open(self, request: urllib.request.Request) -> Any:
        for key, value in self.headers.items():
            request.add_header(key, value)
        return urllib.request.urlopen(request)

    def put_blob(self, data: bytes) -> str:
        digest = sha256(data)
        location = self._upload_location()
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest={digest}",
            data=data,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        self._open(put).close()
        return digest

    def _upload_location(self) -> str:
        """POST then PUT: the flow every registry supports (distribution 2.8 has no
        single-POST upload)."""
        start = urllib.request.Request(
            f"{self.base}/v2/{self.repository}/blobs/uploads/", data=b"", method="POST"
        )
        with self._open(start) as resp:
            location: str = resp.headers["Location"]
        return location if location.startswith("http") else self.base + location

    def put_manifest(self, raw: bytes, media_type: str, tag: str | None) -> str:
        digest = sha256(raw)
        url = f"{self.base}/v2/{self.repository}/manifests/{tag or digest}"
        request = urllib.request.Request(
            url, data=raw, method="PUT", headers={"Content-Type": media_type}
        )
        self._open(request).close()
        return digest

    def get_manifest(self, tag: str) -> bytes | None:
        url = f"{self.base}/v2/{self.repository}/manifests/{tag}"
        # distribution 2.8 hides OCI manifests from clients that do not name the type.
        accept = ", ".join(sorted(mt.MANIFESTS))
        request = urllib.request.Request(url, headers={"Accept": accept})
        try:
            with self._open(request) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


async def drain(runner: PipelineRunner, timeout: float = 120) -> dict[str, dict[str, int]]:
    """Run jobs in this task until none is queued or running; return the job counts."""
    deadline = time.monotonic() + timeout
    svc = runner.svc
    while time.monotonic() < deadline:
        job = await svc.jobs.claim("test-drain", list(_kinds()))
        if job is not None:
            await runner.run(job)
            continue
        counts = await svc.jobs.counts()
        busy = sum(
            n for states in counts.values() for s, n in states.items() if s in ("queued", "running")
        )
        if not busy:
            return counts
        await asyncio.sleep(0.2)  # postponed jobs (RetryLater) become ready soon
    raise TimeoutError(json.dumps(await svc.jobs.counts()))


def _kinds() -> list[str]:
    from registry.pipeline.runner import HANDLERS

    return list(HANDLERS)

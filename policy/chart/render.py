"""Render a chart's templates: the unpacked files, the chart's defaults plus given values.

The files are written to a private temporary folder and rendered by Helm's engine in a
child process (`policy.chart.helm_worker`) bounded in address space, wall-clock time and
output size; whatever goes wrong is a `RenderResult.error`, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.chart.limits import ChartLimits


@dataclass(frozen=True, slots=True)
class RenderResult:
    manifests: dict[str, str] = field(default_factory=dict)
    """Template path → rendered text (empty templates left out)."""
    error: str | None = None
    engine: str | None = None
    """Which engine rendered (Helm SDK version), for the report."""


def _write(root: Path, files: dict[str, bytes]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    out = bytearray()
    while chunk := await stream.read(1 << 16):
        out += chunk
        if len(out) > limit:
            return None
    return bytes(out)


async def render_chart(
    files: dict[str, bytes],
    values: dict[str, Any] | None,
    *,
    name: str,
    namespace: str = "default",
    limits: ChartLimits | None = None,
) -> RenderResult:
    """Render `files` (an unpacked chart, paths under its root) with `values`."""
    limits = limits or ChartLimits()
    request = json.dumps(
        {
            "values": values or {},
            "name": name,
            "namespace": namespace,
            "memory_bytes": limits.render_memory_bytes,
        }
    ).encode()
    with tempfile.TemporaryDirectory(prefix="zoll-chart-") as folder:
        root = Path(folder) / "chart"
        await asyncio.to_thread(_write, root, files)
        env = {**os.environ, "GOMAXPROCS": "1", "GOMEMLIMIT": str(limits.render_memory_bytes // 2)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "policy.chart.helm_worker",
            str(root),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(
                _exchange(proc, request, limits), limits.render_seconds
            )
        except TimeoutError:
            return RenderResult(error=f"rendering took longer than {limits.render_seconds:g} s")
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    return _result(proc.returncode, out, err, limits)


async def _exchange(
    proc: asyncio.subprocess.Process, request: bytes, limits: ChartLimits
) -> tuple[bytes | None, bytes]:
    """Send the request, read the answer (None when it is too large: the child is killed)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors = asyncio.create_task(_read_bounded(proc.stderr, 1 << 16))
    proc.stdin.write(request)
    await proc.stdin.drain()
    proc.stdin.close()
    out = await _read_bounded(proc.stdout, limits.max_rendered_bytes * 2)
    if out is None:
        proc.kill()
    err = await errors
    await proc.wait()
    return out, err or b""


def _result(code: int | None, out: bytes | None, err: bytes, limits: ChartLimits) -> RenderResult:
    too_large = f"the rendered manifests exceed {limits.max_rendered_bytes} bytes"
    if out is None:
        return RenderResult(error=too_large)
    if code != 0 or not out:
        why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        killed = "out of memory or killed: " if code is not None and code < 0 else ""
        return RenderResult(error=f"the template engine failed ({killed}{why[0][:300]})")
    answer = json.loads(out)
    if answer.get("error"):
        return RenderResult(error=str(answer["error"])[:2000], engine=answer.get("engine"))
    manifests = {p: t for p, t in answer["manifests"].items() if t.strip()}
    if sum(len(t) for t in manifests.values()) > limits.max_rendered_bytes:
        return RenderResult(error=too_large)
    return RenderResult(manifests, None, answer.get("engine"))

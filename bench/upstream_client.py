"""Zoll's upstream client beside skopeo, pulling the same image from docker-registry.

One image with one random (incompressible) layer of `--size-mib` MiB lives in a local
CNCF distribution 2.8. Both clients copy config + layer + manifest to local disk and
verify digests: skopeo `copy docker://… dir:…`, and `RegistryClient` (`download_blob`
for each blob, which writes `.partial` files and renames them once verified). Also
measured: the client streaming the layer without writing it (network + hash only), and
the client's peak memory for the streamed pull (VmHWM of a child process).

    python -m bench upstream_client [--size-mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.registry import start_distribution
from registry.oci import mediatypes as mt
from registry.oci.client import RegistryClient, RegistryConfig
from registry.oci.digest import Digest


async def seed(host: str, layer: Path, size: int) -> None:
    """Push the layer (streamed from disk), a config and a manifest with the client."""
    digest = Digest.parse("sha256:" + _sha256(layer))
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}})
    raw_config = config.encode()

    async def opener(offset: int):  # type: ignore[no-untyped-def]
        with layer.open("rb") as fh:
            fh.seek(offset)
            while chunk := fh.read(1 << 20):
                yield chunk

    async with RegistryClient([RegistryConfig(host, insecure=True)]) as client:
        repo = client.repository(host, "bench/big")
        await repo.push_blob(opener, digest, size)
        await repo.push_blob(raw_config, Digest.of(raw_config), len(raw_config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(Digest.of(raw_config)),
                "size": len(raw_config),
            },
            "layers": [{"mediaType": mt.OCI_LAYER, "digest": str(digest), "size": size}],
        }
        await repo.put_manifest(json.dumps(manifest).encode(), mt.OCI_MANIFEST, "v1")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


async def client_pull(host: str, out: Path, write: bool) -> None:
    async with RegistryClient([RegistryConfig(host, insecure=True)]) as client:
        repo = client.repository(host, "bench/big")
        fetched = await repo.get_manifest("v1")
        manifest = json.loads(fetched.raw)
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_bytes(fetched.raw)
        for blob in [manifest["config"], *manifest["layers"]]:
            digest = Digest.parse(blob["digest"])
            if write:
                await repo.download_blob(digest, out / digest.encoded, size=blob["size"])
            else:
                async for _ in repo.open_blob(digest, size=blob["size"]):
                    pass


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _peak_kib(host: str) -> int:
    """Peak resident memory of a fresh process streaming the pull."""
    code = (
        "import asyncio, sys, pathlib\n"
        "from bench.upstream_client import client_pull\n"
        f"asyncio.run(client_pull({host!r}, pathlib.Path('/nonexistent'), False))\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench upstream_client")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing")
            return 2
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="zoll-bench-client-") as folder:
        work = Path(folder)
        layer = work / "layer"
        with layer.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(1 << 20))
        server = start_distribution(work, "filesystem", None)
        host = server.base.removeprefix("http://")
        try:
            asyncio.run(seed(host, layer, size))
            layer.unlink()
            results: dict[str, list[float]] = {"skopeo": [], "client": [], "stream": []}
            for run in range(args.runs):
                out = work / f"skopeo-{run}"
                results["skopeo"].append(
                    _timed(
                        lambda out=out: subprocess.run(
                            [
                                "skopeo",
                                "--insecure-policy",
                                "copy",
                                "--src-tls-verify=false",
                                f"docker://{host}/bench/big:v1",
                                f"dir:{out}",
                            ],
                            check=True,
                            capture_output=True,
                        )
                    )
                )
                shutil.rmtree(out)
                out = work / f"client-{run}"
                results["client"].append(
                    _timed(lambda out=out: asyncio.run(client_pull(host, out, True)))
                )
                shutil.rmtree(out)
                results["stream"].append(
                    _timed(lambda: asyncio.run(client_pull(host, work / "x", False)))
                )
            peak = _peak_kib(host)
        finally:
            server.stop()
    mib = args.size_mib
    skopeo_s = statistics.median(results["skopeo"])
    client_s = statistics.median(results["client"])
    stream_s = statistics.median(results["stream"])
    print(f"\n{mib} MiB layer from docker-registry 2.8 on loopback, median of {args.runs}\n")
    print("| measure | skopeo copy → dir: | Zoll client | client / skopeo (speed) |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| pull to disk, verified | {mib / skopeo_s:,.0f} MiB/s ({skopeo_s:.2f} s) | "
        f"{mib / client_s:,.0f} MiB/s ({client_s:.2f} s) | {skopeo_s / client_s:.2f}× |"
    )
    print(f"| client, stream + verify only | | {mib / stream_s:,.0f} MiB/s ({stream_s:.2f} s) | |")
    print(f"| client peak RSS while streaming | | {peak / 1024:.0f} MiB | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

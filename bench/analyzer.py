"""Analyzer throughput vs plain `gzip -d` of the same layers (the physical limit here).

Builds gzip layers from this machine's own files (shared libraries, Python's standard
library, documentation: a realistic mix of binaries and text), writes them as an OCI
image layout, then times `gzip -d -c LAYER > /dev/null` for every layer against
`analyze_image` on the whole image. Throughput is compressed MB per second; the target
is an analyzer at ≥ 70 % of gzip.

    python -m bench analyzer [--write-docs] [--mib 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from policy import analyze_image
from registry.oci import mediatypes as mt
from registry.oci.reader import OCILayoutReader

SOURCES = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/python3.11",
    "/usr/lib/python3/dist-packages",
    "/usr/share/doc",
    "/usr/share/perl",
    "/usr/bin",
    "/var/lib/dpkg",
]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## Analyzer"


def _files(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.isfile(path):
                out.append(path)
    return out


def _interleaved() -> list[str]:
    """Files of every source in turn, so each layer mixes binaries, text and metadata."""
    lists = [_files(root) for root in SOURCES]
    out = []
    for i in range(max(len(files) for files in lists)):
        out += [files[i] for files in lists if i < len(files)]
    return out


def _layer_tars(budget: int, per_layer: int) -> list[bytes]:
    """Uncompressed tars of host files, about `per_layer` bytes each, `budget` in total."""
    groups: list[list[str]] = [[]]
    size = total = 0
    for path in _interleaved():
        try:
            length = os.path.getsize(path)
        except OSError:
            continue
        if length > 64 << 20:
            continue
        groups[-1].append(path)
        size, total = size + length, total + length
        if total >= budget:
            break
        if size >= per_layer:
            groups.append([])
            size = 0
    layers = []
    for group in groups:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in group:
                with contextlib.suppress(OSError):
                    tar.add(path, arcname=path.lstrip("/"), recursive=False)
        layers.append(buf.getvalue())
    return layers


def _write_layout(root: Path, tars: list[bytes]) -> list[Path]:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(data: bytes) -> tuple[str, int, Path]:
        hexdigest = hashlib.sha256(data).hexdigest()
        path = blobs / hexdigest
        path.write_bytes(data)
        return f"sha256:{hexdigest}", len(data), path

    layers, paths, diff_ids = [], [], []
    for data in tars:
        diff_ids.append("sha256:" + hashlib.sha256(data).hexdigest())
        gz = subprocess.run(["gzip", "-6", "-n", "-c"], input=data, capture_output=True, check=True)
        digest, size, path = put(gz.stdout)
        layers.append({"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": size})
        paths.append(path)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdigest, csize, _ = put(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": cdigest, "size": csize},
        "layers": layers,
    }
    mdigest, msize, _ = put(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": mdigest,
                "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return paths


def _time_gzip(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        with path.open("rb") as src, open(os.devnull, "wb") as sink:
            subprocess.run(["gzip", "-d", "-c"], stdin=src, stdout=sink, check=True)
    return time.perf_counter() - started


async def _time_analyzer(layout: Path) -> tuple[float, int, int]:
    reader = OCILayoutReader(layout)
    digest = (await reader.get_manifest("bench")).digest
    started = time.perf_counter()
    analysis = await analyze_image(reader, digest)
    elapsed = time.perf_counter() - started
    assert analysis.complete, analysis.findings
    return elapsed, analysis.tree.files, len(analysis.packages)


def _write_docs(text: str) -> None:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if HEADING in current:
        start = current.index(HEADING)
        rest = current[start + len(HEADING) :]
        nxt = rest.find("\n## ")
        tail = rest[nxt:] if nxt >= 0 else "\n"
        current = current[:start] + text.rstrip() + "\n" + tail
    else:
        current = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    DOCS.write_text(current)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench analyzer")
    parser.add_argument("--mib", type=int, default=400, help="uncompressed MiB of layers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zoll-bench-") as tmp:
        tars = _layer_tars(args.mib << 20, 64 << 20)
        uncompressed = sum(len(t) for t in tars)
        paths = _write_layout(Path(tmp), tars)
        del tars
        compressed = sum(p.stat().st_size for p in paths)
        gzip_s, zoll_s = [], []
        files = packages = 0
        for _ in range(args.rounds):  # interleaved, best of N for both
            gzip_s.append(_time_gzip(paths))
            elapsed, files, packages = asyncio.run(_time_analyzer(Path(tmp)))
            zoll_s.append(elapsed)
    mb = compressed / 1e6
    gzip_rate, zoll_rate = mb / min(gzip_s), mb / min(zoll_s)
    ratio = zoll_rate / gzip_rate
    verdict = "meets" if ratio >= 0.70 else "MISSES"
    lines = [
        HEADING,
        "",
        f"`python -m bench analyzer` on {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {len(paths)} gzip layers of this machine's own files "
        f"({uncompressed / 1e6:.0f} MB tar, {mb:.0f} MB compressed, {files} files, "
        f"{packages} packages found), best of {args.rounds}:",
        "",
        "| reader | time | compressed MB/s |",
        "| --- | --- | --- |",
        f"| `gzip -d -c > /dev/null` (peer, physical limit) | {min(gzip_s):.2f} s "
        f"| {gzip_rate:.1f} |",
        f"| `analyze_image` (streamed, full analysis) | {min(zoll_s):.2f} s | {zoll_rate:.1f} |",
        "",
        f"Ratio analyzer / gzip: **{ratio:.2f}** — {verdict} the ≥ 0.70 target.",
        "",
        "The analyzer's time includes everything it does per image: SHA-256 of every",
        "compressed blob and of every uncompressed layer (diff_id), tar parsing, the",
        "whiteout-aware tree, secret scanning of text files, Go build-info scanning of",
        "executables and package-database parsing. gzip -d only inflates. Python's zlib",
        "inflates faster than the gzip program, which is why the ratio can approach 1.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_docs:
        _write_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

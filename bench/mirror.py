"""Mirroring 20 images that share base layers: Zoll's whole pipeline beside `skopeo sync`.

Upstream: Debian's docker-registry on loopback, seeded with buildah-built images (a
busybox base, a shared 20 MB runtime layer, a 2 MB layer of their own). Peer: `skopeo
sync` of the same images into a second docker-registry (a plain copy, nothing checked).
Zoll: `zoll mirror apply --run --wait` into a running `zoll serve`, i.e. copy, verify,
analyse + SBOM + hardening criteria, sign and log three attestations per image, admit.

    python -m bench mirror [--images 20] [--mode service|cli] [--workers 2]

Target: Zoll's whole pipeline no slower than skopeo's plain copy (ratio ≤ 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from bench.registry import start_distribution, start_zoll
from tests.support.buildah import BUSYBOX_BASE, Builder

ZOLL = str(Path(sys.executable).parent / "zoll")


def seed(work: Path, upstream: str, count: int) -> list[str]:
    builder = Builder(work / "buildah")
    shared = os.urandom(20 * 1024 * 1024)
    names = []
    for i in range(count):
        spec = (
            BUSYBOX_BASE + "COPY runtime.bin /opt/runtime.bin\nCOPY app.bin /opt/app.bin\n"
            "USER 10001\n"
        )
        image = builder.build(
            f"bench/app{i}",
            spec,
            layers=True,
            files={"runtime.bin": shared, "app.bin": os.urandom(2 * 1024 * 1024)},
        )
        layout = builder.push_oci_layout(image, work / "layouts" / f"app{i}", "1.0")
        subprocess.run(
            [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout}:1.0",
                f"docker://{upstream}/suite/app{i}:1.0",
            ],
            check=True,
            capture_output=True,
        )
        names.append(f"suite/app{i}")
    return names


def skopeo_sync(upstream: str, destination: str, names: list[str], work: Path) -> float:
    source = work / "sync.yaml"
    source.write_text(
        yaml.safe_dump({upstream: {"tls-verify": False, "images": {n: ["1.0"] for n in names}}})
    )
    started = time.perf_counter()
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "sync",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
            str(source),
            f"{destination}/synced",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def zoll_mirror(
    zoll_data: Path, upstream: str, names: list[str], work: Path, mode: str
) -> tuple[float, dict]:
    mirror_set = work / "mirror.yaml"
    mirror_set.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": "bench",
                "mirrors": [
                    {
                        "name": n.replace("/", "-"),
                        "source": f"{upstream}/{n}",
                        "target": f"opendesk/{n.split('/')[-1]}",
                        "tags": ["1.0"],
                        "insecure": True,
                    }
                    for n in names
                ],
            }
        )
    )
    # service: the running workers copy and judge, the CLI only queues and watches;
    # cli: this process copies too (`--run`), beside the service's workers.
    extra = ["--run", "--jobs", "4"] if mode == "cli" else []
    started = time.perf_counter()
    out = subprocess.run(
        [
            ZOLL,
            "mirror",
            "apply",
            str(mirror_set),
            "--wait",
            "--json",
            "--data-dir",
            str(zoll_data),
            *extra,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "ZOLL_STORAGE__DRIVER": "filesystem"},
    )
    elapsed = time.perf_counter() - started
    if out.returncode not in (0, 1):
        raise RuntimeError(out.stderr[-2000:])
    return elapsed, json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mirror")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--mode", choices=["service", "cli"], default="service")
    parser.add_argument("--workers", type=int, default=2, help="zoll serve worker processes")
    args = parser.parse_args(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="zoll-bench-mirror-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        for sub in ("up", "dest"):
            (work / sub).mkdir()
        upstream = start_distribution(work / "up", "filesystem", None)
        destination = start_distribution(work / "dest", "filesystem", None)
        zoll = start_zoll(work, "filesystem", args.workers, None)
        try:
            up_host = upstream.base.removeprefix("http://")
            print(f"seeding {args.images} images …", flush=True)
            names = seed(work, up_host, args.images)
            peer = skopeo_sync(up_host, destination.base.removeprefix("http://"), names, work)
            ours, report = zoll_mirror(work / "zoll", up_host, names, work, args.mode)
        finally:
            for server in (zoll, destination, upstream):
                server.stop()
    states = Counter(str(i["state"]) for i in report["images"])
    # Unsigned bench images end quarantined, but only after every stage ran: the verdict
    # (VSA, hardening result, SBOM) is signed and logged either way.
    verdicts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"\n{args.images} images mirrored by the running service: {verdicts}\n")
    print(
        "| measure | skopeo sync (copy only) | Zoll (mirror + verify + scan + attest + admit) "
        "| Zoll / skopeo |"
    )
    print("| --- | ---: | ---: | ---: |")
    print(f"| wall time | {peer:.1f} s | {ours:.1f} s | {ours / peer:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

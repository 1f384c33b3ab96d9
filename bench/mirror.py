"""Mirroring 20 images that share base layers: Zoll's whole pipeline beside `skopeo sync`.

Upstream: Debian's docker-registry on loopback, seeded with buildah-built images (a
busybox base, a shared 20 MB runtime layer, a 2 MB layer of their own). Peer: `skopeo
sync` of the same images into a second docker-registry (a plain copy, nothing checked).
Zoll: `zoll mirror apply --run --wait` into a running `zoll serve`, i.e. copy, verify,
analyse + SBOM + hardening criteria, sign and log three attestations per image, admit.

    python -m bench mirror [--images 20] [--mode service|cli] [--workers 2] [--runs 5]

The images are seeded once; each run copies them into a fresh docker-registry (skopeo)
and a fresh Zoll, and the medians are compared: this machine's disk makes single runs
swing by 2×. Target: Zoll's whole pipeline no slower than skopeo's plain copy (≤ 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
    parser.add_argument(
        "--runs", type=int, default=5, help="runs of each side (fresh destinations each time)"
    )
    args = parser.parse_args(sys.argv[1:])
    peer_times: list[float] = []
    our_times: list[float] = []
    states: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="zoll-bench-mirror-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        (work / "up").mkdir()
        upstream = start_distribution(work / "up", "filesystem", None)
        try:
            up_host = upstream.base.removeprefix("http://")
            print(f"seeding {args.images} images …", flush=True)
            names = seed(work, up_host, args.images)
            for run in range(args.runs):
                # Each run copies into empty destinations: nothing is reused from a run before.
                (work / f"dest{run}").mkdir()
                destination = start_distribution(work / f"dest{run}", "filesystem", None)
                try:
                    dest_host = destination.base.removeprefix("http://")
                    peer_times.append(skopeo_sync(up_host, dest_host, names, work))
                finally:
                    destination.stop()
                (work / f"zoll{run}").mkdir()
                zoll = start_zoll(work / f"zoll{run}", "filesystem", args.workers, None)
                try:
                    ours, report = zoll_mirror(
                        work / f"zoll{run}" / "zoll", up_host, names, work, args.mode
                    )
                finally:
                    zoll.stop()
                our_times.append(ours)
                states = Counter(str(i["state"]) for i in report["images"])
                print(
                    f"run {run + 1}: skopeo {peer_times[-1]:.2f} s, Zoll {ours:.2f} s "
                    f"({ours / peer_times[-1]:.2f}×)",
                    flush=True,
                )
        finally:
            upstream.stop()
    # Unsigned bench images end quarantined, but only after every stage ran: the verdict
    # (VSA, hardening result, SBOM) is signed and logged either way.
    verdicts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"\n{args.images} images mirrored by the running service: {verdicts}\n")
    peer, ours = statistics.median(peer_times), statistics.median(our_times)
    print(
        "| measure | skopeo sync (copy only) | Zoll (mirror + verify + scan + attest + admit) "
        "| Zoll / skopeo |"
    )
    print("| --- | ---: | ---: | ---: |")
    ratio = ours / peer
    print(f"| wall time, median of {args.runs} | {peer:.2f} s | {ours:.2f} s | {ratio:.2f}× |")
    print(
        f"| range | {min(peer_times):.2f}–{max(peer_times):.2f} s "
        f"| {min(our_times):.2f}–{max(our_times):.2f} s | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

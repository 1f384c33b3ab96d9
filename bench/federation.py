"""Replicating a mirrored suite from a peer node, beside `skopeo sync` between two
docker-registry instances; and follow latency, A admits → B admits.

Node A (`zoll serve`) mirrors N images (buildah-built, sharing base layers) from an
upstream docker-registry and judges them. Node B follows A's log (its tiles), copies every
image A admitted with its attachments, and judges each again itself (verify, analyse +
SBOM + criteria, sign, log, admit). The peer: `skopeo sync` of the same images from one
docker-registry into another (a plain copy, nothing checked).

    python -m bench federation [--images 20] [--follow 10] [--workers 2]

Reported: B's replication wall time (from pinning A until all N are admitted) against
skopeo's, and for `--follow` further images mirrored into A one at a time, the time from
A's admission to B's, p50/p95. The nodes keep the shipped intervals (`--interval`, 10 s
for `federation.poll_seconds` and `witness_seconds`): an admission wakes A's witness round
and A's add-checkpoint request wakes B's follow round (registry/federation/wakeups.py), so
the latency should not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.mirror import seed, skopeo_sync
from bench.registry import Server, start_distribution
from registry.embedded.ports import free_port

ZOLL = str(Path(sys.executable).parent / "zoll")


def start_node(
    work: Path, name: str, workers: int, interval: float, federation: dict[str, Any]
) -> Server:
    """`zoll serve` for node `name`, its own data folder, log origin and federation section;
    auth off (as the peer's registries), admission judged but not enforced."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "data_dir": str(work / "data"),
        "http": {"host": "127.0.0.1", "port": port, "workers": workers},
        "storage": {"driver": "filesystem"},
        "auth": {"enabled": False},
        "log": {"level": os.environ.get("BENCH_LOG_LEVEL", "warning"), "format": "json"},
        "attest": {"log_origin": f"{name}.bench/log"},
        # Unsigned bench images are judged on the hardening criteria alone.
        "namespaces": [{"prefix": "suite/", "require_verification": False, "fail_on": "critical"}],
        "federation": {
            "name": name,
            "poll_seconds": interval,
            "witness_seconds": interval,
            **federation,
        },
    }
    path = work / "zoll.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [ZOLL, "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "ZOLL_CONFIG": str(path)},
    )
    assert proc.stderr is not None
    said: list[bytes] = []
    for raw in proc.stderr:
        said.append(raw)
        if b"serving on" in raw:
            break
    else:
        tail = b"".join(said[-10:]).decode(errors="replace")
        raise RuntimeError(f"zoll serve ({name}) did not start:\n{tail}")
    log = (work / "serve.log").open("ab")

    def keep() -> None:  # the rest of its log, for when something goes wrong
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            log.flush()

    threading.Thread(target=keep, daemon=True).start()
    return Server(name, f"http://127.0.0.1:{port}", proc, lambda: [proc.pid])


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def states(node: Server, names: list[str]) -> dict[str, str]:
    """Repository → state of its image tagged 1.0 (absent until it arrives)."""
    out = {}
    for name in names:
        try:
            images = call("GET", f"{node.base}/api/v1/repositories/{name}/images")
        except urllib.error.HTTPError:
            continue
        for image in images.get("images", []):
            if "1.0" in image.get("tags", []):
                status = call("GET", f"{node.base}/api/v1/images/{name}@{image['digest']}/status")
                out[name] = status["state"]
    return out


def mirror_into(node: Server, upstream: str, names: list[str], work: Path) -> None:
    mirror_set = work / f"mirror-{len(names)}-{time.monotonic_ns()}.yaml"
    mirror_set.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "name": f"bench-{time.monotonic_ns()}",
                "mirrors": [
                    {
                        "name": n.replace("/", "-"),
                        "source": f"{upstream}/{n}",
                        "target": n,
                        "tags": ["1.0"],
                        "insecure": True,
                    }
                    for n in names
                ],
            }
        )
    )
    subprocess.run(
        [ZOLL, "mirror", "apply", str(mirror_set), "--wait", "--json", "--url", node.base],
        check=False,
        capture_output=True,
    )


def wait_admitted(node: Server, names: list[str], timeout: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        found = states(node, names)
        if len(found) == len(names) and all(s == "admitted" for s in found.values()):
            return time.perf_counter()
        time.sleep(0.1)
    raise TimeoutError(f"{node.name}: {states(node, names)}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench federation")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--follow", type=int, default=10, help="images for the latency test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--logs", type=Path, help="copy each node's log here when done")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="poll and witness seconds (10, the default)"
    )
    args = parser.parse_args(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="zoll-bench-federation-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        (work / "up").mkdir()
        upstream = start_distribution(work / "up", "filesystem", None)
        servers: list[Server] = [upstream]
        try:
            up_host = upstream.base.removeprefix("http://")
            print(f"seeding {args.images + args.follow} images …", flush=True)
            names = seed(work, up_host, args.images + args.follow)
            bulk, later = names[: args.images], names[args.images :]
            (work / "dest").mkdir()
            destination = start_distribution(work / "dest", "filesystem", None)
            servers.append(destination)
            peer = skopeo_sync(up_host, destination.base.removeprefix("http://"), bulk, work)

            a = start_node(work / "a", "zoll-a", args.workers, args.interval, {})
            servers.append(a)
            mirror_into(a, up_host, bulk, work)
            wait_admitted(a, bulk)
            b = start_node(
                work / "b",
                "zoll-b",
                args.workers,
                args.interval,
                {"follow": [{"peer": "zoll-a", "repositories": ["suite/*"]}]},
            )
            servers.append(b)
            call("POST", f"{a.base}/api/v1/peers", {"url": b.base, "insecure": True})
            started = time.perf_counter()  # B is up; it follows A from the moment it pins it
            call("POST", f"{b.base}/api/v1/peers", {"url": a.base, "insecure": True})
            replicated = wait_admitted(b, bulk) - started

            latencies = []
            for name in later:
                mirror_into(a, up_host, [name], work)
                admitted_a = wait_admitted(a, [name])
                latencies.append(wait_admitted(b, [name]) - admitted_a)
                print(f"{name}: B admitted {latencies[-1]:.2f} s after A", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                for node in ("a", "b"):
                    if (work / node / "serve.log").exists():
                        (args.logs / f"{node}.log").write_bytes(
                            (work / node / "serve.log").read_bytes()
                        )
    print()
    print("| measure | skopeo sync (copy only) | Zoll B (follow + copy + judge + attest) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| replicate {args.images} images | {peer:.2f} s | {replicated:.2f} s "
        f"| {replicated / peer:.2f}× |"
    )
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(
            f"\nfollow latency, A admits → B admits ({len(latencies)} images, intervals of "
            f"{args.interval:g} s): p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

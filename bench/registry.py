"""Zoll beside CNCF distribution 2.8 (Debian `docker-registry`), same machine, same storage.

Measures with neutral C clients (curl for transfers, ab for request rates), one server
after the other:
- 1 GiB blob push (POST + PUT with the body, and POST + PATCH + PUT),
- HEAD and GET of a manifest by tag, 64 concurrent connections (ApacheBench),
- peak memory of the service processes while 4 × 1 GiB pushes run at once;
then, with both servers up at once and measured in interleaved rounds (`bench/_pulls.py`):
- the 1 GiB pull, 64 clients pulling one 100 MiB layer, 64 clients pulling 6,400 distinct
  small blobs (median and min–max over the rounds). On S3 a second distribution on the
  same bucket joins the rounds: one proxies pulls (`storage.redirect.disable`), one
  redirects them to S3 (its default); the peer is the one doing what Zoll does (proxying,
  or redirecting with `--s3-redirect`), the other is a reference column.

    python -m bench registry [--size-mib 1024] [--storage filesystem|s3 [--s3-redirect]]
                             [--workers 2] [--part all|classic|pulls|memory] [--rounds 9]

`--part memory` starts Zoll alone (no distribution, no earlier phases in its processes)
and prints its idle PSS and the peak during the four pushes: the memory target's figure
without the 20 minutes around it.

Prints tables with Zoll/distribution ratios; paste them into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench import _pulls
from registry.embedded.ports import free_port
from registry.embedded.seaweedfs import EmbeddedSeaweed

ZOLL = str(Path(sys.executable).parent / "zoll")


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    service_pids: Callable[[], list[int]] = field(default=lambda: [])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def await_serving(proc: subprocess.Popen[bytes]) -> None:
    """Wait for `zoll serve` (stderr piped) to say it serves, then keep its stderr drained;
    a start that fails raises with the last lines it printed."""
    assert proc.stderr is not None
    tail: list[bytes] = []
    for raw in proc.stderr:
        tail = [*tail[-20:], raw]
        if b"serving on" in raw:
            break
    else:
        raise RuntimeError("zoll serve did not start:\n" + b"".join(tail).decode(errors="replace"))
    threading.Thread(target=proc.stderr.read, daemon=True).start()


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def start_distribution(
    work: Path, storage: str, s3: EmbeddedSeaweed | None, *, proxy: bool = False
) -> Server:
    """distribution on `storage`; on S3 it redirects pulls to presigned URLs (its default)
    unless `proxy` (its `storage.redirect.disable`: it streams the bytes itself, as Zoll
    does by default). Both kinds use the same root, so one seeding serves both."""
    port = free_port()
    if storage == "s3":
        assert s3 is not None
        storage_conf = {
            "s3": {
                "region": "us-east-1",
                "regionendpoint": s3.endpoint,
                "bucket": "distribution",
                "accesskey": s3.access_key,
                "secretkey": s3.secret_key,
                "secure": False,
                "v4auth": True,
                "chunksize": 16 * 1024 * 1024,
            }
        }
    else:
        storage_conf = {"filesystem": {"rootdirectory": str(work / "distribution")}}
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            **storage_conf,
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},  # its recommended setting
            **({"redirect": {"disable": True}} if proxy else {}),
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    name = "distribution-proxy" if proxy else "distribution"
    path = work / f"{name}.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    # distribution 2.8's AWS SDK panics on AWS_CA_BUNDLE with its own transport; the
    # endpoint is plain HTTP on loopback anyway.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/v2/")
    return Server(name, base, proc, lambda: [proc.pid])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _is_python(pid: int) -> bool:
    try:
        return (
            "python" in Path(f"/proc/{pid}/comm").read_text()
            or "zoll" in Path(f"/proc/{pid}/cmdline").read_text()
        )
    except OSError:
        return False


def start_zoll(
    work: Path, storage: str, workers: int, s3: EmbeddedSeaweed | None, redirect: bool = False
) -> Server:
    env = {
        **os.environ,
        "ZOLL_LOG__LEVEL": "warning",
        "ZOLL_LOG__FORMAT": "json",
        "ZOLL_AUTH__ENABLED": "false",  # distribution runs without auth too
    }
    if storage == "s3" and s3 is not None:
        env.update(
            {
                "ZOLL_STORAGE__S3__ENDPOINT": s3.endpoint,
                "ZOLL_STORAGE__S3__ACCESS_KEY": s3.access_key,
                "ZOLL_STORAGE__S3__SECRET_KEY": s3.secret_key,
                "ZOLL_STORAGE__S3__BUCKET": "zoll",
                # distribution redirects pulls to S3 by default, Zoll only when told to
                "ZOLL_STORAGE__S3__REDIRECT": "true" if redirect else "false",
            }
        )
    port = free_port()
    proc = subprocess.Popen(
        [
            ZOLL,
            "serve",
            "--data-dir",
            str(work / "zoll"),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--storage",
            storage,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    await_serving(proc)

    def service() -> list[int]:  # the supervisor and its Python workers, not the backends
        return [proc.pid, *[c for c in _children(proc.pid) if _is_python(c)]]

    return Server("zoll", f"http://127.0.0.1:{port}", proc, service)


def _request(method: str, url: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req) as resp:
        return resp.status, dict(resp.headers)


def _absolute(base: str, location: str) -> str:
    return location if location.startswith("http") else base + location


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--fail", *args], capture_output=True, text=True, check=True
    ).stdout


def push(server: Server, repo: str, blob: Path, digest: str, flow: str) -> float:
    started = time.perf_counter()
    _, headers = _request("POST", f"{server.base}/v2/{repo}/blobs/uploads/")
    location = _absolute(server.base, headers["Location"])
    if flow == "patch":
        out = _curl("-X", "PATCH", "-T", str(blob), "-D", "-", "-o", "/dev/null", location)
        match = re.search(r"^location: (\S+)", out, re.IGNORECASE | re.MULTILINE)
        assert match, out
        location = _absolute(server.base, match.group(1))
        _curl("-X", "PUT", "-o", "/dev/null", _with_query(location, f"digest={digest}"))
    else:
        _curl(
            "-X",
            "PUT",
            "-T",
            str(blob),
            "-o",
            "/dev/null",
            _with_query(location, f"digest={digest}"),
        )
    return time.perf_counter() - started


def push_small_image(server: Server, repo: str, tag: str) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(1024)
    descriptors = []
    for data in (config, layer):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(
            f"{server.base}/v2/{repo}/blobs/uploads/?digest={digest}", data=data, method="POST"
        )
        if server.name == "distribution":  # 2.8 has no single-POST upload
            _, headers = _request("POST", f"{server.base}/v2/{repo}/blobs/uploads/")
            location = _with_query(_absolute(server.base, headers["Location"]), f"digest={digest}")
            req = urllib.request.Request(
                location,
                data=data,
                method="PUT",  # not form-encoded: Go would parse the body as a form
                headers={"Content-Type": "application/octet-stream"},
            )
        urllib.request.urlopen(req).close()
        descriptors.append({"digest": digest, "size": len(data)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descriptors[0]},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **descriptors[1]}
            ],
        }
    ).encode()
    req = urllib.request.Request(
        f"{server.base}/v2/{repo}/manifests/{tag}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    urllib.request.urlopen(req).close()


def rps(url: str, method: str, requests: int) -> float:
    """Requests per second at 64 concurrent keep-alive connections (ApacheBench: unlike
    wrk it reads HEAD responses correctly)."""
    args = [
        "ab",
        "-k",
        "-q",
        "-n",
        str(requests),
        "-c",
        "64",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
    ]
    if method == "HEAD":
        args.append("-i")
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    assert rate and failed and failed.group(1) == "0" and not non2xx, out
    return float(rate.group(1))


def _rss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def peak_memory_during(server: Server, work: Callable[[], None]) -> float:
    """Peak summed PSS (MiB) of the service processes while `work` runs."""
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(_rss_kib(p) for p in server.service_pids()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return peak / 1024


def make_blob(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 8 << 20))
            fh.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return "sha256:" + digest.hexdigest()


def measure(
    server: Server, blob: Path, digest: str, size: int, args: argparse.Namespace
) -> dict[str, float]:
    mib = size / (1 << 20)
    result: dict[str, float] = {}
    for flow in ("put", "patch"):
        times = [push(server, f"bench/{flow}{i}", blob, digest, flow) for i in range(args.repeat)]
        result[f"push ({flow}) MB/s"] = mib * 1.048576 / statistics.median(times)
    push_small_image(server, "bench/manifests", "v1")
    url = f"{server.base}/v2/bench/manifests/manifests/v1"
    result["HEAD manifest req/s"] = rps(url, "HEAD", args.requests)
    result["GET manifest req/s"] = rps(url, "GET", args.requests)

    def four_pushes() -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: push(server, f"bench/mem{i}", blob, digest, "patch"), range(4)))

    result["peak memory MiB, 4 pushes"] = peak_memory_during(server, four_pushes)
    return result


def service_pss_mib(server: Server) -> float:
    return sum(_rss_kib(p) for p in server.service_pids()) / 1024


def memory_only(
    work: Path, blob: Path, digest: str, args: argparse.Namespace, s3: EmbeddedSeaweed | None
) -> dict[str, float]:
    """Zoll alone, fresh processes: PSS once started and idle, after one push and a
    manifest (the code those load), and the peak during the four pushes."""
    server = start_zoll(work, args.storage, args.workers, s3, args.s3_redirect)
    try:
        time.sleep(2)
        result = {"PSS MiB, idle": service_pss_mib(server)}
        push(server, "bench/warm", blob, digest, "patch")
        push_small_image(server, "bench/manifests", "v1")
        time.sleep(1)
        result["PSS MiB, after one push"] = service_pss_mib(server)

        def four_pushes() -> None:
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda i: push(server, f"bench/mem{i}", blob, digest, "patch"), range(4)
                    )
                )

        result["peak PSS MiB, 4 pushes"] = peak_memory_during(server, four_pushes)
        return result
    finally:
        server.stop()


def pull_rounds(
    work: Path, blob: Path, digest: str, args: argparse.Namespace, s3: EmbeddedSeaweed | None
) -> str:
    """Both servers up at once with the same content, pulls measured in interleaved
    rounds (`bench/_pulls.py`); returns the table."""
    work.mkdir()
    layer = work / "layer.bin"
    layer_digest = make_blob(layer, args.layer_mib << 20)
    servers = [start_distribution(work, args.storage, s3)]
    try:
        servers.append(start_zoll(work, args.storage, args.workers, s3, args.s3_redirect))
        sides: list[_pulls.Side] = []
        for server in servers:
            started = time.perf_counter()
            push(server, "bench/pulls", blob, digest, "put")
            push(server, "bench/pulls", layer, layer_digest, "put")
            small = _pulls.push_small_blobs(server.base, "bench/pulls", args.small_blobs)
            print(f"{server.name}: seeded in {time.perf_counter() - started:.1f} s", flush=True)
            sides.append(
                _pulls.Side(server.name, server.base, "bench/pulls", digest, layer_digest, small)
            )
        peer, ours = sides
        peer.name = "distribution 2.8"
        others: list[_pulls.Side] = []
        if args.storage == "s3":
            # On S3 distribution redirects pulls by default; Zoll proxies them by default.
            # A second distribution on the same bucket proxies (nothing to seed): the peer
            # is the one doing what Zoll does, the other a reference.
            proxying = start_distribution(work, args.storage, s3, proxy=True)
            servers.append(proxying)
            other = _pulls.Side(
                "distribution 2.8 proxying",
                proxying.base,
                "bench/pulls",
                digest,
                layer_digest,
                peer.small,
            )
            peer.name = "distribution 2.8 redirecting"
            if not args.s3_redirect:
                peer, other = other, peer
            others.append(other)
        _pulls.interleaved_rounds(
            ours,
            peer,
            args.rounds,
            args.clients,
            args.size_mib,
            lambda line: print(line, flush=True),
            others,
        )
        return _pulls.table(ours, peer, others)
    finally:
        for server in servers:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench registry")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument(
        "--s3-redirect", action="store_true", help="Zoll answers pulls with 307 to S3 too"
    )
    parser.add_argument(
        "--part",
        choices=["all", "classic", "pulls", "memory"],
        default="all",
        help="classic: pushes, manifests, memory; pulls: the interleaved pull rounds; "
        "memory: Zoll alone, idle and during the four pushes",
    )
    parser.add_argument("--rounds", type=int, default=9, help="interleaved pull rounds")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--layer-mib", type=int, default=100)
    parser.add_argument("--small-blobs", type=int, default=6400)
    args = parser.parse_args(sys.argv[1:])
    for tool, package in (
        ("docker-registry", "docker-registry"),
        ("curl", "curl"),
        ("ab", "apache2-utils"),
    ):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install {package})")
            return 2
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="zoll-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        blob = work / "blob.bin"
        digest = make_blob(blob, size)
        s3 = None
        if args.storage == "s3":
            s3 = EmbeddedSeaweed(work / "seaweedfs")
            s3.start()
        results: dict[str, dict[str, float]] = {}
        pulls = ""
        memory: dict[str, float] = {}
        try:
            if args.part == "memory":
                memory = memory_only(work, blob, digest, args, s3)
            for starter in (
                start_distribution,
                lambda w, st, s: start_zoll(w, st, args.workers, s, args.s3_redirect),
            ):
                if args.part in ("pulls", "memory"):
                    break
                server = starter(work, args.storage, s3)
                try:
                    results[server.name] = measure(server, blob, digest, size, args)
                finally:
                    server.stop()
            if args.part in ("all", "pulls"):
                pulls = pull_rounds(work / "pulls", blob, digest, args, s3)
        finally:
            if s3 is not None:
                s3.stop()
    print(
        f"\nstorage: {args.storage}{' (Zoll redirects pulls)' if args.s3_redirect else ''}, "
        f"blob {args.size_mib} MiB, Zoll workers: {args.workers}, {os.cpu_count()} CPUs\n"
    )
    if results:
        print("| measure | distribution 2.8 | Zoll | Zoll / distribution |")
        print("| --- | ---: | ---: | ---: |")
        for key in results["zoll"]:
            peer, ours = results["distribution"][key], results["zoll"][key]
            print(f"| {key} | {peer:,.1f} | {ours:,.1f} | {ours / peer:.2f}× |")
    for key, value in memory.items():
        print(f"| {key} | {value:,.1f} |")
    if pulls:
        print(f"\nPulls, {args.rounds} interleaved rounds:\n\n{pulls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

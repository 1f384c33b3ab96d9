"""What authentication costs: Zoll with auth off, Zoll with auth on, and CNCF distribution
2.8 with its htpasswd (Basic, bcrypt) authentication as the peer.

Measures, with neutral C clients where rates matter (ApacheBench, 64 keep-alive
connections):
- manifest GET req/s without credentials (auth off), with a bearer token, and with Basic
  credentials (Zoll caches a verified Basic credential; distribution checks bcrypt on
  every request);
- /token latency: a first login per user (scrypt, n = 2^15) and a repeated one (cached).

    python -m bench auth [--workers 2] [--requests 20000] [--users 30] [--rounds 3]

Prints tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.registry import Server, _children, _is_python
from registry.embedded.ports import free_port

ZOLL = str(Path(sys.executable).parent / "zoll")
REPO = "bench/auth"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def start_zoll(work: Path, name: str, workers: int, auth: bool) -> tuple[Server, str | None]:
    env = {
        **os.environ,
        "ZOLL_LOG__LEVEL": "warning",
        "ZOLL_LOG__FORMAT": "json",
        "ZOLL_AUTH__ENABLED": "true" if auth else "false",
        "ZOLL_AUTH__LIMITS__TOKEN_PER_SECOND": "100000",
        "ZOLL_AUTH__LIMITS__TOKEN_BURST": "100000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    proc = subprocess.Popen(
        [
            ZOLL,
            "serve",
            "--data-dir",
            str(work / name),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--storage",
            "filesystem",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    password = None
    for raw in proc.stdout:
        line = raw.decode(errors="replace")
        found = re.search(r"password: (\S+)", line)
        if found:
            password = found.group(1)
        if "serving on" in line:
            break
    else:
        raise RuntimeError("zoll serve did not start")
    out = proc.stdout
    threading.Thread(target=out.read, daemon=True).start()  # keep draining its output

    def service() -> list[int]:  # the supervisor and its Python workers
        return [proc.pid, *[c for c in _children(proc.pid) if _is_python(c)]]

    return Server(name, f"http://127.0.0.1:{port}", proc, service), password


def start_distribution(work: Path, user: str, password: str) -> Server:
    htpasswd = work / "htpasswd"
    subprocess.run(
        ["htpasswd", "-Bbc", str(htpasswd), user, password], check=True, capture_output=True
    )
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(work / "distribution")},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "auth": {"htpasswd": {"realm": "bench", "path": str(htpasswd)}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    path = work / "distribution.yml"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/v2/", timeout=2)
        except urllib.error.HTTPError:
            break  # 401: it is up
        except OSError:
            time.sleep(0.2)
    return Server("distribution", base, proc, lambda: [proc.pid])


def _send(
    method: str, url: str, auth: str | None, data: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    hdrs = dict(headers)
    if auth:
        hdrs["Authorization"] = auth
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    with urllib.request.urlopen(req) as resp:
        return resp.status, dict(resp.headers), resp.read()


def push_small_image(base: str, auth: str | None) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(1024)
    descriptors = []
    for data in (config, layer):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _, headers, _ = _send("POST", f"{base}/v2/{REPO}/blobs/uploads/", auth)
        location = headers["Location"]
        location = location if location.startswith("http") else base + location
        sep = "&" if "?" in location else "?"
        _send(
            "PUT",
            f"{location}{sep}digest={digest}",
            auth,
            data,
            **{"Content-Type": "application/octet-stream"},
        )
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
    _send(
        "PUT",
        f"{base}/v2/{REPO}/manifests/v1",
        auth,
        manifest,
        **{"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )


def rps(url: str, requests: int, header: str | None) -> float:
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
    if header:
        args += ["-H", f"Authorization: {header}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    assert rate and failed and failed.group(1) == "0" and not non2xx, out
    return float(rate.group(1))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (and their reaped threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def token(base: str, auth: str) -> str:
    _, _, body = _send("GET", f"{base}/token?service=zoll&scope=repository:{REPO}:pull", auth)
    return str(json.loads(body)["token"])


def login_latency(base: str, users: list[tuple[str, str]]) -> tuple[list[float], list[float]]:
    """Per user: the first /token (pays scrypt) and the second (cached), on one keep-alive
    connection so both reach the same worker process."""
    host = base.removeprefix("http://")
    conn = http.client.HTTPConnection(host)
    first, again = [], []
    try:
        for name, password in users:
            for bucket in (first, again):
                started = time.perf_counter()
                conn.request(
                    "GET",
                    f"/token?service=zoll&scope=repository:{REPO}:pull",
                    headers={"Authorization": basic(name, password)},
                )
                resp = conn.getresponse()
                resp.read()
                bucket.append((time.perf_counter() - started) * 1000)
                assert resp.status == 200, resp.status
    finally:
        conn.close()
    return first, again


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench auth")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(sys.argv[1:])
    for tool in ("ab", "htpasswd", "docker-registry"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install apache2-utils docker-registry)")
            return 2
    rates: dict[str, dict[str, float]] = {}
    cpu: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="zoll-bench-auth-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        servers: list[Server] = []
        try:
            off, _ = start_zoll(work, "off", args.workers, auth=False)
            servers.append(off)
            on, password = start_zoll(work, "on", args.workers, auth=True)
            servers.append(on)
            assert password, "the first start prints the admin password"
            dist = start_distribution(work, "admin", "bench-password")
            servers.append(dist)
            admin, dist_auth = basic("admin", password), basic("admin", "bench-password")
            push_small_image(off.base, None)
            push_small_image(on.base, admin)
            push_small_image(dist.base, dist_auth)
            path = f"/v2/{REPO}/manifests/v1"
            bearer = f"Bearer {token(on.base, admin)}"
            runs = {
                ("off", "no credentials"): (off, args.requests, None),
                ("on", "bearer token"): (on, args.requests, bearer),
                ("on", "Basic (cached)"): (on, args.requests, admin),
                ("distribution", "Basic (htpasswd, bcrypt)"): (
                    dist,
                    max(1000, args.requests // 10),
                    dist_auth,
                ),
            }
            # Interleaved rounds, best of each: other load on the machine hits all alike.
            # CPU time per request (of the service processes) is the steadier measure.
            for _ in range(args.rounds):
                for (name, label), (server, count, header) in runs.items():
                    before = cpu_seconds(server.service_pids())
                    rate = rps(server.base + path, count, header)
                    used = (cpu_seconds(server.service_pids()) - before) / count * 1e6
                    best = rates.setdefault(name, {})
                    best[label] = max(best.get(label, 0.0), rate)
                    least = cpu.setdefault(name, {})
                    least[label] = min(least.get(label, float("inf")), used)
            users = []
            for i in range(args.users):
                name, secret = f"bench{i}", f"bench-password-{i:04d}"
                body = {
                    "name": name,
                    "password": secret,
                    "grants": [{"namespace": "bench", "role": "reader"}],
                }
                _send(
                    "POST",
                    f"{on.base}/api/v1/admin/users",
                    admin,
                    json.dumps(body).encode(),
                    **{"Content-Type": "application/json"},
                )
                users.append((name, secret))
            first, again = login_latency(on.base, users)
        finally:
            for server in servers:
                server.stop()

    base_rate, base_cpu = rates["off"]["no credentials"], cpu["off"]["no credentials"]
    print(
        f"\nZoll workers: {args.workers}, {os.cpu_count()} CPUs, ab -k -c 64, "
        f"best of {args.rounds}\n"
    )
    print("| manifest GET | req/s | vs auth off | server CPU µs/request | vs auth off |")
    print("| --- | ---: | ---: | ---: | ---: |")
    rows = [("Zoll, auth off", "off", "no credentials")]
    rows += [(f"Zoll, auth on, {label}", "on", label) for label in rates["on"]]
    rows += [
        (f"distribution 2.8, {label}", "distribution", label) for label in rates["distribution"]
    ]
    for title, name, label in rows:
        rate, used = rates[name][label], cpu[name][label]
        print(
            f"| {title} | {rate:,.0f} | {rate / base_rate:.2f}× | {used:,.0f} | "
            f"{used / base_cpu:.2f}× |"
        )
    print(f"\n/token latency over {args.users} users (one keep-alive connection):\n")
    print("| login | median ms | p95 ms |")
    print("| --- | ---: | ---: |")
    print(f"| first (scrypt n=2^15, r=8) | {statistics.median(first):.1f} | {p95(first):.1f} |")
    print(f"| repeated (cached) | {statistics.median(again):.1f} | {p95(again):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

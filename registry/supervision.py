"""What the supervisor of `zoll serve` knows and its workers cannot see: how many workers
run, and which embedded backends it is restarting. It writes
`<data_dir>/supervisor-<host>-<pid>.json` whenever that changes; `/readyz` in any worker
reads its own supervisor's file, so the answer is the same whichever worker the kernel
hands the probe to. The name carries host and process id because replicas may share one
data folder (the Helm chart's volume), each supervisor being process 1 of its container:
one replica's restarting workers must not make another one unready. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from registry.processes import alive

LEGACY_FILE = "supervisor.json"
"""One file for every supervisor of the folder, before 2026-12: removed on start."""


def _file(data_dir: Path, pid: int) -> Path:
    return data_dir / f"supervisor-{socket.gethostname()}-{pid}.json"


@dataclass
class SupervisorStatus:
    pid: int
    workers_wanted: int
    workers_running: int = 0
    backends: dict[str, str] = field(default_factory=dict)
    """Embedded backend → `ok`, or what is wrong (`restarting: …`)."""

    def checks(self) -> dict[str, str]:
        """The /readyz lines this adds: `ok`, or what is down."""
        out = {"workers": "ok"}
        if self.workers_running < self.workers_wanted:
            out["workers"] = (
                f"{self.workers_running} of {self.workers_wanted} running, restarting the others"
            )
        for name, state in self.backends.items():
            out[f"embedded {name}"] = state
        return out


def write(data_dir: Path, status: SupervisorStatus) -> None:
    """Atomically (readers never see half a file)."""
    path = _file(data_dir, os.getpid())
    partial = path.with_name(f".{path.name}")
    partial.write_text(json.dumps(asdict(status)))
    partial.replace(path)


def remove(data_dir: Path) -> None:
    _file(data_dir, os.getpid()).unlink(missing_ok=True)


def sweep(data_dir: Path) -> None:
    """Remove what supervisors of this host that no longer run (killed with -9) left, and
    the legacy file; another host's files are its own to remove (its processes cannot be
    seen from here)."""
    (data_dir / LEGACY_FILE).unlink(missing_ok=True)
    prefix = f"supervisor-{socket.gethostname()}-"
    for path in data_dir.glob(f"{prefix}*.json"):
        pid = path.name.removeprefix(prefix).removesuffix(".json")
        if pid.isdigit() and not alive(int(pid)):
            path.unlink(missing_ok=True)


def of_parent(data_dir: Path) -> SupervisorStatus | None:
    """The status written by this process's supervisor; None when this process is not a
    supervised worker (tests, tools) or the file is unreadable."""
    try:
        data = json.loads(_file(data_dir, os.getppid()).read_text())
        status = SupervisorStatus(**data)
    except (OSError, ValueError, TypeError):
        return None
    return status if status.pid == os.getppid() else None

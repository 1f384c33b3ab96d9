"""What the supervisor of `zoll serve` knows and its workers cannot see: how many workers
run, and which embedded backends it is restarting. It writes `<data_dir>/supervisor.json`
whenever that changes; `/readyz` in any worker reads it, so the answer is the same
whichever worker the kernel hands the probe to. Standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FILE_NAME = "supervisor.json"


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
    partial = data_dir / f".{FILE_NAME}.{os.getpid()}"
    partial.write_text(json.dumps(asdict(status)))
    partial.replace(data_dir / FILE_NAME)


def remove(data_dir: Path) -> None:
    (data_dir / FILE_NAME).unlink(missing_ok=True)


def of_parent(data_dir: Path) -> SupervisorStatus | None:
    """The status written by this process's supervisor; None when this process is not a
    supervised worker (tests, tools) or the file is unreadable."""
    try:
        data = json.loads((data_dir / FILE_NAME).read_text())
        status = SupervisorStatus(**data)
    except (OSError, ValueError, TypeError):
        return None
    return status if status.pid == os.getppid() else None

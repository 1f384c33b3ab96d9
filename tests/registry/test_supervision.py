"""The supervisor's status files in a data folder that replicas may share: each
supervisor's own, and what a killed one left is removed by the next start on its host."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from registry import supervision


def _gone_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_start_sweeps_what_dead_supervisors_of_its_host_left(tmp_path: Path) -> None:
    host = socket.gethostname()
    supervision.write(tmp_path, supervision.SupervisorStatus(os.getpid(), 2))
    mine = tmp_path / f"supervisor-{host}-{os.getpid()}.json"
    dead = tmp_path / f"supervisor-{host}-{_gone_pid()}.json"
    elsewhere = tmp_path / "supervisor-other-host-1.json"
    legacy = tmp_path / "supervisor.json"
    for path in (dead, elsewhere, legacy):
        path.write_text("{}")

    supervision.sweep(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, elsewhere.name])
    supervision.remove(tmp_path)
    assert not mine.exists()

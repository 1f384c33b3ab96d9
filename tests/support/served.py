"""`zoll serve` run as an operator runs it: a real process on a free port, stopped with
SIGTERM; its start-up output is kept (the first start prints the admin password)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

ZOLL = str(Path(sys.executable).parent / "zoll")


class Served:
    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """`wrap` runs the service through another command (`unshare …`, as a container
        runtime would start it)."""
        environ = {**os.environ, "ZOLL_LOG__FORMAT": "json", **(env or {})}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [*wrap, ZOLL, "serve", "--data-dir", str(data_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environ,
            text=True,
        )
        self.output: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            match = re.search(r"serving on http://([\d.]+:\d+)", line)
            if match:
                self.host = match.group(1)
                # Keep reading its log, so a long-running service never blocks on a full pipe.
                self._banner = len(self.output)
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return
        raise AssertionError("zoll serve exited:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def admin_password(self) -> str | None:
        """The password the first start printed for `admin`, if it printed one."""
        for line in self.output:
            match = re.search(r"password: (\S+)", line)
            if match:
                return match.group(1)
        return None

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def rest_of_output(self) -> list[str]:
        """After `stop`: what the service logged after its start (read to its end)."""
        assert self.proc.poll() is not None
        self._drainer.join(timeout=30)
        return "".join(self.output[self._banner :]).splitlines()

"""Build small, real container images offline with buildah for the tests.

Images start from a base made of Debian's busybox-static binary, so no registry is
needed. Each `Builder` keeps its own buildah storage, so tests never touch the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from attest.rebuild.buildah import RUNTIME_ATTEMPTS, TRANSIENT_RUNTIME_FAILURE

BUSYBOX = Path("/bin/busybox")


def busybox_context(directory: Path) -> Path:
    """A build context holding `/bin/busybox` (static), ready for `COPY rootfs/ /`."""
    rootfs = directory / "rootfs" / "bin"
    rootfs.mkdir(parents=True, exist_ok=True)
    target = rootfs / "busybox"
    if not target.exists():
        shutil.copy2(BUSYBOX, target)
    return directory


BUSYBOX_BASE = """FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""
"""A Containerfile prefix giving a shell and coreutils from busybox."""


@dataclass
class Builder:
    """buildah with private storage under `workdir`."""

    workdir: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def _base_args(self) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.workdir / "storage"),
            "--runroot",
            str(self.workdir / "run"),
            "--storage-driver",
            "vfs",
        ]

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run buildah, again when its chroot runtime could not start (a kernel EBUSY)."""
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot", "STORAGE_DRIVER": "vfs"}
        for _attempt in range(RUNTIME_ATTEMPTS):
            proc = subprocess.run(
                [*self._base_args(), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
            if proc.returncode == 0 or TRANSIENT_RUNTIME_FAILURE not in proc.stderr:
                break
        if proc.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)} failed:\n{proc.stderr}\n{proc.stdout}")
        return proc.stdout

    async def arun(self, *args: str, timeout: float = 300) -> str:
        """`run` without blocking the event loop (when a registry under test shares it)."""
        from tests.support.tools import run

        return await run(*self._base_args(), *args, timeout=timeout)

    def build(
        self,
        name: str,
        containerfile: str,
        *,
        files: dict[str, bytes | str] | None = None,
        busybox: bool = True,
        build_args: dict[str, str] | None = None,
        platform: str | None = None,
        layers: bool = False,
    ) -> str:
        """Build `containerfile` in a fresh context and return the local image name.

        With `layers`, every instruction becomes its own layer (needed for whiteouts);
        otherwise everything after FROM is one layer.
        """
        context = self.workdir / "contexts" / name.replace("/", "_").replace(":", "_")
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        if busybox:
            busybox_context(context)
        for rel, content in (files or {}).items():
            path = context / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        (context / "Containerfile").write_text(containerfile)
        args = [
            "bud",
            "--isolation",
            "chroot",
            "--timestamp",
            "0",
            f"--layers={str(layers).lower()}",
        ]
        if platform:
            args += ["--platform", platform]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        image = f"localhost/{name}"
        self.run(*args, "-t", image, "-f", str(context / "Containerfile"), str(context))
        return image

    def push_oci_layout(self, image: str, layout: Path, tag: str = "latest") -> Path:
        """Write `image` into an OCI image layout directory at `layout` under `tag`."""
        layout.parent.mkdir(parents=True, exist_ok=True)
        self.run("push", "--format", "oci", image, f"oci:{layout}:{tag}")
        return layout

    def push(self, image: str, destination: str, *extra: str) -> None:
        """Push to any containers-transport destination (`docker://host/repo:tag`, …)."""
        self.run("push", *extra, image, destination)

"""The buildah backend: `buildah bud --isolation chroot --timestamp … --layers`.

buildah runs with private storage (vfs) and configuration inside the request's scratch
directory, a minimal environment and `--pull=never`: base images are copied from Zoll
into that storage first, by skopeo, under the names a registry pull would give them.
chroot isolation shares the host's PID and network namespaces and cannot do `--network
none`, so `bud` runs under `unshare --pid --fork --mount-proc --net` (`--net` left out
when the recipe allows network): RUN steps see only their own processes and a loopback
that is down. CAP_SYS_CHROOT is dropped, since a root process holding it can leave a
chroot. Every step is a subprocess under `attest.rebuild.process`: one deadline for the
whole build, resource limits, and the process group killed on timeout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from attest.rebuild.builder import BuildError, BuildOutput, BuildRequest
from attest.rebuild.process import LogTail, ProcessLimits, ProcessResult, run_process
from registry.oci.digest import Digest, DigestError

BUILD_TYPE: Final = "https://zoll.dev/rebuild/buildah/v1"
IMAGE: Final = "localhost/zoll-rebuild:latest"
OUTPUT_TAG: Final = "rebuilt"
_POLICY: Final = '{"default": [{"type": "insecureAcceptAnything"}]}\n'
"""Signature policy for local imports only: base images were verified by digest."""
_REGISTRIES: Final = 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n'
TRANSIENT_RUNTIME_FAILURE: Final = "sealing memfd copy"
"""What the chroot runtime prints when the kernel refuses, for a moment, to seal the copy
of itself it runs RUN steps from (F_ADD_SEALS gives EBUSY while another task holds a
page of it). Nothing of the build ran, so the step is tried again."""
RUNTIME_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class BuildahBackend:
    executable: str = "buildah"
    skopeo: str = "skopeo"
    storage_driver: str = "vfs"

    @property
    def name(self) -> str:
        return "buildah"

    @property
    def build_type(self) -> str:
        return BUILD_TYPE

    async def version(self) -> str:
        tail = LogTail(5)
        try:
            result = await run_process(
                [self.executable, "--version"],
                limits=ProcessLimits(timeout=30, memory_bytes=None),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                tail=tail,
            )
        except FileNotFoundError as exc:
            raise BuildError("builder-unavailable", f"{self.executable} is not installed") from exc
        match = re.search(r"version\s+(\S+)", result.output)
        if result.returncode != 0 or match is None:
            raise BuildError("builder-unavailable", f"{self.executable} --version failed")
        return match.group(1)

    def _global(self, scratch: Path) -> list[str]:
        return [
            self.executable,
            "--root",
            str(scratch / "storage"),
            "--runroot",
            str(scratch / "run"),
            "--storage-driver",
            self.storage_driver,
        ]

    def _env(self, scratch: Path) -> dict[str, str]:
        """Only what buildah needs: no proxies, no host registries or containers.conf."""
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(scratch / "home"),
            "TMPDIR": str(scratch / "tmp"),
            "XDG_RUNTIME_DIR": str(scratch / "run"),
            "XDG_CONFIG_HOME": str(scratch / "home" / ".config"),
            "LANG": "C.UTF-8",
            "BUILDAH_ISOLATION": "chroot",
            "STORAGE_DRIVER": self.storage_driver,
            "CONTAINERS_CONF": str(scratch / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(scratch / "registries.conf"),
        }

    def _prepare(self, scratch: Path) -> Path:
        for sub in ("home", "tmp", "run", "storage"):
            (scratch / sub).mkdir(parents=True, exist_ok=True)
        (scratch / "containers.conf").write_text("")
        (scratch / "registries.conf").write_text(_REGISTRIES)
        policy = scratch / "policy.json"
        policy.write_text(_POLICY)
        return policy

    async def _run(
        self,
        argv: Sequence[str],
        request: BuildRequest,
        deadline: float,
        tail: LogTail,
        on_line: Callable[[str], None] | None,
        what: str,
    ) -> ProcessResult:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BuildError("timeout", f"the build exceeded {request.limits.timeout:.0f} s")
        for attempt in range(1, RUNTIME_ATTEMPTS + 1):
            limits = replace(request.limits, timeout=remaining)
            lines_before = tail.total_lines
            try:
                result = await run_process(
                    argv, limits=limits, env=self._env(request.scratch), tail=tail, on_line=on_line
                )
            except FileNotFoundError as exc:
                raise BuildError("builder-unavailable", f"cannot start {argv[0]}: {exc}") from exc
            remaining = deadline - time.monotonic()
            flaked = _runtime_flaked(result, tail, lines_before)
            if not flaked or attempt == RUNTIME_ATTEMPTS or remaining <= 0:
                break
            retry = f"{what}: the runtime could not start ({TRANSIENT_RUNTIME_FAILURE}); retrying"
            tail.add(retry)
            if on_line is not None:
                on_line(retry)
        if result.timed_out:
            raise BuildError("timeout", f"{what} exceeded the {request.limits.timeout:.0f} s limit")
        if result.returncode != 0:
            last = tail.text(6).strip()
            if "unshare failed" in last:
                raise BuildError(
                    "builder-unavailable",
                    "cannot give the build its own PID and network namespaces (unshare "
                    f"needs CAP_SYS_ADMIN): {last}",
                )
            raise BuildError("build-failed", f"{what} failed (exit {result.returncode}): {last}")
        return result

    async def build(
        self, request: BuildRequest, tail: LogTail, on_line: Callable[[str], None] | None
    ) -> BuildOutput:
        deadline = time.monotonic() + request.limits.timeout
        policy = self._prepare(request.scratch)
        common = self._global(request.scratch)
        storage = (
            f"containers-storage:[{self.storage_driver}@{request.scratch / 'storage'}"
            f"+{request.scratch / 'run'}]"
        )
        for base in request.bases:
            # skopeo, not `buildah pull`: only a copy into containers-storage can give the
            # image the name a registry pull would (`repo@digest`), which buildah records.
            await self._run(
                [
                    self.skopeo, "--policy", str(policy), "copy", "--quiet",
                    f"oci:{base.layout}:{base.tag}", f"{storage}{base.local_name}",
                ],
                request, deadline, tail, on_line, f"skopeo import of base image {base.written}",
            )  # fmt: skip
        bud = [
            *common,
            "bud",
            "--isolation",
            "chroot",
            "--timestamp",
            str(request.timestamp),
            f"--layers={str(request.layers).lower()}",
            "--pull=never",
            "--cap-drop",
            "CAP_SYS_CHROOT",
            "--signature-policy",
            str(policy),
            "--format",
            request.format,
            "-f",
            str(request.containerfile),
            "-t",
            IMAGE,
        ]
        if request.platform:
            bud += ["--platform", request.platform]
        if request.target:
            bud += ["--target", request.target]
        for key, value in sorted(request.build_args.items()):
            bud += ["--build-arg", f"{key}={value}"]
        bud.append(str(request.context))
        unshare = shutil.which("unshare")
        if unshare is None:
            raise BuildError("builder-unavailable", "unshare (util-linux) is not installed")
        namespaces = ["--pid", "--fork", "--mount-proc"] + ([] if request.network else ["--net"])
        bud = [unshare, *namespaces, "--", *bud]
        await self._run(bud, request, deadline, tail, on_line, "buildah bud")
        push = [*common, "push", "--quiet", "--signature-policy", str(policy)]
        push += ["--format", "oci" if request.format == "oci" else "v2s2"]
        if request.compression == "none":
            push.append("--disable-compression")
        else:
            push += ["--compression-format", request.compression]
        push += [IMAGE, f"oci:{request.output}:{OUTPUT_TAG}"]
        await self._run(push, request, deadline, tail, on_line, "buildah push")
        return BuildOutput(_layout_digest(request.output), request.output, OUTPUT_TAG)


def _runtime_flaked(result: ProcessResult, tail: LogTail, since: int) -> bool:
    """Whether a step failed only because the chroot runtime could not start."""
    written = min(tail.total_lines - since, 20)
    failed = result.returncode not in (0, None)
    return failed and written > 0 and TRANSIENT_RUNTIME_FAILURE in tail.text(written)


def _layout_digest(layout: Path) -> Digest:
    try:
        index = json.loads((layout / "index.json").read_text())
        return Digest.parse(index["manifests"][0]["digest"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, DigestError) as exc:
        raise BuildError("build-failed", f"buildah wrote no usable OCI layout: {exc}") from exc

"""A source project in git and its "upstream" image, built the way a vendor would.

The upstream image is built by buildah with the host's configuration (the tests'
`Builder`) from a plain copy of the committed tree; Zoll then rebuilds it in its own
sandbox from the bare repository. Files get explicit modes so the two trees agree
whatever the umask.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry.oci.digest import Digest
from tests.support.buildah import BUSYBOX, Builder

BUSYBOX_FILES: Mapping[str, bytes | str] = {"rootfs/bin/busybox": BUSYBOX.read_bytes()}
EXECUTABLE = frozenset({"rootfs/bin/busybox"})


def layout_digest(layout: Path, tag: str) -> Digest:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return Digest.parse(entry["digest"])
    raise LookupError(f"no tag {tag} in {layout}")


@dataclass
class Project:
    root: Path
    builder: Builder

    def __post_init__(self) -> None:
        self.tree = self.root / "tree"
        self.meta = self.root / "meta.git"
        self.repo = self.root / "repo.git"
        self.tree.mkdir(parents=True, exist_ok=True)
        if not self.repo.exists():
            self._git("init", "--bare", "--quiet", "-b", "main", str(self.repo), tree=False)
            self._git("init", "--quiet", "-b", "main")

    def _git(self, *args: str, tree: bool = True) -> str:
        prefix = (
            ["git", "--git-dir", str(self.meta), "--work-tree", str(self.tree)] if tree else ["git"]
        )
        env_args = ["-c", "user.name=Zoll Test", "-c", "user.email=test@zoll.invalid"]
        proc = subprocess.run(
            [prefix[0], *env_args, *prefix[1:], *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()

    def commit(self, files: Mapping[str, bytes | str], message: str = "change") -> str:
        """Write `files` (replacing the tree), commit, push to the bare repo; the commit id."""
        for child in self.tree.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        for rel, content in files.items():
            path = self.tree / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            path.chmod(0o755 if rel in EXECUTABLE else 0o644)
        for directory in [self.tree, *(p for p in self.tree.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        self._git("push", "--quiet", "--force", str(self.repo), "HEAD:refs/heads/main")
        return self._git("rev-parse", "HEAD")

    def pull_base(self, layout: Path, tag: str, name: str) -> None:
        """Put a base image into the vendor's storage as a registry pull of `name` would
        (`repo@sha256:…` when pulled by digest, `repo:tag` otherwise)."""
        work = self.builder.workdir
        storage = f"containers-storage:[vfs@{work / 'storage'}+{work / 'run'}]"
        subprocess.run(
            [
                "skopeo",
                "--insecure-policy",
                "copy",
                "--quiet",
                f"oci:{layout}:{tag}",
                storage + name,
            ],
            check=True,
            capture_output=True,
        )

    def build_upstream(
        self,
        layout: Path,
        *,
        tag: str = "v1",
        containerfile: str = "Containerfile",
        context: str = ".",
        build_args: Mapping[str, str] | None = None,
        timestamp: int = 0,
    ) -> Digest:
        """Build the committed tree with the tests' buildah and push it to `layout`."""
        # No cache: buildah's layer cache ignores --timestamp, so a cached layer from a
        # build at another time would leak that time into this image.
        args = ["bud", "--isolation", "chroot", "--timestamp", str(timestamp), "--layers=true"]
        args.append("--no-cache")
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        image = f"localhost/upstream-{layout.name}"
        context_dir = self.tree / context
        self.builder.run(
            *args, "-t", image, "-f", str(context_dir / containerfile), str(context_dir)
        )
        self.builder.push_oci_layout(image, layout, tag)
        return layout_digest(layout, tag)

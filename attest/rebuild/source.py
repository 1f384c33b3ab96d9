"""Fetch a recipe's source: the exact commit of a git repository, or a local directory.

A git source is cloned bare into the rebuild's scratch directory and the commit is
checked out into a separate tree without `.git` (as BuildKit's git contexts are), with
file modes normalised to what git records (0644/0755), so the checkout does not depend
on the host's umask. The attestation records the commit; a local directory is recorded
by its in-toto `dirHash`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from attest.rebuild.process import LogTail, ProcessLimits, run_process
from attest.rebuild.recipe import GitSource, PathSource, Source

GIT_ENV: Final = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_LFS_SKIP_SMUDGE": "1",
}


class SourceError(Exception):
    """The source cannot be fetched or does not hold what the recipe names."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class Checkout:
    """A source tree ready to build, and how the attestation names it."""

    root: Path
    uri: str
    digest: dict[str, str] = field(default_factory=dict)
    commit: str | None = None


async def _git(
    *args: str, time_limit: float, cwd: Path | None = None, log: LogTail | None = None
) -> str:
    tail = log or LogTail()
    result = await run_process(
        ["git", *args],
        limits=ProcessLimits(timeout=time_limit, memory_bytes=None),
        env={**os.environ, **GIT_ENV},
        cwd=cwd,
        tail=tail,
    )
    if result.timed_out:
        raise SourceError(f"git {args[0]} took longer than {time_limit:.0f} s", timed_out=True)
    if result.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {tail.text(8).strip() or result.returncode}")
    return result.output.strip()


def _normalise_modes(root: Path) -> None:
    for directory, dirs, files in os.walk(root):
        os.chmod(directory, 0o755)  # noqa: PTH101,S103 - git's modes, on str paths from os.walk
        for name in files:
            path = os.path.join(directory, name)  # noqa: PTH118
            if os.path.islink(path):  # noqa: PTH114
                continue
            executable = os.stat(path).st_mode & 0o100  # noqa: PTH116
            os.chmod(path, 0o755 if executable else 0o644)  # noqa: PTH101
        dirs.sort()


async def fetch_git(source: GitSource, scratch: Path, *, time_limit: float) -> Checkout:
    """Clone, resolve `commit` (or `ref`, or HEAD) and check it out without `.git`."""
    bare = scratch / "git"
    tree = scratch / "source"
    await _git("clone", "--bare", "--quiet", "--", source.url, str(bare), time_limit=time_limit)
    wanted = source.commit or source.ref or "HEAD"
    try:
        commit = await _git(
            "--git-dir",
            str(bare),
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{wanted}^{{commit}}",
            time_limit=60,
        )
    except SourceError:
        raise SourceError(f"{source.url} has no commit {wanted!r}") from None
    tree.mkdir()
    await _git(
        "--git-dir", str(bare), "--work-tree", str(tree), "checkout", "--quiet", "--force",
        commit, "--", ".", time_limit=time_limit,
    )  # fmt: skip
    await asyncio.to_thread(_normalise_modes, tree)
    return Checkout(tree, source.uri(), {"gitCommit": commit}, commit)


def dir_hash(root: Path) -> str:
    """in-toto's `dirHash`: sha256 over `sha256sum` lines of every regular file, sorted."""
    names: list[bytes] = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in files:
            path = os.path.join(directory, name)  # noqa: PTH118
            if os.path.isfile(path) and not os.path.islink(path):  # noqa: PTH113,PTH114
                names.append(os.fsencode(os.path.relpath(path, root)))
    outer = hashlib.sha256()
    for rel in sorted(names):
        inner = hashlib.sha256()
        with open(os.path.join(os.fsencode(root), rel), "rb") as fh:  # noqa: PTH118
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(inner.hexdigest().encode() + b"  " + rel + b"\n")
    return outer.hexdigest()


async def fetch_source(source: Source, scratch: Path, *, time_limit: float) -> Checkout:
    """The source tree for a build; SourceError says why there is none."""
    if isinstance(source, PathSource):
        root = source.path
        if not root.is_dir():
            raise SourceError(f"source directory {root} does not exist")
        digest = await asyncio.to_thread(dir_hash, root)
        return Checkout(root.resolve(), source.uri(), {"dirHash": digest})
    return await fetch_git(source, scratch, time_limit=time_limit)

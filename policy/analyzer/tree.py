"""The final file tree of an image: layers applied in order, whiteouts honoured.

Nodes live in memory (a few hundred bytes each, bounded by `max_entries`); nothing is
written to disk. Names are normalised the way containerd applies layers: leading `/`
and `./` are dropped, but a `..` component, a link that climbs out of the root, or an
entry written *through* a symlink are reported and the entry is not applied.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from policy.analyzer.model import Finding
from policy.analyzer.tarstream import TarEntry

WHITEOUT: Final = ".wh."
OPAQUE: Final = ".wh..wh..opq"
MAX_LINK_HOPS: Final = 40


class Node:
    """A file, directory or link in the merged tree."""

    __slots__ = ("caps", "children", "gid", "kind", "layer", "link", "mode", "size", "uid")

    def __init__(
        self,
        kind: str,
        mode: int,
        uid: int,
        gid: int,
        size: int,
        layer: int,
        link: str = "",
        caps: bool = False,
    ) -> None:
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.layer = layer
        self.link = link
        self.caps = caps
        self.children: dict[str, Node] | None = {} if kind == "dir" else None


@dataclass(frozen=True, slots=True)
class Applied:
    """What happened to one tar entry."""

    path: str | None
    """Normalised absolute path when the entry was applied, else None."""
    findings: tuple[Finding, ...] = ()


def split(name: str) -> tuple[list[str] | None, str | None]:
    """Path components of a tar name, or (None, reason) when it escapes the root."""
    absolute = name.startswith("/")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None, "name contains '..'"
        parts.append(part)
    return parts, ("absolute name" if absolute else None)


class FileTree:
    """Merged layers; `apply` one entry at a time, bottom layer first."""

    def __init__(self) -> None:
        self.root = Node("dir", 0o755, 0, 0, 0, -1)
        self.entries = 0

    def _parent(self, parts: list[str], layer: int) -> tuple[Node | None, str | None]:
        node = self.root
        for part in parts:
            assert node.children is not None
            child = node.children.get(part)
            if child is None:
                child = Node("dir", 0o755, 0, 0, 0, layer)
                node.children[part] = child
            elif child.kind == "symlink":
                return None, "entry is written through a symbolic link"
            elif child.kind != "dir":
                child = Node("dir", 0o755, 0, 0, 0, layer)
                node.children[part] = child
            node = child
        return node, None

    def lookup(self, path: str, *, follow: bool = True) -> Node | None:
        """The node at an absolute path, resolving symlinks inside the root like a chroot."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        hops = 0
        node = self.root
        stack: list[Node] = []
        while parts:
            part = parts.pop(0)
            if part == "..":
                node = stack.pop() if stack else self.root
                continue
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            if child.kind == "symlink" and (parts or follow):
                hops += 1
                if hops > MAX_LINK_HOPS:
                    return None
                target = [p for p in child.link.split("/") if p not in ("", ".")]
                if child.link.startswith("/"):
                    node, stack = self.root, []
                parts = target + parts
                continue
            stack.append(node)
            node = child
        return node

    def apply(self, entry: TarEntry, layer: int) -> Applied:
        parts, problem = split(entry.name)
        findings: list[Finding] = []
        if parts is None:
            return Applied(None, (Finding("traversal", problem or "", layer, entry.name),))
        if problem:
            findings.append(Finding("traversal", problem, layer, entry.name))
        if not parts:
            if entry.kind == "dir":  # the root directory itself
                self.root.mode, self.root.uid, self.root.gid = entry.mode, entry.uid, entry.gid
            return Applied("/", tuple(findings))
        parent, problem = self._parent(parts[:-1], layer)
        path = "/" + "/".join(parts)
        if parent is None:
            findings.append(Finding("link-escape", problem or "", layer, path))
            return Applied(None, tuple(findings))
        assert parent.children is not None
        name = parts[-1]
        if name.startswith(WHITEOUT):
            self._whiteout(parent, name, layer)
            return Applied(None, tuple(findings))
        self.entries += 1
        existing = parent.children.get(name)
        if entry.kind == "hardlink":
            target_parts, bad = split(entry.linkname)
            target = None if target_parts is None else self.lookup("/".join(target_parts))
            if target_parts is None or target is None or target.kind in ("dir", "symlink"):
                reason = bad if target_parts is None else "hard link to a missing or non-file"
                findings.append(Finding("link-escape", f"{reason}: {entry.linkname}", layer, path))
                return Applied(None, tuple(findings))
            node = Node(
                target.kind,
                target.mode,
                target.uid,
                target.gid,
                target.size,
                layer,
                "",
                target.caps,
            )
        elif entry.kind == "dir" and existing is not None and existing.kind == "dir":
            existing.mode, existing.uid, existing.gid = entry.mode, entry.uid, entry.gid
            existing.layer = layer
            return Applied(path, tuple(findings))
        else:
            node = Node(
                entry.kind,
                entry.mode,
                entry.uid,
                entry.gid,
                entry.size,
                layer,
                entry.linkname,
                entry.capability,
            )
            if entry.kind == "symlink" and _climbs_out(path, entry.linkname):
                findings.append(
                    Finding(
                        "link-escape",
                        f"symbolic link climbs above the root: {entry.linkname}",
                        layer,
                        path,
                    )
                )
        parent.children[name] = node
        return Applied(path, tuple(findings))

    def _whiteout(self, parent: Node, name: str, layer: int) -> None:
        assert parent.children is not None
        if name == OPAQUE:
            for key in [k for k, child in parent.children.items() if child.layer < layer]:
                del parent.children[key]
            return
        if name.startswith(WHITEOUT + WHITEOUT):
            return  # other AUFS metadata (.wh..wh.plnk, …): not a deletion
        victim = parent.children.get(name[len(WHITEOUT) :])
        if victim is not None and victim.layer < layer:
            del parent.children[name[len(WHITEOUT) :]]

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Every path of the final tree with its node (directories before contents)."""
        stack: list[tuple[str, Node]] = [("", self.root)]
        while stack:
            prefix, node = stack.pop()
            if node.children is None:
                continue
            for name, child in node.children.items():
                path = f"{prefix}/{name}"
                yield path, child
                if child.children:
                    stack.append((path, child))


def _climbs_out(path: str, target: str) -> bool:
    if target.startswith("/"):
        return False
    depth = path.count("/") - 1  # directories above the link
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def normalise(path: str) -> str:
    """An absolute, normalised path for comparisons."""
    return posixpath.normpath("/" + path.lstrip("/"))

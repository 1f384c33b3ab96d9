"""Walk the final tree once and keep the facts the criteria judge."""

from __future__ import annotations

import re
from typing import Final

from policy.analyzer.model import FileFact, TreeSummary
from policy.analyzer.tree import FileTree, Node

CACHE_DIRS: Final = (
    "/var/cache/apt/archives",
    "/var/lib/apt/lists",
    "/var/cache/apk",
    "/etc/apk/cache",
    "/var/cache/yum",
    "/var/cache/dnf",
    "/var/cache/zypp",
    "/root/.cache/pip",
    "/root/.npm/_cacache",
    "/usr/local/share/.cache/yarn",
    "/root/.cache/yarn",
    "/root/.cache/go-build",
    "/root/.m2/repository",
    "/root/.gradle/caches",
)
_HOME_CACHE: Final = re.compile(r"^(/home/[^/]+/(?:\.cache/pip|\.npm/_cacache|\.cache/yarn))/")
_NOT_CACHE: Final = frozenset({"lock", ".placeholder"})
PACKAGE_MANAGERS: Final = frozenset(
    {"apt", "apt-get", "dpkg", "apk", "yum", "dnf", "microdnf", "rpm", "zypper", "pip", "pip3"}
)
REMOTE_ACCESS: Final = frozenset(
    {"sshd", "dropbear", "telnetd", "in.telnetd", "x11vnc", "Xvnc", "vncserver", "xrdp"}
)
INIT_SYSTEMS: Final = frozenset({"supervisord", "systemd", "s6-svscan", "runsvdir", "init"})


def _cache_dir(path: str) -> str | None:
    for prefix in CACHE_DIRS:
        if path.startswith(prefix + "/"):
            return prefix
    match = _HOME_CACHE.match(path)
    return match.group(1) if match else None


def _fact(path: str, node: Node) -> FileFact:
    return FileFact(path, node.mode, node.uid, node.gid, node.size, node.layer)


def summarise(tree: FileTree, max_listed: int) -> TreeSummary:
    s = TreeSummary()

    def keep(name: str, items: list[FileFact], path: str, node: Node) -> None:
        if len(items) < max_listed:
            items.append(_fact(path, node))
        elif name not in s.truncated:
            s.truncated.append(name)

    for path, node in tree.walk():
        kind = node.kind
        if kind == "dir":
            s.directories += 1
            if node.mode & 0o002:
                keep("world_writable", s.world_writable, path, node)
            continue
        if kind == "symlink":
            s.symlinks += 1
            continue
        if kind != "file":
            s.other += 1
            continue
        s.files += 1
        s.total_file_bytes += node.size
        mode = node.mode
        if mode & 0o4000:
            keep("setuid", s.setuid, path, node)
        if mode & 0o2000:
            keep("setgid", s.setgid, path, node)
        if node.caps:
            keep("capabilities", s.capabilities, path, node)
        if mode & 0o002:
            keep("world_writable", s.world_writable, path, node)
        directory, _, base = path.rpartition("/")
        if directory.endswith(("/bin", "/sbin", "/libexec")) or directory.endswith("/systemd"):
            if base in PACKAGE_MANAGERS and len(s.package_managers) < max_listed:
                s.package_managers.append(path)
            if base in REMOTE_ACCESS and len(s.remote_access) < max_listed:
                s.remote_access.append(path)
            if base in INIT_SYSTEMS and len(s.init_systems) < max_listed:
                s.init_systems.append(path)
        if (path.startswith(("/var/", "/root/", "/usr/local/", "/home/", "/etc/apk/"))) and (
            base not in _NOT_CACHE
        ):
            cache = _cache_dir(path)
            if cache is not None:
                s.package_caches[cache] = s.package_caches.get(cache, 0) + node.size
    for items in (s.setuid, s.setgid, s.capabilities, s.world_writable):
        items.sort(key=lambda f: f.path)
    s.package_managers.sort()
    s.remote_access.sort()
    s.init_systems.sort()
    return s

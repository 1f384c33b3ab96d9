"""A release description in, one mirror set out: `zoll mirror apply opendesk-1.17.yaml`.

The description has the shape of an openDesk helmfile environment — its chart list and
its image list, each entry with registry, repository, tag (or version) and digest:

    release: opendesk
    version: "1.17.0"
    target: opendesk/                  # where in this registry (repository prefix)
    values: {global: {…}}              # Helm values for every chart (optional)
    charts:
      nextcloud:
        registry: registry.opencode.de
        repository: bmi/opendesk/components/platform-development/charts/opendesk-nextcloud
        version: "4.5.0"
        digest: sha256:…               # optional; pins the chart
        values: {…}                    # optional, per chart
    images:
      nextcloud:
        registry: registry.opencode.de
        repository: bmi/opendesk/components/platform-development/images/opendesk-nextcloud
        tag: "32.0.9@sha256:…"         # openDesk writes tag@digest; or tag + digest

Charts become entries `chart-<key>` with target `<target>charts/<key>`; images become
entries `<key>` with target `<target><key>` (camelCase keys in kebab-case); an image
listed under several keys (same repository, tag and digest) is mirrored once. The images
a chart deploys are mirrored from the image list, so chart entries do not mirror images
of their own (`chart_images: false`).
"""

from __future__ import annotations

import re
from typing import Any

_KEBAB = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class ReleaseError(ValueError):
    pass


def kebab(key: str) -> str:
    name = _KEBAB.sub("-", str(key)).lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", name).strip("-._")
    if not name:
        raise ReleaseError(f"{key!r} does not make a name")
    return name


def _pinned(item: dict[str, Any], tag_key: str, where: str) -> str:
    tag = str(item.get(tag_key) or "").strip()
    digest = str(item.get("digest") or "").strip()
    if "@" in tag:
        tag, _, in_tag = tag.partition("@")
        if digest and digest != in_tag:
            raise ReleaseError(f"{where}: {tag_key} names {in_tag} but digest says {digest}")
        digest = in_tag
    if not tag and not digest:
        raise ReleaseError(f"{where}: needs a {tag_key} or a digest")
    return f"{tag}@{digest}" if tag and digest else tag or digest


def _source(item: dict[str, Any], where: str) -> str:
    registry = str(item.get("registry") or "").strip().rstrip("/")
    repository = str(item.get("repository") or "").strip().strip("/")
    if not registry or not repository:
        raise ReleaseError(f"{where}: needs registry and repository")
    name = str(item.get("name") or "").strip()
    if name and repository.rsplit("/", 1)[-1] != name:
        repository = f"{repository}/{name}"
    return f"{registry}/{repository}"


def _entry(source: str, pinned: str, name: str, target: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "source": source, "target": target}
    if pinned.startswith("sha256:"):
        entry["digests"] = [pinned]
    else:
        entry["tags"] = [pinned]
    return entry


def release_to_set(data: dict[str, Any], where: str = "release") -> dict[str, Any]:
    """The mirror set (as a document for `MirrorSet`) a release description stands for."""
    try:
        return _convert(data, where)
    except ReleaseError as exc:
        from registry.mirror.sets import MirrorSetError

        raise MirrorSetError(f"{where}: invalid release description: {exc}") from None


def _convert(data: dict[str, Any], where: str) -> dict[str, Any]:
    release = kebab(str(data.get("release") or ""))
    prefix = str(data.get("target") or f"{release}/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    charts = data.get("charts") or {}
    images = data.get("images") or {}
    if not isinstance(charts, dict) or not isinstance(images, dict):
        raise ReleaseError("charts and images map keys to entries")
    if not charts and not images:
        raise ReleaseError("lists neither charts nor images")
    passed_on = ("insecure", "credentials", "schedule", "platforms")
    shared: dict[str, Any] = {k: data[k] for k in passed_on if k in data}
    common_values = data.get("values") or {}
    mirrors: list[dict[str, Any]] = []
    chart_entries: dict[str, str] = {}
    image_entries: dict[str, str] = {}
    seen: dict[tuple[str, str], str] = {}
    for key, item in images.items():
        spot = f"images.{key}"
        if not isinstance(item, dict):
            raise ReleaseError(f"{spot}: must be a mapping")
        source, pinned = _source(item, spot), _pinned(item, "tag", spot)
        if (source, pinned) in seen:
            image_entries[str(key)] = seen[(source, pinned)]
            continue
        name = kebab(key)
        mirrors.append({**shared, **_entry(source, pinned, name, prefix + name)})
        seen[(source, pinned)] = image_entries[str(key)] = name
    for key, item in charts.items():
        spot = f"charts.{key}"
        if not isinstance(item, dict):
            raise ReleaseError(f"{spot}: must be a mapping")
        source, pinned = _source(item, spot), _pinned(item, "version", spot)
        name = f"chart-{kebab(key)}"
        values = _merge(common_values, item.get("values") or {})
        entry: dict[str, Any] = {
            **shared,
            **_entry(source, pinned, name, f"{prefix}charts/{kebab(key)}"),
        }
        entry["chart_images"] = False
        if values:
            entry["values"] = values
        mirrors.append(entry)
        chart_entries[str(key)] = name
    out: dict[str, Any] = {
        "version": 1,
        "name": release,
        "mirrors": mirrors,
        "release": {
            "name": str(data.get("release")),
            "version": None if data.get("version") is None else str(data["version"]),
            "charts": chart_entries,
            "images": image_entries,
        },
    }
    if "defaults" in data:
        out["defaults"] = data["defaults"]
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged

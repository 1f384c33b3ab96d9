"""Parse an OCI/Docker image config into the fields the criteria read."""

from __future__ import annotations

import json
from typing import Any

from policy.analyzer.model import ImageConfig


class ConfigError(ValueError):
    """The image config is not a JSON object of the expected shape."""


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str | int | float))
    return ()


def parse_config(raw: bytes) -> ImageConfig:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"image config is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError("image config is not a JSON object")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise ConfigError("image config field 'config' is not an object")
    labels = cfg.get("Labels") or {}
    ports = cfg.get("ExposedPorts") or {}
    volumes = cfg.get("Volumes") or {}
    health = cfg.get("Healthcheck")
    healthcheck = _strings(health.get("Test")) if isinstance(health, dict) else None
    history = doc.get("history") or []
    rootfs = doc.get("rootfs") or {}
    return ImageConfig(
        user=str(cfg.get("User") or ""),
        env=_strings(cfg.get("Env")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        exposed_ports=tuple(sorted(str(p) for p in ports)) if isinstance(ports, dict) else (),
        healthcheck=healthcheck,
        entrypoint=_strings(cfg.get("Entrypoint")),
        cmd=_strings(cfg.get("Cmd")),
        volumes=tuple(sorted(str(v) for v in volumes)) if isinstance(volumes, dict) else (),
        working_dir=str(cfg.get("WorkingDir") or ""),
        history=tuple(str(h.get("created_by", "")) for h in history if isinstance(h, dict))
        if isinstance(history, list)
        else (),
        created=str(doc["created"]) if doc.get("created") else None,
        os=str(doc.get("os") or ""),
        architecture=str(doc.get("architecture") or ""),
        diff_ids=_strings(rootfs.get("diff_ids")) if isinstance(rootfs, dict) else (),
    )

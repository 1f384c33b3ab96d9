"""Limits for parsing untrusted JSON: manifests here, bundles and statements in `attest`."""

from __future__ import annotations


def depth_exceeds(obj: object, limit: int) -> bool:
    """Whether `obj` nests deeper than `limit` (iterative: safe on any depth json allows)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(current, dict):
            stack.extend((v, depth + 1) for v in current.values())
        elif isinstance(current, list):
            stack.extend((v, depth + 1) for v in current)
    return False

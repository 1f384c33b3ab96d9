"""Package URLs (purl-spec), built from parts with the spec's percent-encoding."""

from __future__ import annotations

from urllib.parse import quote


def _enc(value: str) -> str:
    return quote(value, safe=".-_~:")


def purl(
    kind: str,
    name: str,
    version: str | None = None,
    *,
    namespace: str | None = None,
    qualifiers: dict[str, str] | None = None,
) -> str:
    """`pkg:type/namespace/name@version?qualifiers` with every part encoded."""
    out = f"pkg:{kind}/"
    if namespace:
        out += "/".join(_enc(part) for part in namespace.split("/") if part) + "/"
    out += _enc(name)
    if version:
        out += "@" + _enc(version)
    items = sorted((k, v) for k, v in (qualifiers or {}).items() if v)
    if items:
        out += "?" + "&".join(f"{k}={_enc(v)}" for k, v in items)
    return out

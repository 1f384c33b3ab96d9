"""Badges: `/badges/<repo>/<tag-or-digest>/<kind>.svg` (shields-style) and `.json` (a
shields.io "endpoint" document), for READMEs and catalogues that want to show what was
checked. Each says one fact from the stored verdict, never more:

| kind | message |
| --- | --- |
| admission | admitted, quarantined, pending, rejected, exempt |
| hardening | criteria met / applicable |
| rebuild | reproduced, differs, failed, none |
| vulnerabilities | open critical and high findings (VEX-cleared ones do not count) |
| signed | verified (the trust policy passed), not verified, no policy |

A badge needs pull on its repository like the image itself; one the caller may not read
is not found (auth.sessions.page_refusal). Answers carry an ETag and are cached for a
minute (publicly only when anonymous callers may read the repository).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from registry.api.repositories import path_name
from registry.db import manifests as manifest_rows
from registry.http.access import Access, repository
from registry.http.state import registry_of
from registry.pipeline import status
from registry.ui.pages import page

KINDS = ("admission", "hardening", "rebuild", "vulnerabilities", "signed")
MAX_AGE = 60
GREEN, YELLOW, ORANGE, RED, GREY, BLUE = (
    "#2e7d32",
    "#9a6700",
    "#c2410c",
    "#c62828",
    "#616161",
    "#1565c0",
)
"""Darker than shields' defaults, so white text keeps a 4.5:1 contrast."""


@dataclass(frozen=True)
class Badge:
    label: str
    message: str
    color: str

    def endpoint(self) -> dict[str, Any]:
        """The shields.io endpoint schema (https://shields.io/badges/endpoint-badge)."""
        return {
            "schemaVersion": 1,
            "label": self.label,
            "message": self.message,
            "color": self.color.lstrip("#"),
        }


def badge_for(kind: str, row: Any) -> Badge:
    """The badge of `kind` for an image_status row (None: the pipeline never saw it)."""
    if row is None:
        return Badge(kind, "unknown", GREY)
    if kind == "admission":
        state = row["state"]
        if state == "quarantined" and row["fingerprint"] is None:
            state = "pending"
        colors = {"admitted": GREEN, "quarantined": ORANGE, "rejected": RED}
        return Badge("admission", state, colors.get(state, GREY))
    if kind == "hardening":
        summary = (row["hardening"] or {}).get("summary")
        if not summary:
            return Badge("hardening", "not checked", GREY)
        met, applicable = summary.get("pass", 0), summary.get("pass", 0) + summary.get("fail", 0)
        color = GREEN if met == applicable else (YELLOW if row["hardening_passed"] else RED)
        return Badge("hardening", f"{met}/{applicable} criteria", color)
    if kind == "rebuild":
        outcome = ((row["rebuild"] or {}).get("result") or {}).get("outcome") or "none"
        colors = {"reproduced": GREEN, "differs": ORANGE, "failed": RED}
        return Badge("rebuild", outcome, colors.get(outcome, GREY))
    if kind == "vulnerabilities":
        found = row["vulnerabilities"]
        if found is None:
            return Badge("vulnerabilities", "unknown", GREY)
        open_ = [v for v in found if not v.get("suppressed")]
        critical = sum(1 for v in open_ if v.get("severity") == "critical")
        high = sum(1 for v in open_ if v.get("severity") == "high")
        if not critical and not high:
            return Badge("vulnerabilities", "no critical or high", GREEN)
        return Badge(
            "vulnerabilities", f"{critical} critical, {high} high", RED if critical else ORANGE
        )
    passed = row["verification_passed"]
    if passed is None:
        return Badge("signed", "no policy", GREY)
    return Badge("signed", "verified" if passed else "not verified", GREEN if passed else RED)


_NARROW = set("fijlrt.,:;|!'()[] ")
_WIDE = set("mwMW@%")


def text_width(text: str) -> int:
    """Verdana 11px, near enough for a badge: shields measures the same font."""
    width = 0.0
    for ch in text:
        if ch in _NARROW:
            width += 3.9
        elif ch in _WIDE:
            width += 10.2
        elif ch.isupper() or ch.isdigit():
            width += 7.3
        else:
            width += 6.6
    return int(width + 0.5)


def svg(badge: Badge) -> str:
    """A flat shields-style badge with a title and aria-label for screen readers."""
    left, right = text_width(badge.label) + 10, text_width(badge.message) + 10
    total = left + right
    label, message = escape(badge.label), escape(badge.message)
    text = f"{label}: {message}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{text}"><title>{text}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{badge.color}"/>'
        f'<rect width="{total}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" '
        'font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{label}</text>'
        f'<text x="{left / 2:.1f}" y="14">{label}</text>'
        f'<text x="{left + right / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{message}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{message}</text></g></svg>'
    )


async def _public(request: web.Request, name: str) -> bool:
    auth = registry_of(request).auth
    if auth is None:
        return True
    anonymous = await auth.anonymous_caller()
    return anonymous.can(Access("repository", name, "pull"))


@page(repository("pull"))
async def badge(request: web.Request) -> web.StreamResponse:
    name = path_name(request)
    kind, ext, ref = (request.match_info[k] for k in ("kind", "ext", "ref"))
    if kind not in KINDS:
        raise web.HTTPNotFound()
    pool = registry_of(request).pool
    stored = await manifest_rows.get(pool, name, ref, by_digest=ref.startswith("sha256:"))
    if stored is None:
        raise web.HTTPNotFound()
    found = badge_for(kind, await status.get(pool, name, str(stored.digest)))
    if ext == "json":
        body, content_type = json.dumps(found.endpoint()).encode(), "application/json"
    else:
        body, content_type = svg(found).encode(), "image/svg+xml"
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    scope = "public" if await _public(request, name) else "private"
    headers = {
        "ETag": etag,
        "Cache-Control": f"{scope}, max-age={MAX_AGE}, must-revalidate",
        "Vary": "Cookie, Authorization",
    }
    if scope == "public":  # catalogues on other sites may fetch the JSON
        headers["Access-Control-Allow-Origin"] = "*"
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)

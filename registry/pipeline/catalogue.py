"""The catalogue: namespaces → repositories → images with their pipeline state, and the
searches over them (name, digest, package, vulnerability id).

Every listing is keyset-paged (the next page starts after the last row shown, never at
an OFFSET) on an index, so a page costs the same with 100 images or 100,000
(bench/ui.py). `visible` is the caller's readable namespaces (`Grants.readable_namespaces`:
None = everything): a listing never names a repository the caller may not pull.

Artifacts (signatures, attestations, SBOMs) are not catalogue entries: only images and
indexes are listed. `pending` is shown for an image still on its way through the
pipeline: quarantined, and never judged (no fingerprint yet).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

STATES = ("admitted", "quarantined", "pending", "rejected")
_STATE = (
    "CASE WHEN s.state = 'quarantined' AND s.fingerprint IS NULL THEN 'pending' ELSE s.state END"
)
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{6,64}$")
_VULN_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9._:-]+$")


def _visible(column: str, param: int) -> str:
    """SQL that is true when the caller may read the repository named by `column`."""
    return (
        f"(${param}::text[] IS NULL OR {column} = ANY(${param}::text[]) OR EXISTS ("  # noqa: S608
        f"SELECT 1 FROM unnest(${param}::text[]) AS ns(p) "
        f"WHERE ns.p = '*' OR starts_with({column}, ns.p || '/')))"
    )


def _list(visible: Sequence[str] | None) -> list[str] | None:
    return None if visible is None else list(visible)


@dataclass(frozen=True)
class Namespace:
    name: str
    repositories: int


@dataclass(frozen=True)
class RepositoryRow:
    name: str
    images: int
    counts: dict[str, int]
    """state → number of images"""


@dataclass(frozen=True)
class ImageRow:
    repository: str
    digest: str
    kind: str
    state: str
    tags: list[str]
    created_at: datetime
    verification_passed: bool | None
    hardening: dict[str, int] | None
    """pass / fail / not_applicable counts"""


async def namespaces(
    pool: asyncpg.Pool, visible: Sequence[str] | None, after: str, limit: int
) -> list[Namespace]:
    """First name segments (`opendesk` of `opendesk/nextcloud`) with their repositories."""
    rows = await pool.fetch(
        f"""SELECT split_part(r.name, '/', 1) AS ns, count(*) AS repositories
            FROM repositories r
            WHERE {_visible("r.name", 1)} AND split_part(r.name, '/', 1) > $2
            GROUP BY 1 ORDER BY 1 LIMIT $3""",  # noqa: S608 (constant fragments)
        _list(visible),
        after,
        limit,
    )
    return [Namespace(r["ns"], int(r["repositories"])) for r in rows]


async def repositories(
    pool: asyncpg.Pool, namespace: str, visible: Sequence[str] | None, after: str, limit: int
) -> list[RepositoryRow]:
    """The repositories of a namespace in name order, each with its images by state."""
    rows = await pool.fetch(
        f"""SELECT r.name, c.*
            FROM repositories r
            CROSS JOIN LATERAL (
                SELECT count(*) AS images,
                       count(*) FILTER (WHERE {_STATE} = 'admitted') AS admitted,
                       count(*) FILTER (WHERE {_STATE} = 'quarantined') AS quarantined,
                       count(*) FILTER (WHERE {_STATE} = 'pending') AS pending,
                       count(*) FILTER (WHERE {_STATE} = 'rejected') AS rejected
                FROM image_status s
                WHERE s.repository_id = r.id AND s.kind IN ('image', 'index')) c
            WHERE (r.name = $1 OR (r.name > $1 || '/' AND r.name < $1 || '0'))
              AND r.name > $2 AND {_visible("r.name", 3)}
            ORDER BY r.name LIMIT $4""",  # noqa: S608 (constant fragments)
        namespace,
        after,
        _list(visible),
        limit,
    )
    return [
        RepositoryRow(r["name"], int(r["images"]), {s: int(r[s]) for s in STATES}) for r in rows
    ]


_IMAGE_COLUMNS = f"""r.name AS repository, s.digest, s.kind, {_STATE} AS shown_state,
       s.created_at, s.verification_passed, s.hardening -> 'summary' AS summary,
       coalesce((SELECT array_agg(t.name ORDER BY t.name) FROM tags t
                 WHERE t.repository_id = s.repository_id AND t.manifest_digest = s.digest),
                '{{}}') AS tags"""  # noqa: S608 (constant fragments)


def _image(row: asyncpg.Record) -> ImageRow:
    summary: Any = row["summary"]
    return ImageRow(
        row["repository"],
        row["digest"],
        row["kind"],
        row["shown_state"],
        list(row["tags"]),
        row["created_at"],
        row["verification_passed"],
        summary if isinstance(summary, dict) else None,
    )


def image_cursor(row: ImageRow) -> str:
    return f"{row.created_at.isoformat()}|{row.digest}"


def parse_image_cursor(raw: str | None) -> tuple[datetime, str] | None:
    if not raw or "|" not in raw:
        return None
    when, _, digest = raw.partition("|")
    try:
        return datetime.fromisoformat(when), digest
    except ValueError:
        return None


async def images(
    pool: asyncpg.Pool,
    repository: str,
    state: str | None,
    cursor: tuple[datetime, str] | None,
    limit: int,
) -> list[ImageRow]:
    """A repository's images and indexes, newest first, optionally in one state."""
    when, digest = cursor if cursor is not None else (None, "")
    rows = await pool.fetch(
        f"""SELECT {_IMAGE_COLUMNS}
            FROM image_status s JOIN repositories r ON r.id = s.repository_id
            WHERE r.name = $1 AND s.kind IN ('image', 'index')
              AND ($2::timestamptz IS NULL OR (s.created_at, s.digest) < ($2, $3))
              AND ($4::text IS NULL OR {_STATE} = $4)
            ORDER BY s.created_at DESC, s.digest DESC LIMIT $5""",  # noqa: S608
        repository,
        when,
        digest,
        state,
        limit,
    )
    return [_image(r) for r in rows]


@dataclass(frozen=True)
class Search:
    """What a query string asks for, decided by its form."""

    text: str
    by: str
    """digest, vulnerability, package (also matching repository names)"""

    @classmethod
    def of(cls, raw: str) -> Search:
        text = raw.strip()[:200]
        if _DIGEST.match(text.lower()):
            hexpart = text.lower().removeprefix("sha256:")
            return cls("sha256:" + hexpart, "digest")
        if _VULN_ID.match(text) and any(c.isdigit() for c in text):
            return cls(text.upper(), "vulnerability")
        return cls(text.lower(), "package")


def search_cursor(row: ImageRow, repository_id: int) -> str:
    return f"{repository_id}|{row.digest}"


async def search(
    pool: asyncpg.Pool,
    query: Search,
    visible: Sequence[str] | None,
    after: tuple[int, str],
    limit: int,
) -> list[tuple[int, ImageRow]]:
    """Images found by digest (prefix), vulnerability id or alias, or package name, in
    (repository id, digest) order after `after`; each with its repository id (the cursor)."""
    if query.by == "digest":
        source = """SELECT repository_id, digest FROM manifests
                    WHERE digest >= $1 AND digest < $1 || 'g' AND starts_with(digest, $1)
                      AND $5::text = 'digest'"""
        args: list[Any] = [query.text]
    else:
        source = """SELECT repository_id, digest FROM image_search_terms
                    WHERE kind = $5 AND term = $1"""
        args = [query.text]
    rows = await pool.fetch(
        f"""SELECT s.repository_id AS rid, {_IMAGE_COLUMNS}
            FROM ({source}) AS found
            JOIN image_status s ON s.repository_id = found.repository_id
                               AND s.digest = found.digest
            JOIN repositories r ON r.id = s.repository_id
            WHERE s.kind IN ('image', 'index') AND (s.repository_id, s.digest) > ($2, $3)
              AND {_visible("r.name", 4)}
            ORDER BY s.repository_id, s.digest LIMIT $6""",  # noqa: S608 (constant fragments)
        *args,
        after[0],
        after[1],
        _list(visible),
        query.by,
        limit,
    )
    return [(int(r["rid"]), _image(r)) for r in rows]


async def repositories_named(
    pool: asyncpg.Pool, text: str, visible: Sequence[str] | None, limit: int
) -> list[str]:
    """Repositories whose name contains `text` (the catalogue's name search)."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await pool.fetch(
        f"""SELECT r.name FROM repositories r
            WHERE r.name LIKE $1 AND {_visible("r.name", 2)}
            ORDER BY r.name LIMIT $3""",  # noqa: S608 (constant fragments)
        pattern,
        _list(visible),
        limit,
    )
    return [r["name"] for r in rows]

"""The queries that must not grow with the registry read an index in the order they
page in: checked on the plan, since an empty test database is fast either way."""

from __future__ import annotations

import asyncpg

from registry.db.manifests import IMAGE_PAGE, REFERRER_PAGE, TAG_PAGE
from registry.db.repositories import CATALOG_PAGE
from registry.gc import BLOB_CANDIDATES, LINK_CANDIDATES


async def plan(dsn: str, sql: str, types: str, args: str, *settings: str) -> str:
    """The generic plan (the one a prepared statement settles on, whatever its
    parameters) on a table as if too big to scan."""
    conn = await asyncpg.connect(dsn)
    try:
        for setting in ("enable_seqscan = off", *settings):
            await conn.execute(f"SET {setting}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE q({types}) AS {sql}")
        rows = await conn.fetch(f"EXPLAIN EXECUTE q({args})")
    finally:
        await conn.close()
    return "\n".join(r[0] for r in rows)


async def test_a_referrers_page_reads_the_index_in_digest_order(pg_dsn: str) -> None:
    found = await plan(
        pg_dsn, REFERRER_PAGE, "bigint, text, text, text, bigint", "1, 'x', NULL, NULL, 100"
    )
    assert "manifests_subject_digest" in found, found
    assert "Sort" not in found, found  # no sorting every referrer of the subject
    assert "Index Cond: ((repository_id = $1) AND (subject_digest = $2) AND (digest >" in found


async def test_tag_and_catalog_pages_start_at_last_in_the_index(pg_dsn: str) -> None:
    tags = await plan(pg_dsn, TAG_PAGE, "bigint, text, bigint", "1, 'v1', 100")
    assert "Index Cond: ((repository_id = $1) AND (name > COALESCE($2, ''::text)))" in tags, tags
    assert "Sort" not in tags, tags
    catalog = await plan(pg_dsn, CATALOG_PAGE, "text, bigint", "'a/b', 100")
    assert "Index Cond: (name > COALESCE($1, ''::text))" in catalog, catalog
    assert "Sort" not in catalog, catalog
    # Whether a listed repository holds a manifest: from the index of repository ids
    # alone, not the primary key with every digest.
    assert "Index Only Scan using manifests_repository on manifests m" in catalog, catalog


async def test_an_image_page_is_limited_before_its_tags_are_read(pg_dsn: str) -> None:
    found = await plan(pg_dsn, IMAGE_PAGE, "bigint, text, bigint", "1, NULL, 100")
    lines = [line.strip().split("  (")[0] for line in found.splitlines()]
    # The limit sits right on the primary key, not on every manifest after `after` joined
    # with all its tags ...
    page = lines.index("->  Limit")
    assert lines[page + 1 : page + 3] == [
        "->  Index Scan using manifests_pkey on manifests m",
        "Index Cond: ((repository_id = $1) AND (digest > COALESCE($2, ''::text)))",
    ], found
    # ... and the page's tags are one range of one index, read from the index alone.
    tags = next(i for i, line in enumerate(lines) if " on tags t" in line)
    assert lines[tags] == "->  Index Only Scan using tags_by_manifest on tags t", found
    # (the bounds are the page's first and last digest: InitPlans, printed as $n)
    assert lines[tags + 1].startswith(
        "Index Cond: ((repository_id = $1) AND (manifest_digest >= "
    ), found
    assert "AND (manifest_digest <= " in lines[tags + 1], found


async def test_deleting_a_blob_row_checks_its_references_through_an_index(pg_dsn: str) -> None:
    # What PostgreSQL runs for the foreign key manifest_blobs.blob_digest → blobs on every
    # blob row GC deletes (ri_triggers.c); without an index it reads all references.
    found = await plan(
        pg_dsn,
        "SELECT 1 FROM ONLY manifest_blobs x WHERE $1 OPERATOR(pg_catalog.=) blob_digest "
        "FOR KEY SHARE OF x",
        "text",
        "'sha256:x'",
    )
    assert "Index" in found and "manifest_blobs_digest" in found, found


def _unbounded_scans(found: str, table: str) -> list[str]:
    """The plan's scans of `table` that read it from its first row: no Index Cond."""
    lines = found.splitlines()
    scans = [i for i, line in enumerate(lines) if f" on {table} " in line]
    return [
        lines[i] for i in scans if not any("Index Cond" in line for line in lines[i + 1 : i + 3])
    ]


async def test_gc_batches_start_their_reference_checks_where_the_batch_starts(
    pg_dsn: str,
) -> None:
    # Each batch of the link and blob sweeps checks its candidates against the references
    # (an anti join): the references must be read from the batch's key on, not from the
    # first one, or the sweep grows with the square of the registry. The merge join is
    # what PostgreSQL chose at 1,000,000 blobs (an empty table gets a nested loop).
    merge = ("enable_nestloop = off", "enable_hashjoin = off")
    links = await plan(
        pg_dsn, LINK_CANDIDATES, "float8, bigint, text, bigint", "1, 5, 'x', 500", *merge
    )
    assert "Merge Anti Join" in links, links
    assert not _unbounded_scans(links, "manifest_blobs"), links
    blobs = await plan(pg_dsn, BLOB_CANDIDATES, "float8, text, bigint", "1, 'x', 500", *merge)
    assert "Merge Anti Join" in blobs, blobs
    assert not _unbounded_scans(blobs, "repository_blobs"), blobs

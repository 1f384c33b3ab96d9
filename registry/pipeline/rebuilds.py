"""The rebuild stage: rebuild a mirrored image from its source and compare, bit for bit.

Base images come from Zoll itself (any repository holding the pinned digest), so rebuilds
work air-gapped. A rebuilt image that differs is kept next to the mirrored one, under the
tag `sha256-<upstream hex>.rebuilt`, for auditors to compare; the signed rebuild
statement is attached by the attest stage; `rebuild: require` makes admission depend on a
reproduction. `rebuild: prefer` judges a differing rebuild like any image and, once it is
admitted, points the upstream's tags at it: the "sovereign copy", built by Zoll from the
declared source.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attest.intoto import Statement
from attest.rebuild import RecipeSpec, rebuild
from attest.slsa import PROVENANCE_TYPES
from attest.verify import trusted_statements
from registry.content import RegistryReader
from registry.db import manifests as manifest_rows
from registry.http.state import Registry
from registry.mirror.store import load_set
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import ContentReader, OCILayoutReader
from registry.pipeline import status
from registry.pipeline.jobs import RetryLater
from registry.pipeline.services import PipelineServices


class ZollBases:
    """`attest.rebuild.BaseResolver` over this registry: a base image is found by digest in
    whichever repository holds it (mirrored bases usually live under their own names)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def find(self, repository: str, digest: Digest) -> ContentReader | None:
        name = await self.registry.pool.fetchval(
            """SELECT r.name FROM manifests m JOIN repositories r ON r.id = m.repository_id
               WHERE m.digest = $1 ORDER BY r.name = $2 DESC, r.name LIMIT 1""",
            str(digest),
            repository,
        )
        return None if name is None else RegistryReader(self.registry, name)


def rebuilt_tag(upstream: Digest) -> str:
    return f"{upstream.algorithm}-{upstream.encoded}.rebuilt"


def upstream_tag(upstream: Digest) -> str:
    """Keeps the upstream image (evidence) once its tags point at the sovereign copy."""
    return f"{upstream.algorithm}-{upstream.encoded}.upstream"


async def _judge_sovereign_copy(
    svc: PipelineServices, repo: str, rebuilt: str, upstream: str
) -> None:
    """`rebuild: prefer`: the rebuilt image goes through the pipeline itself (verification
    inherited from the upstream it was rebuilt from; no rebuild of the rebuild)."""
    from registry.pipeline.stages import enqueue  # stages imports this module lazily too

    origin = {"rebuilt_from": upstream, "rebuilt_at": datetime.now(UTC).isoformat()}
    await status.update(svc.registry.pool, repo, rebuilt, origin=origin)
    await enqueue(svc, "verify", repo, rebuilt)


async def prefer_sovereign_copy(
    svc: PipelineServices, repo: str, rebuilt: str, upstream: str
) -> list[str]:
    """Point the upstream image's tags at its admitted rebuild; return the tags moved.
    The upstream image keeps a tag of its own, so it stays as evidence (and out of GC)."""
    pool = svc.registry.pool
    tags = [
        r["name"]
        for r in await pool.fetch(
            """SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
               WHERE r.name = $1 AND t.manifest_digest = $2 AND t.name NOT LIKE 'sha256-%'""",
            repo,
            upstream,
        )
    ]
    moves = [(upstream, [upstream_tag(Digest.parse(upstream))]), (rebuilt, tags)]
    for digest, names in moves:
        stored = await manifest_rows.get(pool, repo, digest, by_digest=True)
        if stored is None:
            raise RetryLater(f"{repo}@{digest} is not stored", delay=5)
        manifest = parse_manifest(stored.content, stored.media_type)
        missing = await manifest_rows.put(pool, repo, manifest, names)
        if missing:
            raise RetryLater(f"{repo}@{digest} lost content: {missing[0].digest}", delay=5)
    return tags


async def _recipe(svc: PipelineServices, row: Any) -> RecipeSpec | None:
    """The mirror set's explicit recipe for this image, if it came from one."""
    origin = row["origin"] or {}
    if not origin.get("mirror_set"):
        return None
    try:
        entry = (await load_set(svc.registry.pool, origin["mirror_set"])).entry(origin["entry"])
    except KeyError:
        return None
    if entry.rebuild is None:
        return None
    return RecipeSpec.from_mapping(entry.rebuild)


async def _provenance(svc: PipelineServices, repo: str, digest: str) -> list[Statement]:
    """The image's SLSA provenance, where a signer the repository's trust policy knows
    signed it: the recipe of an image that came without one (pushed, or replicated from
    a peer node). A wrong recipe cannot make a rebuild pass: only identical bytes do."""
    policy = svc.trust_policies.for_repository(repo) if svc.trust_policies else None
    if policy is None:
        return []
    reader = RegistryReader(svc.registry, repo)
    return await trusted_statements(
        reader, Digest.parse(digest), policy, await svc.trust_material(), PROVENANCE_TYPES
    )


async def run_rebuild(
    svc: PipelineServices, repo: str, digest: str, row: Any
) -> tuple[str, dict[str, Any]]:
    work = svc.config.data_dir / "rebuild"
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    recipe = await _recipe(svc, row)
    provenance = await _provenance(svc, repo, digest)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        result = await rebuild(
            RegistryReader(svc.registry, repo),
            digest,
            bases=ZollBases(svc.registry),
            recipe=recipe,
            provenance=provenance,
            output=Path(tmp) / "rebuilt",
            scratch=work,
        )
        if result.outcome == "differs" and result.layout is not None and result.upstream:
            copied = await svc.copier.manifest(
                OCILayoutReader(result.layout),
                repo,
                "rebuilt",
                tags=[rebuilt_tag(result.upstream)],
                attachments=False,
                external=False,
            )
            if svc.config.namespace(repo).rebuild == "prefer":
                await _judge_sovereign_copy(svc, repo, str(copied.digest), digest)
    statement = None
    if result.upstream is not None:
        statement = result.statement(image=repo, rebuilder=svc.verifier)
    document = {"result": result.to_json(), "statement": statement}
    await status.update(svc.registry.pool, repo, digest, rebuild=document)
    detail: dict[str, Any] = {"outcome": result.outcome, "rebuilt": str(result.rebuilt or "")}
    if result.reason is not None:
        detail["reason"] = str(result.reason)
        detail["message"] = result.message
    return result.outcome, detail


async def keep_sovereign_copy(svc: PipelineServices, repo: str, upstream: str) -> list[str]:
    """A mirror run re-points the upstream's tags at the upstream image; where an admitted
    rebuild of that very image exists, they go back to it at once (returns tags moved)."""
    rebuilt = await svc.registry.pool.fetchval(
        """SELECT s.digest FROM image_status s JOIN repositories r ON r.id = s.repository_id
           WHERE r.name = $1 AND s.origin->>'rebuilt_from' = $2 AND s.state = 'admitted'
           ORDER BY s.updated_at DESC LIMIT 1""",
        repo,
        upstream,
    )
    if rebuilt is None:
        return []
    return await prefer_sovereign_copy(svc, repo, rebuilt, upstream)

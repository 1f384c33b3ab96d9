"""Replicating an image a peer admitted: content and attachments over `/v2`, then this
node's own pipeline judges it.

The image (with its index children) and every OCI 1.1 referrer are copied by digest. The
cosign tags (`sha256-<hex>.att`, `.sig`) are merged, not overwritten: the peer is the
authority on the layers its own keys signed, this node keeps everything else (its own
statements, a third party's). Tags follow the peer's admission record; a tag this node
already points elsewhere is kept, and the disagreement is recorded and shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from attest.artifacts import ArtifactError, merge_cosign_manifest
from attest.cosign import discover
from registry.content import RegistryReader, store_blobs, store_manifest, store_manifests
from registry.db import manifests as manifest_rows
from registry.federation import peers as peer_rows
from registry.federation.peers import Peer
from registry.logs import get_logger
from registry.mirror.copy import CopyResult
from registry.oci.client.errors import AccessDenied, AuthenticationError, NotFoundError
from registry.oci.digest import Digest
from registry.oci.manifest import parse_manifest
from registry.oci.reader import ContentNotFound, ContentReader
from registry.pipeline import status
from registry.pipeline.jobs import Job, Permanent
from registry.pipeline.runner import job_handler
from registry.pipeline.services import PipelineServices
from registry.pipeline.stages import enqueue

log = get_logger("zoll.federation")


class PeerGone(Permanent):
    """The job names a peer that is no longer pinned."""


class PeerRefused(Permanent):
    """The peer refuses or no longer has what its log named."""


def source_of(svc: PipelineServices, peer: Peer, repository: str) -> ContentReader:
    return svc.upstreams.open(
        f"{peer.registry_host}/{repository}", insecure=peer.insecure, credentials=peer.credentials
    )


@job_handler("federation-replicate")
async def replicate(svc: PipelineServices, job: Job) -> dict[str, Any]:
    pool = svc.registry.pool
    try:
        peer = await peer_rows.peer(pool, svc.config, job.payload["peer"])
    except peer_rows.PeerError as exc:
        raise PeerGone(str(exc)) from None
    repository, digest = job.payload["repository"], job.payload["digest"]
    present = await status.get(pool, repository, digest) is not None
    if job.payload.get("only_if_present") and not present:
        return {"skipped": "not held here"}
    source = source_of(svc, peer, repository)
    try:
        fetched = 0
        if not present:  # what is here is content-addressed: only its attachments change
            result = await svc.copier.manifest(source, repository, digest, attachments=False)
            fetched = result.bytes_fetched
        attachments = await _attachments(svc, peer, source, repository, Digest.parse(digest))
    except (AccessDenied, AuthenticationError, NotFoundError) as exc:
        # The peer does not serve it (any more): quarantined there since, deleted, or
        # our credentials do not reach it. Retrying will not change that.
        raise PeerRefused(f"{peer.name} does not serve {repository}@{digest}: {exc}") from exc
    disagreements = await _tags(svc, peer, repository, digest, job.payload.get("tags") or [])
    await status.update(
        pool,
        repository,
        digest,
        origin={
            "federated_from": peer.name,
            "peer_url": peer.url,
            "replicated_at": datetime.now(UTC).isoformat(),
        },
    )
    await enqueue(svc, "verify", repository, digest)  # judged here, whatever the peer said
    return {
        "digest": digest,
        "bytes_fetched": fetched,
        "attachments": attachments,
        "tag_disagreements": disagreements,
    }


async def _attachments(
    svc: PipelineServices, peer: Peer, source: ContentReader, repository: str, subject: Digest
) -> list[str]:
    copied = []
    keyids = {k.keyid for k in peer.keys}
    local = RegistryReader(svc.registry, repository)
    for attached in await discover(source, subject):
        if attached.tag is None:
            await svc.copier.manifest(
                source,
                repository,
                str(attached.digest),
                attachments=False,
                result=CopyResult(attached.digest),
            )
            copied.append(str(attached.digest))
            continue
        fetched = await source.get_manifest(attached.tag)
        incoming = parse_manifest(fetched.raw, fetched.media_type)
        await svc.copier.blobs(
            source, repository, incoming.blob_references(), CopyResult(fetched.digest)
        )
        try:
            existing: bytes | None = (await local.get_manifest(attached.tag)).raw
        except ContentNotFound:
            existing = None
        try:
            merged = merge_cosign_manifest(existing, fetched.raw, keyids, attached.tag)
        except ArtifactError as exc:
            log.warning("attachment not merged", tag=attached.tag, error=str(exc))
            continue
        await store_blobs(svc.registry, repository, [b.data for b in merged.blobs])
        await store_manifests(
            svc.registry,
            repository,
            [(parse_manifest(merged.raw, merged.media_type), [attached.tag])],
        )
        copied.append(attached.tag)
    return copied


async def _tags(
    svc: PipelineServices, peer: Peer, repository: str, digest: str, tags: list[str]
) -> list[dict[str, str]]:
    pool = svc.registry.pool
    disagreements = []
    for tag in tags:
        here = await manifest_rows.get(pool, repository, tag, by_digest=False)
        await pool.execute(
            """INSERT INTO federation_tags (repository, tag, node, digest) VALUES ($1, $2, $3, $4)
               ON CONFLICT (repository, tag, node) DO UPDATE SET digest = $4, seen_at = now()""",
            repository,
            tag,
            peer.name,
            digest,
        )
        if here is None:
            stored = await manifest_rows.get(pool, repository, digest, by_digest=True)
            assert stored is not None
            manifest = parse_manifest(bytes(stored.content), stored.media_type)
            await store_manifest(svc.registry, repository, manifest, [tag])
        elif str(here.digest) != digest:
            disagreements.append({"tag": tag, "here": str(here.digest), peer.name: digest})
            log.warning(
                "peers disagree about a tag",
                repository=repository,
                tag=tag,
                here=str(here.digest),
                peer=peer.name,
                peer_digest=digest,
            )
    return disagreements

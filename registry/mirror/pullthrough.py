"""Pull-through cache: the first pull of a missing image under a configured prefix fetches
it from its upstream, with its signatures and attestations, then it goes through the same
pipeline as every mirrored image (in an enforced namespace it is served once admitted).

`mirror/docker.io/library/nginx:1.27` with the rule `{prefix: "mirror/docker.io/",
upstream: docker.io}` is fetched from `docker.io/library/nginx:1.27`. Concurrent pulls of
the same reference share one fetch, and blobs are fetched once (the mirror's copier).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from registry.config import PullThroughRule
from registry.oci.digest import is_digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.reader import ContentCorrupt, ContentNotFound
from registry.pipeline import status
from registry.pipeline.services import PipelineServices

log = structlog.get_logger("zoll.pullthrough")
_INFLIGHT: dict[tuple[str, str], asyncio.Future[bool]] = {}


async def fetch(
    svc: PipelineServices, rule: PullThroughRule, repository: str, reference: str
) -> bool:
    """Copy `repository:reference` from upstream; False if the upstream has no such image."""
    key = (repository, reference)
    pending = _INFLIGHT.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    _INFLIGHT[key] = future
    try:
        found = await _fetch(svc, rule, repository, reference)
        future.set_result(found)
        return found
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()
        raise
    finally:
        _INFLIGHT.pop(key, None)


async def _fetch(
    svc: PipelineServices, rule: PullThroughRule, repository: str, reference: str
) -> bool:
    source = f"{rule.upstream}/{repository[len(rule.prefix) :]}"
    reader = svc.upstreams.open(source, insecure=rule.insecure, credentials=rule.credentials)
    tags = [] if is_digest(reference) else [reference]
    try:
        result = await svc.copier.manifest(reader, repository, reference, tags=tags)
    except ContentNotFound:
        return False
    except ContentCorrupt as exc:
        log.warning("upstream content refused", source=source, reference=reference, error=str(exc))
        raise RegistryError(
            ErrorCode.UNAVAILABLE, f"upstream {source} served content that failed verification"
        ) from exc
    origin = {
        "pull_through": rule.prefix,
        "source": source,
        "reference": reference,
        "mirrored_at": datetime.now(UTC).isoformat(),
    }
    await status.update(svc.registry.pool, repository, str(result.digest), origin=origin)
    log.info(
        "pulled through",
        source=source,
        reference=reference,
        digest=str(result.digest),
        bytes=result.bytes_fetched,
    )
    return True

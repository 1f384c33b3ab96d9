"""Pull-through cache: the first pull of a missing image under a configured prefix fetches
it from its upstream, with its signatures and attestations, then it goes through the same
pipeline as every mirrored image (in an enforced namespace it is served once admitted).

`mirror/docker.io/library/nginx:1.27` with the rule `{prefix: "mirror/docker.io/",
upstream: docker.io}` is fetched from `docker.io/library/nginx:1.27`. Concurrent pulls of
the same reference share one fetch, and blobs are fetched once (the mirror's copier).

A cached tag is served for `tag_ttl` seconds; after that the next pull asks the upstream
(one HEAD) whether the tag moved, and fetches the new image if it did. What a worker
process last learned is kept in memory, per process.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from registry.config import PullThroughRule
from registry.logs import get_logger
from registry.oci.client import RemoteReader
from registry.oci.digest import Digest, is_digest
from registry.oci.errors import ErrorCode, RegistryError
from registry.oci.reader import ContentCorrupt, ContentNotFound
from registry.pipeline import status
from registry.pipeline.services import PipelineServices

log = get_logger("zoll.pullthrough")
_INFLIGHT: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
_CHECKED: OrderedDict[tuple[str, str], float] = OrderedDict()
"""When this process last learned where each pulled-through tag points upstream."""
MAX_REMEMBERED = 10_000


async def fetch(
    svc: PipelineServices, rule: PullThroughRule, repository: str, reference: str
) -> bool:
    """Copy `repository:reference` from upstream; False if the upstream has no such image."""
    return await _once(
        ("fetch", repository, reference), lambda: _fetch(svc, rule, repository, reference)
    )


def due(rule: PullThroughRule, repository: str, tag: str) -> bool:
    """Whether a cached tag is old enough (`tag_ttl`) to ask the upstream again."""
    checked = _CHECKED.get((repository, tag))
    return checked is None or time.monotonic() - checked >= rule.tag_ttl


async def revalidate(
    svc: PipelineServices, rule: PullThroughRule, repository: str, tag: str, known: Digest
) -> bool:
    """Ask the upstream where `tag` points now; fetch the image if it moved. True when the
    tag was moved here; False when it stands (or the upstream cannot say: then the cached
    image is served, as a cache should when its origin is down)."""
    return await _once(
        ("check", repository, tag), lambda: _revalidate(svc, rule, repository, tag, known)
    )


async def _once(key: tuple[str, str, str], work: Callable[[], Awaitable[bool]]) -> bool:
    """Concurrent pulls of the same reference share one upstream round trip."""
    pending = _INFLIGHT.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    _INFLIGHT[key] = future
    try:
        found = await work()
        future.set_result(found)
        return found
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()
        raise
    finally:
        _INFLIGHT.pop(key, None)


def _remember(repository: str, tag: str) -> None:
    _CHECKED[(repository, tag)] = time.monotonic()
    _CHECKED.move_to_end((repository, tag))
    while len(_CHECKED) > MAX_REMEMBERED:
        _CHECKED.popitem(last=False)


async def _revalidate(
    svc: PipelineServices, rule: PullThroughRule, repository: str, tag: str, known: Digest
) -> bool:
    source = f"{rule.upstream}/{repository[len(rule.prefix) :]}"
    reader = svc.upstreams.open(source, insecure=rule.insecure, credentials=rule.credentials)
    _remember(repository, tag)  # whatever the answer, the next `tag_ttl` pulls do not ask
    try:
        if isinstance(reader, RemoteReader):
            current = (await reader.repository.resolve(tag)).digest  # HEAD
        else:
            current = (await reader.get_manifest(tag)).digest
    except ContentNotFound:
        return False  # gone upstream: keep serving what was pulled
    except Exception as exc:  # unreachable, 5xx, auth: serve the cached tag
        log.warning("upstream not asked", source=source, tag=tag, error=str(exc))
        return False
    if current == known:
        return False
    log.info("upstream tag moved", source=source, tag=tag, cached=str(known), now=str(current))
    return await _fetch(svc, rule, repository, tag)


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
    if not is_digest(reference):
        _remember(repository, reference)
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

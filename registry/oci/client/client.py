"""The upstream OCI client: pull, list and push against any distribution-spec registry.

`RegistryClient` holds the configuration, credentials, token cache and HTTP session for
all registries; `RemoteRepository` is one repository on one of them. Everything fetched is
verified: manifests by digest (a tag fetch reports the digest of the bytes it got, and
refuses bytes that disagree with the registry's `Docker-Content-Digest`), blobs always.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote

import aiohttp
from yarl import URL

from registry.oci import mediatypes as mt
from registry.oci.client import scopes as sc
from registry.oci.client.blobs import download_blob, stream_blob
from registry.oci.client.credentials import CredentialStore, RegistryConfig
from registry.oci.client.errors import (
    DigestMismatch,
    NotFoundError,
    ProtocolError,
    SizeExceeded,
    UnsupportedManifestError,
)
from registry.oci.client.retry import RetryPolicy
from registry.oci.client.scopes import Scope
from registry.oci.client.transport import (
    USER_AGENT,
    Directory,
    Limits,
    Transport,
    api_host,
    raise_for_response,
    read_limited,
)
from registry.oci.client.uploads import BlobSource, PushedBlob, push_blob
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest, DigestError, is_digest
from registry.oci.manifest import ManifestError, parse_manifest
from registry.oci.reader import FetchedManifest
from registry.oci.reference import Reference

MANIFEST_TYPES: Final = (mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST)
"""What we accept for manifests (never Docker schema 1)."""


@dataclass(frozen=True, slots=True)
class Referrers:
    """Manifests referring to a subject, and how they were found: the OCI 1.1 referrers
    API (`api`) or the `<alg>-<hex>` tag index of registries without it (`tag`)."""

    descriptors: tuple[Descriptor, ...]
    source: Literal["api", "tag"]


def referrers_tag(subject: Digest) -> str:
    """The fallback tag of the referrers tag scheme (`sha256-<hex>`)."""
    return f"{subject.algorithm}-{subject.encoded}"


def _digest_header(resp: aiohttp.ClientResponse) -> Digest | None:
    header = resp.headers.get("Docker-Content-Digest")
    if header is None:
        return None
    try:
        return Digest.parse(header.strip())
    except DigestError as exc:
        raise ProtocolError(f"{resp.url}: invalid Docker-Content-Digest {header!r}") from exc


def _manifest_media_type(raw: bytes, content_type: str | None) -> str:
    """The manifest's type from Content-Type, or from the body for `application/json`."""
    header = mt.base(content_type) if content_type else ""
    if header in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifestError("the registry returned a Docker schema 1 manifest")
    if header in mt.MANIFESTS:
        return header
    try:
        return parse_manifest(raw).media_type
    except ManifestError as exc:
        raise UnsupportedManifestError(
            f"response of type {header or 'unknown'} is not a supported manifest: {exc}"
        ) from exc


class RemoteRepository:
    """One repository on one registry (`registry` is the API host, e.g.
    registry-1.docker.io)."""

    def __init__(self, transport: Transport, registry: str, name: str) -> None:
        self.transport = transport
        self.registry = api_host(registry)
        self.name = name

    def __repr__(self) -> str:
        return f"RemoteRepository({self.registry}/{self.name})"

    def _request(
        self,
        method: str,
        target: str | URL,
        scopes: Sequence[Scope],
        **kwargs: Any,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.transport.request(
            method, self.registry, target, repository=self.name, scopes=scopes, **kwargs
        )

    # --- manifests -------------------------------------------------------------------

    async def resolve(self, reference: str) -> Descriptor:
        """Tag or digest → descriptor (digest, media type, size), by HEAD (cheap, and not
        counted by Docker Hub's pull limit), falling back to GET when HEAD says too little."""
        expected: Digest | None = None
        if is_digest(reference):
            try:
                expected = Digest.parse(reference)
            except DigestError as exc:
                raise NotFoundError("HEAD", reference, 404, note=str(exc)) from exc
        async with self._request(
            "HEAD",
            f"/v2/{self.name}/manifests/{reference}",
            [sc.pull(self.name)],
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        ) as resp:
            if resp.status in (401, 403, 404):
                await raise_for_response(resp, "HEAD")
            content_type = mt.base(resp.headers.get("Content-Type", ""))
            announced = _digest_header(resp) if resp.status == 200 else None
            if expected is not None and announced is None and resp.status == 200:
                announced = expected
            if (
                announced is not None
                and content_type in mt.MANIFESTS
                and resp.content_length is not None
            ):
                if expected is not None and announced != expected:
                    raise DigestMismatch(f"manifest {reference}", expected, announced)
                return Descriptor(content_type, announced, resp.content_length)
        fetched = await self.get_manifest(reference)
        return Descriptor(fetched.media_type, fetched.digest, len(fetched.raw))

    async def get_manifest(
        self, reference: str, *, accept: Sequence[str] = MANIFEST_TYPES
    ) -> FetchedManifest:
        """A manifest by tag or digest, verified; at most `limits.max_manifest_bytes`."""
        expected: Digest | None = None
        if is_digest(reference):
            try:
                expected = Digest.parse(reference)
            except DigestError as exc:
                raise NotFoundError("GET", reference, 404, note=str(exc)) from exc
        async with self._request(
            "GET",
            f"/v2/{self.name}/manifests/{reference}",
            [sc.pull(self.name)],
            headers={"Accept": ", ".join(accept)},
        ) as resp:
            if resp.status != 200:
                await raise_for_response(resp, "GET")
            raw = await read_limited(
                resp, self.transport.limits.max_manifest_bytes, f"manifest {reference}"
            )
            announced = _digest_header(resp)
            content_type = resp.headers.get("Content-Type")
        media_type = _manifest_media_type(raw, content_type)
        if expected is not None:
            actual = Digest.of(raw, expected.algorithm)
            if actual != expected:
                raise DigestMismatch(f"manifest {reference}", expected, actual)
            return FetchedManifest(expected, media_type, raw)
        algorithm = announced.algorithm if announced is not None else "sha256"
        actual = Digest.of(raw, algorithm)
        if announced is not None and actual != announced:
            raise DigestMismatch(f"manifest {self.name}:{reference}", announced, actual)
        return FetchedManifest(actual, media_type, raw)

    async def put_manifest(
        self,
        raw: bytes,
        media_type: str,
        reference: str | None = None,
        *,
        referrers_fallback: bool = True,
    ) -> Digest:
        """Push a manifest under a tag (or only by digest); returns its digest.

        A manifest with a `subject` pushed to a registry without the referrers API (no
        `OCI-Subject` in the answer) is added to the subject's `sha256-<hex>` tag index, as
        the distribution spec asks clients to do.
        """
        if len(raw) > self.transport.limits.max_manifest_bytes:
            raise SizeExceeded("manifest", self.transport.limits.max_manifest_bytes, len(raw))
        digest = Digest.of(raw)
        async with self._request(
            "PUT",
            f"/v2/{self.name}/manifests/{reference or digest}",
            [sc.push(self.name)],
            headers={"Content-Type": media_type},
            body=raw,
        ) as resp:
            if resp.status not in (200, 201, 202, 204):
                await raise_for_response(resp, "PUT")
            announced = _digest_header(resp)
            if announced is not None and Digest.of(raw, announced.algorithm) != announced:
                raise DigestMismatch("pushed manifest", digest, announced)
            registry_tracks_subject = "OCI-Subject" in resp.headers
        if referrers_fallback and not registry_tracks_subject:
            await self._index_referrer(raw, media_type, digest)
        return digest

    async def _index_referrer(self, raw: bytes, media_type: str, digest: Digest) -> None:
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestError:
            return
        if manifest.subject is None:
            return
        entry = Descriptor(
            manifest.media_type,
            digest,
            len(raw),
            dict(manifest.annotations),
            manifest.effective_artifact_type,
        ).to_json()
        tag = referrers_tag(manifest.subject.digest)
        try:
            existing = await self.get_manifest(tag, accept=[mt.OCI_INDEX])
            index: dict[str, Any] = json.loads(existing.raw)
        except NotFoundError:
            index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        entries = index.setdefault("manifests", [])
        if any(isinstance(e, dict) and e.get("digest") == str(digest) for e in entries):
            return
        entries.append(entry)
        body = json.dumps(index, separators=(",", ":")).encode()
        await self.put_manifest(body, mt.OCI_INDEX, tag, referrers_fallback=False)

    async def delete_manifest(self, digest: Digest) -> None:
        async with self._request(
            "DELETE", f"/v2/{self.name}/manifests/{digest}", [sc.delete(self.name)]
        ) as resp:
            if resp.status not in (200, 202, 204):
                await raise_for_response(resp, "DELETE")

    # --- blobs -----------------------------------------------------------------------

    async def stat_blob(self, digest: Digest) -> int | None:
        """The blob's size if the repository has it, else None."""
        async with self._request(
            "HEAD", f"/v2/{self.name}/blobs/{digest}", [sc.pull(self.name)]
        ) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                await raise_for_response(resp, "HEAD")
            return resp.content_length or 0

    def open_blob(self, digest: Digest, *, size: int | None = None) -> AsyncIterator[bytes]:
        """Stream a blob (resuming after drops); raises `DigestMismatch` at the end if
        the bytes are wrong, so consumers must treat output as unverified until then."""
        return stream_blob(self.transport, self.registry, self.name, digest, size=size)

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        """A small blob whole (config, signature), verified, at most `max_bytes`."""
        buf = bytearray()
        async for chunk in self.open_blob(digest):
            buf += chunk
            if len(buf) > max_bytes:
                raise SizeExceeded(f"blob {digest}", max_bytes)
        return bytes(buf)

    async def download_blob(
        self, digest: Digest, destination: Path, *, size: int | None = None
    ) -> int:
        """Write a blob to a file that appears only once its digest is verified."""
        return await download_blob(
            self.transport, self.registry, self.name, digest, destination, size=size
        )

    async def push_blob(
        self,
        source: BlobSource,
        digest: Digest,
        size: int,
        *,
        chunk_size: int | None = None,
        mount_from: Sequence[str] = (),
        check_existing: bool = True,
    ) -> PushedBlob:
        """Upload a blob (monolithic, or chunked with `chunk_size`), or mount it from
        another repository of the same registry, or skip it when it exists."""
        return await push_blob(
            self.transport,
            self.registry,
            self.name,
            source,
            digest,
            size,
            chunk_size=chunk_size,
            mount_from=mount_from,
            check_existing=check_existing,
        )

    # --- listings --------------------------------------------------------------------

    async def tags(self, *, page_size: int | None = None) -> list[str]:
        """All tags, following `Link: <…>; rel="next"` pagination."""
        query = f"?n={page_size}" if page_size else ""
        return await _paged(
            self.transport,
            self.registry,
            f"/v2/{self.name}/tags/list{query}",
            "tags",
            repository=self.name,
            scopes=[sc.pull(self.name)],
        )

    async def referrers(self, subject: Digest, artifact_type: str | None = None) -> Referrers:
        """Manifests whose `subject` is `subject`: the referrers API, or the tag scheme
        when the registry answers 404 to it (distribution 2.8, older registries)."""
        target = f"/v2/{self.name}/referrers/{subject}"
        if artifact_type:
            target += f"?artifactType={quote(artifact_type, safe='')}"
        found: list[Descriptor] = []
        pages = 0
        filtered = False
        next_target: str | URL | None = target
        while next_target is not None:
            pages += 1
            if pages > self.transport.limits.max_pages:
                raise ProtocolError(f"{self.name}: referrers pagination does not end")
            async with self._request(
                "GET", next_target, [sc.pull(self.name)], headers={"Accept": mt.OCI_INDEX}
            ) as resp:
                if resp.status == 404 and pages == 1:
                    return await self._referrers_by_tag(subject, artifact_type)
                if resp.status != 200:
                    await raise_for_response(resp, "GET")
                raw = await read_limited(resp, self.transport.limits.max_list_bytes, "referrers")
                filtered = filtered or "artifactType" in resp.headers.get("OCI-Filters-Applied", "")
                next_target = _next_link(resp)
            try:
                found.extend(parse_manifest(raw, mt.OCI_INDEX).manifests)
            except ManifestError as exc:
                raise ProtocolError(f"{self.name}: referrers response is no index: {exc}") from exc
        if artifact_type and not filtered:
            found = [d for d in found if d.artifact_type == artifact_type]
        return Referrers(tuple(found), "api")

    async def _referrers_by_tag(self, subject: Digest, artifact_type: str | None) -> Referrers:
        try:
            fetched = await self.get_manifest(referrers_tag(subject), accept=[mt.OCI_INDEX])
            index = parse_manifest(fetched.raw, fetched.media_type)
        except NotFoundError:
            return Referrers((), "tag")
        except ManifestError as exc:
            raise ProtocolError(f"{self.name}: referrers tag is no index: {exc}") from exc
        found = [
            d for d in index.manifests if artifact_type is None or d.artifact_type == artifact_type
        ]
        return Referrers(tuple(found), "tag")


def _next_link(resp: aiohttp.ClientResponse) -> URL | None:
    link = resp.links.get("next")
    if link is None:
        return None
    url = link.get("url")
    return url if isinstance(url, URL) else None


async def _paged(
    transport: Transport,
    host: str,
    first: str,
    key: str,
    *,
    repository: str | None,
    scopes: Sequence[Scope],
) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    target: str | URL | None = first
    while target is not None:
        if len(seen) >= transport.limits.max_pages:
            raise ProtocolError(f"{first}: pagination does not end")
        seen.add(str(target))
        async with transport.request(
            "GET", host, target, repository=repository, scopes=scopes
        ) as resp:
            if resp.status != 200:
                await raise_for_response(resp, "GET")
            raw = await read_limited(resp, transport.limits.max_list_bytes, f"{key} list")
            target = _next_link(resp)
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{first}: {key} list is not JSON") from exc
        items = document.get(key) if isinstance(document, dict) else None
        items = [] if items is None else items
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ProtocolError(f"{first}: `{key}` must be a list of strings")
        out.extend(items)
        if target is not None and str(target) in seen:
            raise ProtocolError(f"{first}: pagination repeats {target}")
    return out


class RegistryClient:
    """Client for any number of registries; create once, share, `aclose()` at the end."""

    def __init__(
        self,
        registries: Iterable[RegistryConfig] = (),
        *,
        credentials: CredentialStore | None = None,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
        user_agent: str = USER_AGENT,
        trust_env: bool = False,
    ) -> None:
        self.transport = Transport(
            Directory(registries, credentials),
            retry=retry or RetryPolicy(),
            limits=limits or Limits(),
            user_agent=user_agent,
            trust_env=trust_env,
        )

    def repository(self, registry: str, name: str) -> RemoteRepository:
        return RemoteRepository(self.transport, registry, name)

    def for_reference(self, reference: Reference | str) -> tuple[RemoteRepository, str]:
        """The repository of an image reference (`nginx` → registry-1.docker.io/
        library/nginx) and the tag or digest to ask it for."""
        ref = Reference.parse(reference) if isinstance(reference, str) else reference
        return self.repository(ref.api_host, ref.name), ref.reference

    async def catalog(self, registry: str, *, page_size: int | None = None) -> list[str]:
        """Every repository name the registry lists (`/v2/_catalog`, paginated)."""
        query = f"?n={page_size}" if page_size else ""
        return await _paged(
            self.transport,
            api_host(registry),
            f"/v2/_catalog{query}",
            "repositories",
            repository=None,
            scopes=[sc.CATALOG],
        )

    @property
    def token_fetches(self) -> int:
        """Tokens fetched from token servers so far (cache effectiveness)."""
        return self.transport.auth.fetches

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

"""A `ContentReader` over one remote repository, so attest and policy can verify or
analyse an image where it lives, with the same code that reads a layout directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

from registry.oci.client.client import RegistryClient, RemoteRepository
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.reader import FetchedManifest


class RemoteReader:
    """`registry.oci.reader.ContentReader` for `repository`.

    Missing content raises `ContentNotFound` (`NotFoundError`), wrong content
    `ContentCorrupt` (`DigestMismatch`, `SizeExceeded`); network and registry failures
    raise the client's other `ClientError`s, never a false "not found".
    """

    def __init__(self, repository: RemoteRepository, *, owner: RegistryClient | None = None):
        self.repository = repository
        self._owner = owner

    @classmethod
    def open(cls, client: RegistryClient, registry: str, name: str) -> RemoteReader:
        return cls(client.repository(registry, name))

    async def get_manifest(self, reference: str) -> FetchedManifest:
        return await self.repository.get_manifest(reference)

    def open_blob(self, digest: Digest) -> AsyncIterator[bytes]:
        return self.repository.open_blob(digest)

    async def read_blob(self, digest: Digest, max_bytes: int) -> bytes:
        return await self.repository.read_blob(digest, max_bytes)

    async def referrers(
        self, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        return list((await self.repository.referrers(subject, artifact_type)).descriptors)

    async def tags(self) -> list[str]:
        return await self.repository.tags()

    async def aclose(self) -> None:
        """Close the client when this reader owns it (the CLI's one-shot readers do)."""
        if self._owner is not None:
            await self._owner.aclose()

    async def __aenter__(self) -> RemoteReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

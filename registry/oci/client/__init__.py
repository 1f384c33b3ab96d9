"""Zoll's client for upstream OCI registries (pull, push, list, referrers).

    async with RegistryClient([RegistryConfig("ghcr.io", Credentials("u", "p"))]) as client:
        repo, ref = client.for_reference("ghcr.io/org/app:1.0")
        desc = await repo.resolve(ref)
        fetched = await repo.get_manifest(str(desc.digest))
        async for chunk in repo.open_blob(layer.digest): ...

It imports nothing of the project outside `registry.oci`, so attest and policy can use
`RemoteReader` to verify and analyse images directly in a registry.
"""

from registry.oci.client.challenge import Challenge, parse_challenges
from registry.oci.client.client import (
    MANIFEST_TYPES,
    Referrers,
    RegistryClient,
    RemoteRepository,
    referrers_tag,
)
from registry.oci.client.credentials import (
    AuthFileError,
    Credentials,
    CredentialStore,
    RegistryConfig,
    default_auth_files,
)
from registry.oci.client.errors import (
    AccessDenied,
    AuthenticationError,
    ClientError,
    DigestMismatch,
    NotFoundError,
    ProtocolError,
    RegistryResponseError,
    SizeExceeded,
    SizeMismatch,
    TokenError,
    TransportError,
    UnavailableError,
    UnknownHost,
    UnsupportedManifestError,
)
from registry.oci.client.remote_reader import RemoteReader
from registry.oci.client.retry import RetryPolicy, parse_retry_after
from registry.oci.client.scopes import Scope
from registry.oci.client.transport import Limits, api_host
from registry.oci.client.uploads import BlobOpener, BlobSource, PushedBlob

__all__ = [
    "MANIFEST_TYPES",
    "AccessDenied",
    "AuthFileError",
    "AuthenticationError",
    "BlobOpener",
    "BlobSource",
    "Challenge",
    "ClientError",
    "CredentialStore",
    "Credentials",
    "DigestMismatch",
    "Limits",
    "NotFoundError",
    "ProtocolError",
    "PushedBlob",
    "Referrers",
    "RegistryClient",
    "RegistryConfig",
    "RegistryResponseError",
    "RemoteReader",
    "RemoteRepository",
    "RetryPolicy",
    "Scope",
    "SizeExceeded",
    "SizeMismatch",
    "TokenError",
    "TransportError",
    "UnavailableError",
    "UnknownHost",
    "UnsupportedManifestError",
    "api_host",
    "default_auth_files",
    "parse_challenges",
    "parse_retry_after",
    "referrers_tag",
]

"""Open the upstream of a mirror entry as a `ContentReader`.

Remote upstreams share one `RegistryClient` per host and credentials, so mirror jobs
reuse connections and bearer tokens. Secrets come from the environment (or an auth.json
file), never from the mirror set.
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.config import UpstreamCredentials
from registry.mirror.sets import MirrorEntry
from registry.oci.client import (
    AccessDenied,
    AuthenticationError,
    AuthFileError,
    ClientError,
    Credentials,
    CredentialStore,
    RegistryClient,
    RegistryConfig,
    RemoteReader,
    TokenError,
    UnknownHost,
    UnsupportedManifestError,
)
from registry.oci.reader import ContentCorrupt, ContentNotFound, ContentReader, OCILayoutReader
from registry.oci.reference import Reference


class UpstreamError(RuntimeError):
    """The upstream cannot be opened; the message says why."""


def problem(exc: BaseException) -> tuple[str, bool] | None:
    """What went wrong with an upstream, in one line, and whether it is for good: a host
    that does not exist, a refusal (401/403), content that is not there (404), a broken
    configuration. None when `exc` is no upstream failure (a fault of Zoll's own, which
    keeps its traceback)."""
    if isinstance(exc, UnsupportedManifestError | AuthFileError | UpstreamError):
        permanent = True
    elif isinstance(exc, UnknownHost | AuthenticationError | AccessDenied | ContentNotFound):
        permanent = True  # NotFoundError is a ContentNotFound
    elif isinstance(exc, TokenError):
        permanent = exc.status in (401, 403)
    elif isinstance(exc, ClientError | ContentCorrupt):
        permanent = False
    else:
        return None
    line = " ".join(str(exc).split())
    if isinstance(exc, ContentCorrupt):  # says what was wrong with the bytes
        line = f"{type(exc).__name__}: {line}"
    return line or type(exc).__name__, permanent


class Upstreams:
    """Readers for mirror entries; close with `aclose()`."""

    def __init__(self) -> None:
        self._clients: dict[tuple[object, ...], RegistryClient] = {}

    def reader(self, entry: MirrorEntry) -> ContentReader:
        return self.open(entry.source, insecure=entry.insecure, credentials=entry.credentials)

    def open(
        self,
        source: str,
        *,
        insecure: bool = False,
        credentials: UpstreamCredentials | None = None,
    ) -> ContentReader:
        """A reader for `source`: `oci:/path` or `host/repository` (Docker Hub normalised)."""
        if source.startswith("oci:"):
            try:
                return OCILayoutReader(Path(source[len("oci:") :]))
            except ContentNotFound as exc:
                raise UpstreamError(str(exc)) from exc
        ref = Reference.parse(source)
        creds = credentials
        key = (ref.api_host, insecure, creds)
        client = self._clients.get(key)
        if client is None:
            auth = None
            store = None
            if creds is not None and creds.auth_file is not None:
                store = CredentialStore.from_auth_file(creds.auth_file)
            elif creds is not None and creds.username:
                password = os.environ.get(creds.password_env or "")
                if creds.password_env and password is None:
                    raise UpstreamError(f"environment variable {creds.password_env} is not set")
                auth = Credentials(username=creds.username, password=password)
            config = RegistryConfig(ref.api_host, credentials=auth, insecure=insecure)
            client = RegistryClient([config], credentials=store)
            self._clients[key] = client
        return RemoteReader(client.repository(ref.api_host, ref.name))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

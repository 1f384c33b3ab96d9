"""What the upstream client reports when a registry, the network or the content fails.

Content errors subclass the reader's `ContentNotFound`/`ContentCorrupt`, so code written
against `ContentReader` (attest, policy) handles a remote registry like a layout
directory; everything else is a `ClientError` with the status, the spec's error codes
and the URL, so an operator can see which upstream failed and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from registry.oci.digest import Digest
from registry.oci.reader import ContentCorrupt, ContentNotFound


class ClientError(Exception):
    """Anything the upstream client cannot complete."""


@dataclass(frozen=True, slots=True)
class RemoteError:
    """One entry of an OCI error body (`{"errors": [{"code", "message", "detail"}]}`)."""

    code: str
    message: str
    detail: Any = None


class RegistryResponseError(ClientError):
    """The registry answered with an error status."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        errors: tuple[RemoteError, ...] = (),
        note: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.errors = errors
        detail = "; ".join(f"{e.code}: {e.message}" for e in errors) or note or ""
        if note and errors:
            detail = f"{detail} ({note})"
        super().__init__(f"{method} {url}: HTTP {status}" + (f": {detail}" if detail else ""))

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.errors)


class NotFoundError(RegistryResponseError, ContentNotFound):
    """404: the repository, manifest, blob or upload is unknown to the registry."""


class AuthenticationError(RegistryResponseError):
    """401 after authenticating: credentials are missing, wrong, or lack the scope."""


class AccessDenied(RegistryResponseError):
    """403: the registry knows who we are and refuses the operation."""


class UnavailableError(RegistryResponseError):
    """429/5xx still answered after every attempt the retry policy allows."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        errors: tuple[RemoteError, ...] = (),
        note: str | None = None,
        *,
        attempts: int,
    ) -> None:
        super().__init__(method, url, status, errors, note)
        self.attempts = attempts


class TransportError(ClientError):
    """The connection failed (refused, reset, timed out) on every attempt allowed."""

    def __init__(self, message: str, *, url: str, attempts: int) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts


class UnknownHost(TransportError):
    """The registry's name does not resolve (DNS: no such host). Not retried: a name that
    does not exist now will not exist a second later; a mistyped upstream fails at once."""

    def __init__(self, host: str, reason: str, *, url: str) -> None:
        super().__init__(f"unknown host {host}: {reason}", url=url, attempts=1)
        self.host = host


class TokenError(ClientError):
    """The token server refused us or answered with something that is not a token."""

    def __init__(self, message: str, *, realm: str, status: int | None = None) -> None:
        super().__init__(message)
        self.realm = realm
        self.status = status


class ProtocolError(ClientError):
    """The registry's answer breaks the distribution spec (missing header, bad JSON, …)."""


class DigestMismatch(ClientError, ContentCorrupt):
    """Content did not hash to the digest it was asked for (or announced with)."""

    def __init__(self, what: str, expected: Digest, actual: Digest) -> None:
        super().__init__(f"{what}: expected {expected}, received content hashing to {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class SizeExceeded(ClientError, ContentCorrupt):
    """Content is larger than allowed or announced (manifest limit, descriptor size)."""

    def __init__(self, what: str, limit: int, size: int | None = None) -> None:
        seen = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"{what} is larger than the {limit} bytes allowed{seen}")
        self.what = what
        self.limit = limit
        self.size = size


class SizeMismatch(ClientError, ContentCorrupt):
    """A blob ended before its expected size (and could not be resumed) or after it."""

    def __init__(self, what: str, expected: int, actual: int) -> None:
        super().__init__(f"{what}: expected {expected} bytes, received {actual}")
        self.expected = expected
        self.actual = actual


class UnsupportedManifestError(ClientError, ContentCorrupt):
    """The registry returned a manifest kind Zoll does not handle (e.g. Docker schema 1)."""

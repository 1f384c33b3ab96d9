"""The error codes of the OCI Distribution spec, with their HTTP status.

The HTTP layer renders these as `{"errors": [{"code", "message", "detail"}]}`; the
upstream client raises them when a remote registry answers with one.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

RETRY_AFTER_UNAVAILABLE = 5
"""Seconds a 503 asks clients to wait before trying again."""


class ErrorCode(Enum):
    """Spec error code → (HTTP status, default message)."""

    BLOB_UNKNOWN = (404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = (400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = (404, "blob upload unknown to registry")
    DIGEST_INVALID = (400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = (400, "manifest references a manifest or blob unknown to registry")
    MANIFEST_INVALID = (400, "manifest invalid")
    MANIFEST_UNKNOWN = (404, "manifest unknown to registry")
    NAME_INVALID = (400, "invalid repository name")
    NAME_UNKNOWN = (404, "repository name not known to registry")
    SIZE_INVALID = (400, "provided length did not match content length")
    UNAUTHORIZED = (401, "authentication required")
    DENIED = (403, "requested access to the resource is denied")
    UNSUPPORTED = (415, "the operation is unsupported")
    TOOMANYREQUESTS = (429, "too many requests")
    RANGE_INVALID = (416, "invalid content range")
    TAG_INVALID = (400, "manifest tag did not match URI")
    PAGINATION_NUMBER_INVALID = (400, "invalid number of results requested")
    UNAVAILABLE = (503, "service unavailable")
    UNKNOWN = (500, "unknown error")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


class RegistryError(Exception):
    """An error the registry reports to the client in the spec's format."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.message
        self.detail = detail
        self.status = status or code.status
        self.headers = headers or {}
        if self.status == 503:  # an outage or overload: tell clients when to come back
            self.headers.setdefault("Retry-After", str(RETRY_AFTER_UNAVAILABLE))
        super().__init__(f"{code.name}: {self.message}")

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        entry: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}

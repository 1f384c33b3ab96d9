"""A small, synchronous client for the running service's `/api/v1`, for commands that
only ask the service to do something and follow it.

Standard library only (http.client): such a command starts in ~60 ms, where opening the
database itself loads asyncio, asyncpg and the configuration models (~220 ms) while the
service's workers wait for the work. One keep-alive connection serves every call.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from registry.local_service import find

USER_ENV, PASSWORD_ENV = "ZOLL_USER", "ZOLL_PASSWORD"


class ServiceError(Exception):
    """The service answered with a problem document (or could not be reached)."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        if status == 400 and detail:
            message = detail  # names the file and fields already
        elif status == 401:
            message = (
                f"{title}: the service asks for credentials (set {USER_ENV} and {PASSWORD_ENV})"
            )
        else:
            message = f"{title}: {detail}" if detail else title
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail


class ServiceClient:
    def __init__(self, url: str, credentials: tuple[str, str] | None, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(0, "Invalid service URL", f"{url!r} is not an http(s) URL")
        self.base = parts.path.rstrip("/")
        connection = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._conn = connection(parts.hostname, parts.port, timeout=timeout)
        self._headers = {"Accept": "application/json"}
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """The decoded JSON answer; ServiceError for an error status or no connection."""
        target = self.base + path + (f"?{urlencode(query)}" if query else "")
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            self._conn.request(method, target, body=body, headers=headers)
            response = self._conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise ServiceError(
                0, "Cannot reach the service", str(exc) or type(exc).__name__
            ) from exc
        if response.status >= 400:
            raise _problem(response.status, raw)
        return json.loads(raw)

    def close(self) -> None:
        self._conn.close()


def _problem(status: int, raw: bytes) -> ServiceError:
    try:
        doc = json.loads(raw)
        return ServiceError(status, str(doc.get("title") or status), doc.get("detail"))
    except (ValueError, AttributeError):
        return ServiceError(status, f"HTTP {status}", raw[:200].decode(errors="replace") or None)


def credentials_from_env() -> tuple[str, str] | None:
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    return (user, password) if user and password is not None else None


def light_data_dir(data_dir: Path | None, config: Path | None) -> Path | None:
    """The data folder, if it is known without reading a config file (None otherwise)."""
    if data_dir is not None:
        return data_dir
    if config is not None or os.environ.get("ZOLL_CONFIG"):
        return None
    return Path(os.environ.get("ZOLL_DATA_DIR") or "zoll-data")


def local_client(data_dir: Path, timeout: float) -> ServiceClient | None:
    """A client for the service running from `data_dir`, or None when there is none, or
    when it asks for credentials and ZOLL_USER / ZOLL_PASSWORD do not give any."""
    service = find(data_dir)
    if service is None:
        return None
    credentials = credentials_from_env()
    if service.auth and credentials is None:
        return None
    return ServiceClient(service.url, credentials, timeout)

"""Who we are at each registry: explicit configuration, or docker/podman `auth.json`.

The service configures upstreams explicitly (`RegistryConfig` per host). The CLI also
reads the files `podman login` and `docker login` write, so an operator who can pull an
image with skopeo can verify it with `zoll` without configuring anything twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from registry.oci.client.errors import ClientError
from registry.oci.reference import DOCKER_HUB, DOCKER_HUB_API

DOCKER_HUB_ALIASES: Final = frozenset(
    {DOCKER_HUB, DOCKER_HUB_API, "index.docker.io", "registry.hub.docker.com"}
)
"""Names under which Docker Hub appears in references and in auth files."""


class AuthFileError(ClientError):
    """An auth file exists but cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A secret for one registry; `repr` never shows it."""

    username: str | None = field(default=None)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    """An OAuth2 refresh token (docker's `identitytoken`): exchanged by POST at the realm."""
    registry_token: str | None = field(default=None, repr=False)
    """A bearer token sent to the registry as is (docker's `registrytoken`)."""

    @property
    def has_password(self) -> bool:
        return self.username is not None and self.password is not None


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """How to reach one registry host (`host[:port]`, as in image references)."""

    host: str
    credentials: Credentials | None = None
    insecure: bool = False
    """Allow plain HTTP (tried when HTTPS fails) and unverified TLS: loopback and tests."""
    ca_file: Path | None = None
    """Extra CA bundle for a registry with a private certificate authority."""
    password_grant: bool = False
    """Exchange username/password with an OAuth2 POST (containerd) instead of GET + Basic;
    falls back to GET when the token server does not implement POST."""


def canonical_host(host: str) -> str:
    """The host as auth files and configs name it: lower case, Docker Hub as docker.io."""
    lowered = host.strip().lower()
    return DOCKER_HUB if lowered in DOCKER_HUB_ALIASES else lowered


def _auth_key(key: str) -> str:
    """`https://index.docker.io/v1/`, `http://host:5000`, `host/ns` → `host[/ns]`."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.rstrip("/")
    host, sep, path = text.partition("/")
    host = canonical_host(host)
    if host == DOCKER_HUB and path in ("v1", "v2"):
        path = ""
    return f"{host}/{path}" if sep and path else host


class CredentialStore:
    """Credentials by `host` or `host/namespace/...` (podman allows per-repository keys);
    the longest matching key wins."""

    def __init__(self, entries: Mapping[str, Credentials] | None = None) -> None:
        self._entries = {_auth_key(k): v for k, v in (entries or {}).items()}

    def __bool__(self) -> bool:
        return bool(self._entries)

    def find(self, host: str, repository: str | None = None) -> Credentials | None:
        base = canonical_host(host)
        if repository:
            parts = repository.split("/")
            for end in range(len(parts), 0, -1):
                found = self._entries.get(f"{base}/{'/'.join(parts[:end])}")
                if found is not None:
                    return found
        return self._entries.get(base)

    def merged(self, other: CredentialStore) -> CredentialStore:
        """A store where entries of `self` win over `other`'s."""
        out = CredentialStore()
        out._entries = {**other._entries, **self._entries}
        return out

    @classmethod
    def from_auth_file(cls, path: Path) -> CredentialStore:
        """Read `auths` of a containers-auth.json(5) or docker config.json file."""
        try:
            document = json.loads(path.read_bytes())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AuthFileError(f"{path}: cannot read auth file: {exc}") from exc
        auths = document.get("auths") if isinstance(document, dict) else None
        if auths is None:
            return cls()
        if not isinstance(auths, dict):
            raise AuthFileError(f"{path}: `auths` must be an object")
        entries: dict[str, Credentials] = {}
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise AuthFileError(f"{path}: auths[{key!r}] must be an object")
            creds = _entry_credentials(path, key, entry)
            if creds is not None:
                entries[key] = creds
        return cls(entries)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> CredentialStore:
        """Existing files in order, earlier files winning (the containers search order)."""
        store = cls()
        for path in paths:
            if path.is_file():
                store = store.merged(cls.from_auth_file(path))
        return store


def _entry_credentials(path: Path, key: str, entry: dict[str, object]) -> Credentials | None:
    def text(name: str) -> str | None:
        value = entry.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise AuthFileError(f"{path}: auths[{key!r}].{name} must be a string")
        return value

    username, password = text("username"), text("password")
    encoded = text("auth")
    if encoded is not None:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthFileError(f"{path}: auths[{key!r}].auth is not base64: {exc}") from exc
        user, sep, secret = decoded.partition(":")
        if not sep:
            raise AuthFileError(f"{path}: auths[{key!r}].auth must encode user:password")
        username, password = user, secret
    identity, registry_token = text("identitytoken"), text("registrytoken")
    if username is None and identity is None and registry_token is None:
        return None
    if identity is not None:
        password = None  # docker writes `<token>` as user; the refresh token is what counts
    return Credentials(username, password, identity, registry_token)


def default_auth_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where skopeo, podman and docker keep logins, in the order containers-auth.json(5)
    searches them."""
    env = os.environ if environ is None else environ
    out: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        out.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path(env["HOME"]) if env.get("HOME") else None
    config_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
    if config_home is None and home is not None:
        config_home = home / ".config"
    if config_home is not None:
        out.append(config_home / "containers" / "auth.json")
    if env.get("DOCKER_CONFIG"):
        out.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    elif home is not None:
        out.append(home / ".docker" / "config.json")
    return out

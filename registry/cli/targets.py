"""Image arguments of the CLI: `oci:<layout-dir>[:tag|@digest]` and
`docker://host[:port]/repository[:tag|@digest]`, opened as a `ContentReader`.

One place for every command that reads an image (verify, policy, …), so they accept the
same forms as skopeo and find credentials where `podman login`/`docker login` put them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from registry.oci.client import (
    AuthFileError,
    Credentials,
    CredentialStore,
    RegistryClient,
    RegistryConfig,
    RemoteReader,
    default_auth_files,
)
from registry.oci.reader import ContentNotFound, ContentReader, OCILayoutReader
from registry.oci.reference import Reference, ReferenceError

INSECURE_ENV = "ZOLL_INSECURE_REGISTRIES"
"""Comma-separated `host[:port]` reached over plain HTTP or unverified TLS."""
FORMS = "oci:<layout-dir>[:tag|@digest] or docker://host/repository[:tag|@digest]"


class TargetError(ValueError):
    """An image argument the CLI cannot open."""


@dataclass
class Target:
    """An opened image argument: where to read, what to ask for, and a repository name
    (for policy selection and reports). `async with` closes network connections."""

    reader: ContentReader
    reference: str
    repository: str
    client: RegistryClient | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def __aenter__(self) -> Target:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _layout(rest: str) -> Target:
    reference = "latest"
    root_text = rest
    if "@" in rest:
        root_text, reference = rest.rsplit("@", 1)
    elif not Path(rest).is_dir():
        head, sep, tail = rest.rpartition(":")
        if sep and head and "/" not in tail:
            root_text, reference = head, tail
    root = Path(root_text)
    try:
        reader = OCILayoutReader(root)
    except (ContentNotFound, ValueError, OSError) as exc:
        raise TargetError(str(exc)) from exc
    return Target(reader, reference, root.resolve().name)


def _insecure_hosts(environ: Mapping[str, str]) -> set[str]:
    return {h.strip().lower() for h in environ.get(INSECURE_ENV, "").split(",") if h.strip()}


def _remote(
    rest: str,
    *,
    tls_verify: bool,
    auth_file: Path | None,
    creds: str | None,
    environ: Mapping[str, str],
) -> Target:
    try:
        ref = Reference.parse(rest)
    except ReferenceError as exc:
        raise TargetError(f"docker://{rest}: {exc}") from exc
    files = [auth_file] if auth_file is not None else default_auth_files(environ)
    if auth_file is not None and not auth_file.is_file():
        raise TargetError(f"auth file {auth_file} does not exist")
    try:
        credentials = CredentialStore.from_files(files)
    except AuthFileError as exc:
        raise TargetError(str(exc)) from exc
    given = None
    if creds is not None:
        user, sep, password = creds.partition(":")
        if not (user and sep):
            raise TargetError("--creds takes USER:PASSWORD")
        given = Credentials(username=user, password=password)
    insecure = not tls_verify or ref.registry.lower() in _insecure_hosts(environ)
    client = RegistryClient(
        [RegistryConfig(ref.registry, credentials=given, insecure=insecure)],
        credentials=credentials,
    )
    reader = RemoteReader(client.repository(ref.api_host, ref.name))
    return Target(reader, ref.reference, ref.name, client)


def open_target(
    text: str,
    *,
    tls_verify: bool = True,
    auth_file: Path | None = None,
    creds: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """Open an image argument; raise `TargetError` with the accepted forms when unusable.

    Nothing is contacted here: a remote target connects on its first read, inside the
    command's event loop.
    """
    env = os.environ if environ is None else environ
    if text.startswith("oci:"):
        return _layout(text[len("oci:") :])
    if text.startswith("docker://"):
        return _remote(
            text[len("docker://") :],
            tls_verify=tls_verify,
            auth_file=auth_file,
            creds=creds,
            environ=env,
        )
    raise TargetError(f"unsupported image reference {text!r}: use {FORMS}")


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """`--tls-verify`, `--authfile` and `--creds`, spelled as skopeo spells them."""
    parser.add_argument(
        "--tls-verify",
        default=True,
        type=_boolean,
        metavar="BOOL",
        help=f"false: reach the docker:// registry over plain HTTP or unverified TLS "
        f"(loopback and tests; also ${INSECURE_ENV})",
    )
    parser.add_argument(
        "--authfile",
        type=Path,
        help="auth.json with registry credentials (default: where podman/docker login put them)",
    )
    parser.add_argument(
        "--creds", metavar="USER:PASSWORD", help="credentials for the docker:// registry"
    )


def target_from_args(text: str, args: argparse.Namespace) -> Target:
    return open_target(
        text,
        tls_verify=getattr(args, "tls_verify", True),
        auth_file=getattr(args, "authfile", None),
        creds=getattr(args, "creds", None),
    )


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")

"""Trusted roots for keyless verification, loaded offline.

The default is the public-good Sigstore root embedded in the `sigstore` package (the
same bytes for every auditor who installs the same version); a sovereign Sigstore
instance is trusted through its own `trusted_root.json`. Nothing here touches the
network: TUF refreshes are an operator's job, not the verifier's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.trustroot import v1 as trustroot_v1

from attest.results import VerificationFailure
from attest.safejson import loads_object
from attest.sigstore_private import embedded_trusted_root

PUBLIC_GOOD: Final = "public-good"
STAGING: Final = "staging"
_EMBEDDED: Final = {
    PUBLIC_GOOD: "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    STAGING: "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}
MAX_TRUSTED_ROOT_BYTES: Final = 4 * 1024 * 1024


class TrustRootError(ValueError):
    """A trusted root cannot be loaded."""


@dataclass(frozen=True)
class NamedRoot:
    """A trusted root with the name results refer to it by and the hash of its bytes."""

    name: str
    sha256: str
    root: TrustedRoot
    verifier: Verifier = field(compare=False, repr=False)


def _load(name: str, raw: bytes) -> NamedRoot:
    try:
        loads_object(raw, f"trusted root {name}", max_bytes=MAX_TRUSTED_ROOT_BYTES)
        root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
        verifier = Verifier(trusted_root=root)
    except VerificationFailure as exc:
        raise TrustRootError(f"trusted root {name} is not usable: {exc.message}") from exc
    except (SigstoreError, ValueError, TypeError, KeyError) as exc:
        raise TrustRootError(f"trusted root {name} is not usable: {exc}") from exc
    return NamedRoot(name, hashlib.sha256(raw).hexdigest(), root, verifier)


@dataclass(frozen=True)
class TrustMaterial:
    """The roots keyless signatures may chain to; any one of them suffices."""

    roots: tuple[NamedRoot, ...]

    @classmethod
    def embedded(cls, name: str) -> TrustMaterial:
        """`public-good` or `staging`, exactly as shipped in the installed `sigstore`."""
        folder = _EMBEDDED.get(name)
        if folder is None:
            raise TrustRootError(f"no embedded trusted root named {name!r}")
        raw = embedded_trusted_root(folder)
        return cls((_load(name, raw),))

    @classmethod
    def public_good(cls) -> TrustMaterial:
        return cls.embedded(PUBLIC_GOOD)

    @classmethod
    def staging(cls) -> TrustMaterial:
        return cls.embedded(STAGING)

    @classmethod
    def from_bytes(cls, raw: bytes, name: str = "custom") -> TrustMaterial:
        return cls((_load(name, raw),))

    @classmethod
    def from_file(cls, path: Path, name: str | None = None) -> TrustMaterial:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TrustRootError(f"cannot read trusted root {path}: {exc}") from exc
        return cls.from_bytes(raw, name or path.name)

    @classmethod
    def resolve(cls, spec: str) -> TrustMaterial:
        """An embedded root by name, or a `trusted_root.json` path."""
        if spec in _EMBEDDED:
            return cls.embedded(spec)
        return cls.from_file(Path(spec))

    def __add__(self, other: TrustMaterial) -> TrustMaterial:
        return TrustMaterial(self.roots + other.roots)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roots)

"""Token signing keys: files in the data folder (0600), rotated by age, known by `kid`.

Separate from Zoll's attestation keys: a token key signs five-minute bearer tokens and
is replaced every few months; losing one only logs everybody out. Every worker process
reads the same folder, so a token issued by one verifies in all. The newest key signs;
older keys stay (and verify) until every token they signed has expired, then they are
deleted. A worker that meets an unknown `kid` rescans the folder (another process
rotated), at most once a second. Other instances on the same database have folders of
their own; their public keys come from PostgreSQL (`registry.auth.keyshare`).
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from attest.keys import KeyAlgorithm, KeyLoadError, PrivateKey, PublicKey
from attest.servicekeys.files import (
    KeyringError,
    check_private,
    ensure_private_dir,
    locked,
    write_private,
)

JwtAlgorithm = Literal["ES256", "EdDSA"]
KEY_ALGORITHM: dict[JwtAlgorithm, KeyAlgorithm] = {"ES256": "ecdsa-p256", "EdDSA": "ed25519"}
JWT_ALGORITHM: dict[str, JwtAlgorithm] = {"ecdsa-p256": "ES256", "ed25519": "EdDSA"}
_FILE = re.compile(r"^token-(\d+)-([0-9a-f]{32})\.pem$")
RESCAN_SECONDS = 60.0


class TokenKeyError(KeyringError):
    """The token key folder is unusable (permissions, foreign files)."""


@dataclass(frozen=True)
class TokenKey:
    kid: str
    algorithm: JwtAlgorithm
    created: int
    """Unix time the key was made (from its file name, which nothing rewrites)."""
    key: PrivateKey
    path: Path


@dataclass(frozen=True)
class VerifyingKey:
    """What verifies a token: the public half of one of our keys, or of a key another
    instance published (valid until `expires_at`, Unix time)."""

    kid: str
    algorithm: JwtAlgorithm
    public: PublicKey
    expires_at: float = float("inf")


def kid_of(key: PublicKey) -> str:
    return key.keyid[:32]


def _kid(key: PrivateKey) -> str:
    return kid_of(key.public)


class TokenKeyring:
    """The signing keys of one data folder, shared by every worker process."""

    def __init__(
        self, folder: Path, algorithm: JwtAlgorithm, max_age: float, token_ttl: float
    ) -> None:
        self.folder = folder / "token-keys"
        self.algorithm = algorithm
        self.max_age = max_age
        self.retire_after = token_ttl + 2 * RESCAN_SECONDS + 60
        self._keys: dict[str, TokenKey] = {}
        self._shared: dict[str, VerifyingKey] = {}
        self._scanned = 0.0
        self._missed = 0.0

    # Reading -----------------------------------------------------------------

    def scan(self) -> None:
        """Load every key file (they are written atomically, so no lock is needed)."""
        keys: dict[str, TokenKey] = {}
        for path in sorted(self.folder.iterdir()):
            match = _FILE.match(path.name)
            if match is None:
                continue
            check_private(path)
            try:
                key = PrivateKey.from_pem(path.read_bytes())
            except (OSError, KeyLoadError) as exc:
                if isinstance(exc, FileNotFoundError):
                    continue  # retired by another process meanwhile
                raise TokenKeyError(f"{path}: {exc}") from exc
            algorithm = JWT_ALGORITHM.get(key.public.algorithm)
            if algorithm is None or _kid(key) != match.group(2):
                raise TokenKeyError(f"{path}: not a token key this service wrote")
            keys[match.group(2)] = TokenKey(
                match.group(2), algorithm, int(match.group(1)), key, path
            )
        self._keys = keys
        self._scanned = time.monotonic()

    def signing_key(self) -> TokenKey:
        if not self._keys:
            raise TokenKeyError(f"no token signing key in {self.folder}; call load() first")
        return max(self._keys.values(), key=lambda k: (k.created, k.kid))

    def verification_key(self, kid: str) -> VerifyingKey | None:
        own = self._keys.get(kid)
        if own is not None:
            return VerifyingKey(own.kid, own.algorithm, own.key.public)
        shared = self._shared.get(kid)
        if shared is not None and shared.expires_at <= time.time():
            del self._shared[kid]
            return None
        return shared

    def remember(self, key: VerifyingKey) -> None:
        """A key another instance published (found in the database)."""
        if len(self._shared) > 1000:  # only ever a few per instance; never grow unbounded
            self._shared.clear()
        self._shared[key.kid] = key

    @property
    def valid_for(self) -> float:
        """Seconds after its creation until no token a key signed can still be valid: it
        signs for at most `max_age` (plus a rescan), then its tokens live `retire_after`."""
        return self.max_age + RESCAN_SECONDS + self.retire_after

    def all_keys(self) -> list[TokenKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created, k.kid))

    def stale(self) -> bool:
        """Time to rescan (and rotate if the newest key is too old)."""
        return time.monotonic() - self._scanned > RESCAN_SECONDS

    def may_rescan_for_unknown_kid(self) -> bool:
        """At most once a second, so garbage kids cannot make us read the disk per request."""
        now = time.monotonic()
        if now - self._missed < 1.0:
            return False
        self._missed = now
        return True

    # Writing (under the folder lock) ----------------------------------------

    def load(self) -> None:
        """Scan; create the first key, or a fresh one if the newest is too old or of
        another algorithm than configured; delete keys nothing can still need."""
        ensure_private_dir(self.folder.parent)
        ensure_private_dir(self.folder)
        self.scan()
        if self._needs_new_key():
            with locked(self.folder):
                self.scan()  # another process may have done it while we waited
                if self._needs_new_key():
                    self._write_new_key()
                self._retire()
                self.scan()

    def rotate(self) -> TokenKey:
        """A new signing key now (old ones keep verifying until their tokens expire)."""
        ensure_private_dir(self.folder)
        with locked(self.folder):
            self.scan()
            key = self._write_new_key()
            self._retire()
            self.scan()
        return key

    def _needs_new_key(self) -> bool:
        if not self._keys:
            return True
        newest = self.signing_key()
        return newest.algorithm != self.algorithm or time.time() - newest.created > self.max_age

    def _write_new_key(self) -> TokenKey:
        key = PrivateKey.generate(KEY_ALGORITHM[self.algorithm])
        created = max([int(time.time()), *(k.created + 1 for k in self._keys.values())])
        path = self.folder / f"token-{created}-{_kid(key)}.pem"
        write_private(path, key.pem(), exclusive=True)
        token_key = TokenKey(_kid(key), self.algorithm, created, key, path)
        self._keys[token_key.kid] = token_key
        return token_key

    def _retire(self) -> list[str]:
        """Delete keys superseded longer ago than any token they signed can live."""
        ordered = self.all_keys()
        now = time.time()
        retired = []
        for older, newer in itertools.pairwise(ordered):
            if now - newer.created > self.retire_after:
                older.path.unlink(missing_ok=True)
                retired.append(older.kid)
        return retired

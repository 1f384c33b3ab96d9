"""Zoll's service keyring: the active signing key and every key it ever published.

On first start a key is generated into `<data_dir>/keys/` (folder 0700, key 0600); or
the operator names a PEM file or a PKCS#11 URI. `keyring.json` records every public
key with its validity period, so attestations signed before a rotation stay verifiable
from `/api/v1/keys`. Retired private keys are deleted: they never sign again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from attest.keys import KeyLoadError, PrivateKey, PublicKey
from attest.servicekeys.files import (
    KeyringError,
    check_private,
    ensure_private_dir,
    locked,
    write_private,
)
from attest.servicekeys.pkcs11 import Pkcs11Signer
from attest.signing import Signer
from attest.tlog.note import NoteVerifier

ServiceAlgorithm = Literal["ecdsa-p256", "ed25519"]
KeySource = Literal["generated", "pem-file", "pkcs11"]
KEYRING_FILE: Final = "keyring.json"
KEYRING_VERSION: Final = 1
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise KeyringError(f"{what} must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise KeyringError(f"{what} is not an RFC 3339 time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise KeyringError(f"{what} has no time zone")
    return parsed


@dataclass(frozen=True)
class ServiceKeySettings:
    """Where the signing key comes from (the service configuration fills this in)."""

    algorithm: ServiceAlgorithm = "ecdsa-p256"
    key_file: Path | None = None
    key_password: bytes | None = None
    pkcs11_uri: str | None = None
    pkcs11_module: str | None = None
    pkcs11_pin: str | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ("ecdsa-p256", "ed25519"):
            raise KeyringError(f"service keys are ecdsa-p256 or ed25519, not {self.algorithm}")
        if self.key_file is not None and self.pkcs11_uri is not None:
            raise KeyringError("set either a key file or a PKCS#11 URI, not both")

    @property
    def source(self) -> KeySource:
        if self.pkcs11_uri is not None:
            return "pkcs11"
        return "pem-file" if self.key_file is not None else "generated"


@dataclass(frozen=True)
class PublishedKey:
    """A public key Zoll signed with (or signs with) and when it was valid."""

    keyid: str
    algorithm: str
    public_pem: str
    valid_from: datetime
    valid_until: datetime | None
    source: KeySource
    location: str

    @property
    def active(self) -> bool:
        return self.valid_until is None

    def public_key(self) -> PublicKey:
        return PublicKey.from_pem(self.public_pem)

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when and (self.valid_until is None or when < self.valid_until)

    def to_json(self, *, include_location: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keyid": self.keyid,
            "algorithm": self.algorithm,
            "publicKey": self.public_pem,
            "validFrom": _iso(self.valid_from),
            "validUntil": _iso(self.valid_until) if self.valid_until else None,
            "status": "active" if self.active else "retired",
            "source": self.source,
        }
        if include_location:
            out["location"] = self.location
        return out

    @classmethod
    def from_json(cls, obj: object) -> PublishedKey:
        if not isinstance(obj, dict):
            raise KeyringError("keyring entries must be objects")
        try:
            public = PublicKey.from_pem(str(obj.get("publicKey", "")))
        except KeyLoadError as exc:
            raise KeyringError(f"keyring entry {obj.get('keyid')!r}: {exc}") from exc
        if public.keyid != obj.get("keyid"):
            raise KeyringError(f"keyring entry {obj.get('keyid')!r} does not match its public key")
        source = obj.get("source")
        if source not in ("generated", "pem-file", "pkcs11"):
            raise KeyringError(f"keyring entry {public.keyid}: unknown source {source!r}")
        until = obj.get("validUntil")
        return cls(
            keyid=public.keyid,
            algorithm=public.algorithm,
            public_pem=public.pem(),
            valid_from=_parse_time(obj.get("validFrom"), "validFrom"),
            valid_until=None if until is None else _parse_time(until, "validUntil"),
            source=source,
            location=str(obj.get("location", "")),
        )


def read_keyring(data_dir: Path) -> list[PublishedKey]:
    """The published keys, without touching any private key (for `zoll keys list`)."""
    path = data_dir / "keys" / KEYRING_FILE
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise KeyringError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != KEYRING_VERSION:
        raise KeyringError(f"{path} is not a version {KEYRING_VERSION} keyring")
    keys = [PublishedKey.from_json(k) for k in doc.get("keys", [])]
    if sum(1 for k in keys if k.active) > 1:
        raise KeyringError(f"{path} lists more than one active key")
    return keys


class ServiceKeyring:
    """The active signer and the history of published keys."""

    def __init__(
        self, data_dir: Path, settings: ServiceKeySettings, keys: list[PublishedKey], signer: Signer
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self._keys = keys
        self.signer = signer

    @property
    def folder(self) -> Path:
        return self.data_dir / "keys"

    @property
    def active(self) -> PublishedKey:
        return next(k for k in self._keys if k.active)

    def public_keys(self) -> list[PublishedKey]:
        return list(self._keys)

    def key_for(self, keyid: str, at: datetime | None = None) -> PublishedKey | None:
        """The published key with `keyid`, if it was valid at `at` (any time if None)."""
        for key in self._keys:
            if key.keyid == keyid and (at is None or key.valid_at(at)):
                return key
        return None

    def to_json(self, *, log_origin: str | None = None) -> dict[str, Any]:
        """The `/api/v1/keys` document; with the log origin, each key's note verifier key."""
        keys = []
        for key in self._keys:
            entry = key.to_json()
            if log_origin is not None:
                entry["logVerifierKey"] = NoteVerifier.for_key(log_origin, key.public_key()).vkey()
            keys.append(entry)
        return {"activeKeyid": self.active.keyid, "keys": keys}

    @classmethod
    def load_or_create(
        cls,
        data_dir: Path,
        settings: ServiceKeySettings | None = None,
        *,
        clock: Clock = _utcnow,
    ) -> ServiceKeyring:
        """Load the configured key (generating one on first start) and the key history.

        A configured key that differs from the active one becomes active and the old
        one is retired now; a key once retired is never made active again.
        """
        settings = settings or ServiceKeySettings()
        folder = ensure_private_dir(data_dir / "keys")
        with locked(folder):
            keys = read_keyring(data_dir)
            active = next((k for k in keys if k.active), None)
            signer: Signer
            location: str
            if settings.source == "pkcs11":
                assert settings.pkcs11_uri is not None
                hsm = Pkcs11Signer(
                    settings.pkcs11_uri, module=settings.pkcs11_module, pin=settings.pkcs11_pin
                )
                signer, location = hsm, hsm.uri.redacted()
            elif settings.source == "pem-file":
                assert settings.key_file is not None
                signer, location = (
                    _load_pem(settings.key_file, settings.key_password),
                    str(settings.key_file),
                )
            elif active is not None and active.source == "generated":
                signer, location = _load_generated(folder, active), active.location
            else:
                generated = PrivateKey.generate(settings.algorithm)
                location = f"{generated.public.keyid}.pem"
                write_private(folder / location, generated.pem(), exclusive=True)
                signer = generated
            keyid = signer.public.keyid
            if signer.public.algorithm not in ("ecdsa-p256", "ed25519"):
                raise KeyringError(
                    f"service keys must be ecdsa-p256 or ed25519, not {signer.public.algorithm}"
                )
            if active is None or active.keyid != keyid:
                if any(k.keyid == keyid for k in keys):
                    raise KeyringError(f"key {keyid} was retired and is never used again")
                keys = _activate(folder, keys, signer.public, settings.source, location, clock())
            return cls(data_dir, settings, keys, signer)

    def rotate(
        self, algorithm: ServiceAlgorithm | None = None, *, clock: Clock = _utcnow
    ) -> PublishedKey:
        """Generate a new key, make it active and retire the current one now."""
        if self.settings.source != "generated":
            raise KeyringError(
                f"the active key comes from {self.settings.source} ({self.active.location}); "
                "rotate it by configuring a new key there"
            )
        with locked(self.folder):
            current = read_keyring(self.data_dir)
            generated = PrivateKey.generate(algorithm or self.settings.algorithm)
            location = f"{generated.public.keyid}.pem"
            write_private(self.folder / location, generated.pem(), exclusive=True)
            retired = [k for k in current if k.active and k.source == "generated"]
            self._keys = _activate(
                self.folder, current, generated.public, "generated", location, clock()
            )
            for key in retired:
                (self.folder / key.location).unlink(missing_ok=True)
            self.signer = generated
        return self.active

    def close(self) -> None:
        close = getattr(self.signer, "close", None)
        if callable(close):
            close()


def _activate(
    folder: Path,
    keys: list[PublishedKey],
    public: PublicKey,
    source: KeySource,
    location: str,
    now: datetime,
) -> list[PublishedKey]:
    updated = [replace(k, valid_until=now) if k.active else k for k in keys]
    updated.append(
        PublishedKey(public.keyid, public.algorithm, public.pem(), now, None, source, location)
    )
    doc = {
        "version": KEYRING_VERSION,
        "keys": [k.to_json(include_location=True) for k in updated],
    }
    write_private(folder / KEYRING_FILE, json.dumps(doc, indent=2).encode())
    return updated


def _load_generated(folder: Path, record: PublishedKey) -> PrivateKey:
    path = folder / record.location
    if not path.is_file():
        raise KeyringError(f"the private key of active key {record.keyid} is missing: {path}")
    check_private(path)
    key = PrivateKey.from_pem(path.read_bytes())
    if key.public.keyid != record.keyid:
        raise KeyringError(f"{path} does not hold key {record.keyid}")
    return key


def _load_pem(path: Path, password: bytes | None) -> PrivateKey:
    try:
        return PrivateKey.from_pem(path.read_bytes(), password)
    except OSError as exc:
        raise KeyringError(f"cannot read the service key {path}: {exc}") from exc
    except KeyLoadError as exc:
        raise KeyringError(f"{path}: {exc}") from exc

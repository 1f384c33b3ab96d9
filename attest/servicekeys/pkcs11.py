"""Service keys held in an HSM through PKCS#11 (RFC 7512 URIs; SoftHSM in the tests).

The private key never leaves the token: Zoll asks it for ECDSA (P-256, over a SHA-256
digest computed here, so it works with tokens that lack CKM_ECDSA_SHA256) or EdDSA
signatures and reads the public half once.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature

from attest.keys import KeyLoadError, PublicKey
from attest.servicekeys.files import KeyringError

_PATH_ATTRS = {"token", "object", "id", "type", "manufacturer", "model", "serial", "slot-id"}
_QUERY_ATTRS = {"module-path", "module-name", "pin-value", "pin-source"}


class Pkcs11Error(KeyringError):
    """The token, key or module named by a PKCS#11 URI cannot be used."""


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 `pkcs11:` URI Zoll uses to find a signing key."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    module_path: str | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        if not uri.startswith("pkcs11:"):
            raise Pkcs11Error("a PKCS#11 URI starts with 'pkcs11:'")
        path, _, query = uri[len("pkcs11:") :].partition("?")
        values: dict[str, str] = {}
        key_id: bytes | None = None
        for part, allowed, sep in ((path, _PATH_ATTRS, ";"), (query, _QUERY_ATTRS, "&")):
            for item in filter(None, part.split(sep)):
                name, eq, value = item.partition("=")
                if not eq or name not in allowed:
                    raise Pkcs11Error(f"unsupported PKCS#11 URI attribute {name!r}")
                if name in values or (name == "id" and key_id is not None):
                    raise Pkcs11Error(f"PKCS#11 URI attribute {name!r} appears twice")
                if name == "id":
                    key_id = unquote_to_bytes(value)
                else:
                    values[name] = unquote(value)
        if values.get("type", "private") != "private":
            raise Pkcs11Error("the URI must name the private key (type=private)")
        if values.get("object") is None and key_id is None:
            raise Pkcs11Error("the URI must name the key by 'object' (label) or 'id'")
        return cls(
            token=values.get("token"),
            object=values.get("object"),
            id=key_id,
            module_path=values.get("module-path"),
            pin_value=values.get("pin-value"),
            pin_source=values.get("pin-source"),
        )

    def redacted(self) -> str:
        """The URI without the PIN, for keyring records and logs."""
        parts = []
        if self.token:
            parts.append(f"token={self.token}")
        if self.object:
            parts.append(f"object={self.object}")
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        query = f"?module-path={self.module_path}" if self.module_path else ""
        return "pkcs11:" + ";".join([*parts, "type=private"]) + query


def _read_pin(uri: Pkcs11Uri, fallback: str | None) -> str | None:
    if uri.pin_value is not None:
        return uri.pin_value
    if uri.pin_source is not None:
        source = uri.pin_source.removeprefix("file:")
        try:
            return Path(source).read_text().strip()
        except OSError as exc:
            raise Pkcs11Error(f"cannot read the PIN from {source}: {exc}") from exc
    return fallback


class Pkcs11Signer:
    """A `Signer` whose private key stays in a PKCS#11 token."""

    def __init__(self, uri: str, *, module: str | None = None, pin: str | None = None) -> None:
        self.uri = Pkcs11Uri.parse(uri)
        module_path = self.uri.module_path or module
        if not module_path:
            raise Pkcs11Error("no PKCS#11 module: set module-path in the URI or the setting")
        self._lock = threading.Lock()
        try:
            lib = pkcs11.lib(module_path)
            token = lib.get_token(token_label=self.uri.token)
            self._session = token.open(user_pin=_read_pin(self.uri, pin))
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as exc:
            raise Pkcs11Error(f"cannot open the token for {self.uri.redacted()}: {exc!r}") from exc
        try:
            private = self._session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=self.uri.object, id=self.uri.id
            )
            public_obj = self._session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, label=self.uri.object, id=self.uri.id
            )
            if not isinstance(private, SignMixin) or not isinstance(public_obj, pkcs11.PublicKey):
                raise Pkcs11Error("the token returned objects of the wrong class")
            self._private = private
            self.public = self._public_key(public_obj)
        except (pkcs11.PKCS11Error, KeyLoadError, ValueError) as exc:
            self._session.close()
            raise Pkcs11Error(f"no usable key pair at {self.uri.redacted()}: {exc!r}") from exc

    def _public_key(self, obj: pkcs11.PublicKey) -> PublicKey:
        if obj.key_type == KeyType.EC:
            public = PublicKey.from_crypto(
                serialization.load_der_public_key(encode_ec_public_key(obj))
            )
            if public.algorithm != "ecdsa-p256":
                raise Pkcs11Error(f"service keys must be P-256 or Ed25519, not {public.algorithm}")
            return public
        if obj.key_type == KeyType.EC_EDWARDS:
            point = bytes(obj[Attribute.EC_POINT])
            raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
            return PublicKey.from_crypto(ed25519.Ed25519PublicKey.from_public_bytes(raw))
        raise Pkcs11Error(f"service keys must be EC or Ed25519, not {obj.key_type!r}")

    def sign(self, data: bytes) -> bytes:
        with self._lock:
            try:
                if self.public.algorithm == "ed25519":
                    return self._private.sign(data, mechanism=Mechanism.EDDSA)
                digest = hashlib.sha256(data).digest()
                return encode_ecdsa_signature(self._private.sign(digest, mechanism=Mechanism.ECDSA))
            except pkcs11.PKCS11Error as exc:
                raise Pkcs11Error(f"the token refused to sign: {exc!r}") from exc

    def close(self) -> None:
        with self._lock:
            self._session.close()

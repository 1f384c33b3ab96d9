"""Public and private keys for signing and verifying: ECDSA P-256/P-384, Ed25519, RSA.

Key ids are the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo, so the same key
has the same id everywhere (cosign, in-toto tooling and Zoll's `/api/v1/keys`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

KeyAlgorithm = Literal["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa"]
PublicKeyTypes = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKeyTypes = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class KeyLoadError(ValueError):
    """A key cannot be loaded or is of an algorithm Zoll does not accept."""


def _algorithm_of(key: PublicKeyTypes) -> KeyAlgorithm:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyLoadError(f"RSA keys must have at least 2048 bits, not {key.key_size}")
        return "rsa"
    if isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    if isinstance(key.curve, ec.SECP384R1):
        return "ecdsa-p384"
    raise KeyLoadError(f"unsupported elliptic curve {key.curve.name}")


@dataclass(frozen=True)
class PublicKey:
    """A verification key with its stable id."""

    key: PublicKeyTypes
    algorithm: KeyAlgorithm
    keyid: str

    @classmethod
    def from_crypto(cls, key: object) -> PublicKey:
        if not isinstance(
            key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
        ):
            raise KeyLoadError(f"unsupported public key type {type(key).__name__}")
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, _algorithm_of(key), hashlib.sha256(der).hexdigest())

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyLoadError(f"not a PEM public key: {exc}") from exc
        return cls.from_crypto(key)

    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether `signature` over `data` is valid (hash chosen by key type, as cosign does)."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            elif isinstance(self.key, rsa.RSAPublicKey):
                try:
                    self.key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
                    self.key.verify(signature, data, pss, hashes.SHA256())
            else:
                digest = hashes.SHA384() if self.algorithm == "ecdsa-p384" else hashes.SHA256()
                self.key.verify(signature, data, ec.ECDSA(digest))
        except InvalidSignature:
            return False
        return True

    def verify_sha256(self, signature: bytes, data: bytes) -> bool:
        """Like `verify`, but ECDSA over SHA-256 whatever the curve: Fulcio certificates and
        cosign sign SHA-256 digests even with P-384 keys."""
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            try:
                self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
                return True
            except InvalidSignature:
                pass
        return self.verify(signature, data)


@dataclass(frozen=True)
class PrivateKey:
    """A signing key (Zoll's service key, or a test key)."""

    key: PrivateKeyTypes
    public: PublicKey

    @classmethod
    def generate(cls, algorithm: KeyAlgorithm = "ecdsa-p256") -> PrivateKey:
        key: PrivateKeyTypes
        if algorithm == "ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ecdsa-p384":
            key = ec.generate_private_key(ec.SECP384R1())
        elif algorithm == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        return cls(key, PublicKey.from_crypto(key.public_key()))

    @classmethod
    def from_pem(cls, pem: bytes, password: bytes | None = None) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise KeyLoadError(f"not a usable PEM private key: {exc}") from exc
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            raise KeyLoadError(f"unsupported private key type {type(key).__name__}")
        return cls(key, PublicKey.from_crypto(key.public_key()))

    def pem(self, password: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        digest = hashes.SHA384() if self.public.algorithm == "ecdsa-p384" else hashes.SHA256()
        return self.key.sign(data, ec.ECDSA(digest))

"""A minimal private Sigstore instance for tests: a Fulcio-like CA, a CT log, a Rekor key.

It issues short-lived code-signing certificates with the Fulcio identity extensions and
an embedded SCT, signs Rekor "Signed Entry Timestamps", and describes itself in a
`trusted_root.json`, exactly what a sovereign Sigstore deployment hands its verifiers.
Only legacy cosign material (certificate + Rekor bundle annotations) is produced; the
Merkle inclusion proofs of v0.2+ bundles are out of its scope.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from attest.keys import PrivateKey

FULCIO = "1.3.6.1.4.1.57264.1."
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
START = "2020-01-01T00:00:00Z"


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _der_octets(raw: bytes) -> bytes:
    if len(raw) < 128:
        return bytes([0x04, len(raw)]) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(length)]) + length + raw


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _log_key(key: ec.EllipticCurvePrivateKey) -> dict[str, object]:
    der = _spki(key.public_key())
    return {
        "baseUrl": "https://log.zoll.test",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": base64.b64encode(der).decode(),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": START},
        },
        "logId": {"keyId": base64.b64encode(hashlib.sha256(der).digest()).decode()},
    }


@dataclass
class PrivateSigstore:
    ca_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    log_index: int = 0

    def __post_init__(self) -> None:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zoll.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, "zoll-test-fulcio"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA384())
        )

    def trusted_root(self) -> bytes:
        der = self.ca.public_bytes(serialization.Encoding.DER)
        root = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [_log_key(self.rekor_key)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "zoll.test", "commonName": "zoll-test-fulcio"},
                    "uri": "https://fulcio.zoll.test",
                    "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()}]},
                    "validFor": {"start": START},
                }
            ],
            "ctlogs": [_log_key(self.ct_key)],
            "timestampAuthorities": [],
        }
        return json.dumps(root).encode()

    def _builder(
        self, key: PrivateKey, identity: str, issuer: str, claims: dict[str, str], now: dt.datetime
    ) -> x509.CertificateBuilder:
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca.subject)
            .public_key(key.key.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(FULCIO + "1"), issuer.encode()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(FULCIO + "8"), _der_utf8(issuer)),
                critical=False,
            )
        )
        for suffix, value in claims.items():
            raw = _der_utf8(value) if int(suffix) >= 8 else value.encode()
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(FULCIO + suffix), raw), critical=False
            )
        return builder

    def issue(
        self, identity: str, issuer: str, claims: dict[str, str] | None = None
    ) -> tuple[PrivateKey, x509.Certificate]:
        """A signing key and its certificate, with an SCT from this instance's CT log."""
        key = PrivateKey.generate("ecdsa-p256")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        builder = self._builder(key, identity, issuer, claims or {}, now)
        precert = builder.sign(self.ca_key, hashes.SHA384())
        timestamp = int(now.timestamp() * 1000)
        tbs = precert.tbs_certificate_bytes
        issuer_key_hash = hashlib.sha256(_spki(self.ca_key.public_key())).digest()
        signed = (
            struct.pack("!BBQH", 0, 0, timestamp, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack("!H", 0)
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki(self.ct_key.public_key())).digest()
        sct = (
            struct.pack("!B", 0)
            + log_id
            + struct.pack("!QH", timestamp, 0)
            + struct.pack("!BBH", 4, 3, len(signature))
            + signature
        )
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        cert = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST, _der_octets(sct_list)), critical=False
        ).sign(self.ca_key, hashes.SHA384())
        return key, cert

    def log(self, body: dict[str, object]) -> str:
        """A cosign Rekor bundle annotation for `body`, with a valid SET."""
        encoded = base64.b64encode(rfc8785.dumps(body)).decode()
        log_id = hashlib.sha256(_spki(self.rekor_key.public_key())).hexdigest()
        self.log_index += 1
        payload = {
            "body": encoded,
            "integratedTime": int(dt.datetime.now(dt.UTC).timestamp()),
            "logID": log_id,
            "logIndex": self.log_index,
        }
        signed = rfc8785.dumps(payload)
        set_ = self.rekor_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return json.dumps(
            {"SignedEntryTimestamp": base64.b64encode(set_).decode(), "Payload": payload}
        )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def hashedrekord(signature: bytes, cert: x509.Certificate, payload: bytes) -> dict[str, object]:
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(pem(cert).encode()).decode()},
            },
        },
    }


def intoto(signature: bytes, cert: x509.Certificate, payload: bytes) -> dict[str, object]:
    """An `intoto` v0.0.2 entry as Rekor records a cosign attestation."""
    return {
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": "application/vnd.in-toto+json",
                    "signatures": [
                        {
                            "publicKey": base64.b64encode(pem(cert).encode()).decode(),
                            "sig": base64.b64encode(base64.b64encode(signature)).decode(),
                        }
                    ],
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
            }
        },
    }

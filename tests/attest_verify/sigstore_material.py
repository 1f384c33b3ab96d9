"""Real Sigstore test material (tests/fixtures/sigstore) and what it was issued to.

The identities, issuers and trusted roots are those sigstore-python's own tests state
for these files (test/unit/verify/test_verifier.py, test_policy.py, test_models.py at
the commit the fixtures README names): every bundle was issued by the Sigstore staging
instance, so it verifies against the staging root shipped in the `sigstore` package.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.paths import FIXTURES

SIGSTORE = FIXTURES / "sigstore"
GITHUB_OAUTH = "https://github.com/login/oauth"
GITHUB_ACTIONS = "https://token.actions.githubusercontent.com"
GOOGLE = "https://accounts.google.com"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)


@dataclass(frozen=True)
class Fixture:
    name: str
    """The bundle is `<name>.sigstore[.json]`."""
    identity: str
    issuer: str
    subject: str = ""
    """For a DSSE bundle: the digest its in-toto statement's subject names."""

    @property
    def dsse(self) -> bool:
        return bool(self.subject)

    @property
    def artifact_path(self) -> Path:
        return SIGSTORE / self.name

    @property
    def bundle_path(self) -> Path:
        for suffix in (".sigstore", ".sigstore.json"):
            path = SIGSTORE / f"{self.name}{suffix}"
            if path.is_file():
                return path
        raise FileNotFoundError(self.name)

    def bundle(self) -> bytes:
        return self.bundle_path.read_bytes()


POSITIVE = (
    Fixture("bundle.txt", "a@tny.town", GITHUB_OAUTH),
    Fixture("bundle_v3.txt", "william@yossarian.net", GITHUB_OAUTH),
    Fixture("bundle_v3_alt.txt", "william@yossarian.net", GITHUB_OAUTH),
    Fixture("staging-rekor-v2.txt", "jku@goto.fi", GITHUB_OAUTH),
    Fixture(
        "a.dsse.staging-rekor-v2.txt",
        BEACON,
        GITHUB_ACTIONS,
        subject="sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf",
    ),
)


def legacy_cosign_layer(bundle: bytes) -> tuple[bytes, dict[str, str]]:
    """The signature and cosign annotations a legacy `.sig` layer would carry for a
    v0.1-v0.3 hashedrekord bundle: certificate PEM, and the Rekor bundle (SET + entry)."""
    body = json.loads(bundle)
    material = body["verificationMaterial"]
    raw = (
        material.get("certificate", {}).get("rawBytes")
        or (material["x509CertificateChain"]["certificates"][0]["rawBytes"])
    )
    cert = x509.load_der_x509_certificate(base64.b64decode(raw))
    entry = material["tlogEntries"][0]
    rekor = {
        "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": int(entry["integratedTime"]),
            "logIndex": int(entry["logIndex"]),
            "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
        },
    }
    annotations = {
        "dev.cosignproject.cosign/signature": body["messageSignature"]["signature"],
        "dev.sigstore.cosign/certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "dev.sigstore.cosign/bundle": json.dumps(rekor),
    }
    return base64.b64decode(body["messageSignature"]["signature"]), annotations

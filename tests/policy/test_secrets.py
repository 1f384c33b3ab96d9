"""Secret patterns and entropy: real-shaped credentials are found, placeholders are not."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from policy.analyzer.secrets import StreamScanner, scan


def _token(n: int) -> str:
    return base64.b32encode(os.urandom(n)).decode().rstrip("=")


def test_shaped_credentials_are_found_and_redacted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    gh = "ghp_" + _token(30)[:36]
    text = pem + f"\nGITHUB={gh}\n".encode()
    hits = scan(text)
    assert [h.kind for h in hits] == ["private key", "GitHub token"]
    assert all(gh not in h.preview and len(h.fingerprint) == 16 for h in hits)


def test_entropy_separates_tokens_from_placeholders() -> None:
    real = base64.urlsafe_b64encode(os.urandom(24)).decode()
    assert [h.kind for h in scan(f"db_password = {real}\n".encode())] == ["high-entropy secret"]
    for harmless in (
        "password = changeme-changeme-please",
        "token: ${TOKEN_FROM_VAULT_AT_RUNTIME}",
        "secret = aaaaaaaaaaaaaaaaaaaaaaaa",
        "def tokenize(source_text_buffer):",
    ):
        assert scan(harmless.encode()) == [], harmless


def test_secret_split_across_chunks_is_found_once() -> None:
    key_id = "AKIA" + _token(20)[:16]
    data = b"x" * 5000 + f"\naws={key_id}\n".encode() + b"y" * 5000
    scanner = StreamScanner()
    for i in range(0, len(data), 1000):
        scanner.feed(data[i : i + 1000])
    assert [h.kind for h in scanner.hits] == ["AWS access key"]

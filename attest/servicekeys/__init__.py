"""Zoll's service keys: generated, from a PEM file, or in an HSM; rotated with history."""

from attest.servicekeys.files import KeyPermissionError, KeyringError
from attest.servicekeys.keyring import (
    PublishedKey,
    ServiceKeyring,
    ServiceKeySettings,
    read_keyring,
)
from attest.servicekeys.pkcs11 import Pkcs11Error, Pkcs11Signer, Pkcs11Uri

__all__ = [
    "KeyPermissionError",
    "KeyringError",
    "Pkcs11Error",
    "Pkcs11Signer",
    "Pkcs11Uri",
    "PublishedKey",
    "ServiceKeySettings",
    "ServiceKeyring",
    "read_keyring",
]

"""This node's identity: its name, its witness key, and the card it publishes.

The witness key is Ed25519 (tlog-cosignature v1 needs it) and separate from the
attestation key, as the spec asks: a witness key must not sign anything else. It is
generated into `<data_dir>/federation/` on the first start, under a file lock so that
worker processes starting together create one key.
"""

from __future__ import annotations

import fcntl
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime

from attest.keys import PrivateKey
from attest.servicekeys import ServiceKeyring
from attest.servicekeys.files import ensure_private_dir, write_private
from attest.tlog.cosignature import Cosigner
from attest.tlog.note import NoteVerifier
from registry.config import Config
from registry.federation.card import NodeCard, sign_card

WITNESS_KEY_FILE = "witness-ed25519.pem"


def node_name(config: Config, origin: str) -> str:
    """The configured name, or the log origin's host (`zoll.land.example/log` →
    `zoll.land.example`)."""
    return config.federation.name or origin.split("/", 1)[0]


def witness_name(origin: str) -> str:
    """The cosigner name: the log origin's host with `/witness` (a schema-less URL)."""
    return origin.split("/", 1)[0] + "/witness"


def load_witness_key(config: Config) -> PrivateKey:
    """`federation.witness_key_file`, or the one in the data folder (made when missing)."""
    if config.federation.witness_key_file is not None:
        return PrivateKey.from_pem(config.federation.witness_key_file.read_bytes())
    folder = ensure_private_dir(config.data_dir / "federation")
    path = folder / WITNESS_KEY_FILE
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            write_private(path, PrivateKey.generate("ed25519").pem(), exclusive=True)
        return PrivateKey.from_pem(path.read_bytes())


@dataclass
class NodeIdentity:
    name: str
    public_url: str | None
    log_origin: str
    keyring: ServiceKeyring
    witness_key: PrivateKey

    @classmethod
    def load(cls, config: Config, keyring: ServiceKeyring, origin: str) -> NodeIdentity:
        """Blocking (file I/O): call from a thread."""
        return cls(
            node_name(config, origin),
            config.http.public_url,
            origin,
            keyring,
            load_witness_key(config),
        )

    @property
    def witness(self) -> Cosigner:
        return Cosigner(witness_name(self.log_origin), self.witness_key.public)

    @property
    def log_verifier(self) -> NoteVerifier:
        return NoteVerifier.for_key(self.log_origin, self.keyring.signer.public)

    def card(self, url: str) -> NodeCard:
        base = self.public_url or url
        return NodeCard(
            name=self.name,
            url=base.rstrip("/"),
            log_origin=self.log_origin,
            log_key=self.log_verifier.vkey(),
            witness_key=self.witness.vkey(),
            attestation_keys=tuple(k.public_pem for k in self.keyring.public_keys()),
            issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def signed_card(self, url: str) -> bytes:
        return sign_card(self.card(url), self.keyring.signer)


def host_of(url: str) -> str:
    """`host:port` of a node URL, as OCI references name registries."""
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute URL")
    return parts.netloc

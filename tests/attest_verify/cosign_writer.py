"""Write cosign-format signatures, attestations, SBOMs and sigstore bundles for tests.

Cosign itself cannot be installed here, so this writes exactly what it writes
(sigstore/cosign specs/SIGNATURE_SPEC.md, ATTESTATION_SPEC.md, BUNDLE_SPEC.md):
- legacy tags `sha256-<hex>.sig|.att|.sbom`: an OCI image manifest with a small config
  and one layer per signature, annotations carrying signature/certificate/Rekor bundle;
- OCI 1.1 referrers: an artifact manifest with `subject`, `artifactType` and the empty
  config, one layer holding a sigstore bundle (or DSSE envelopes);
- optionally the referrers tag scheme index `sha256-<hex>` for registries without the
  referrers API.

Everything goes through an `OCISink`, so the same writer can later push into a
running Zoll (an HTTP sink) instead of an OCI image layout directory.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from attest import dsse
from attest.keys import PrivateKey
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest

REF_NAME = "org.opencontainers.image.ref.name"
SIGNATURE = "dev.cosignproject.cosign/signature"
CERTIFICATE = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
REKOR_BUNDLE = "dev.sigstore.cosign/bundle"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = b"{}"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class BlobRef:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        return out


class OCISink(Protocol):
    """Where the writer puts content: an OCI layout here, a registry later."""

    def put_blob(self, data: bytes) -> str: ...

    def put_manifest(self, raw: bytes, media_type: str, tag: str | None) -> str: ...

    def get_manifest(self, tag: str) -> bytes | None: ...


class LayoutSink:
    """An `OCISink` over an OCI image layout directory (as `buildah push oci:` writes)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _index(self) -> dict[str, Any]:
        index: dict[str, Any] = json.loads((self.root / "index.json").read_bytes())
        return index

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / "blobs" / "sha256" / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"sha256:{digest}"

    def put_manifest(self, raw: bytes, media_type: str, tag: str | None) -> str:
        digest = self.put_blob(raw)
        index = self._index()
        entries = [
            m
            for m in index.get("manifests", [])
            if not (tag and m.get("annotations", {}).get(REF_NAME) == tag)
        ]
        entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
        if tag:
            entry["annotations"] = {REF_NAME: tag}
        body = json.loads(raw)
        if "artifactType" in body:
            entry["artifactType"] = body["artifactType"]
        entries.append(entry)
        index["manifests"] = entries
        (self.root / "index.json").write_bytes(canonical(index))
        return digest

    def get_manifest(self, tag: str) -> bytes | None:
        for m in self._index().get("manifests", []):
            if m.get("annotations", {}).get(REF_NAME) == tag:
                return (self.root / "blobs" / "sha256" / m["digest"].split(":")[1]).read_bytes()
        return None


def simple_signing_payload(subject: Digest, reference: str = "zoll.test/image") -> bytes:
    return canonical(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": str(subject)},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )


def statement(subject: Digest, predicate_type: str, predicate: dict[str, Any]) -> bytes:
    return canonical(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {subject.algorithm: subject.encoded}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def key_bundle_dsse(payload: bytes, key: PrivateKey) -> bytes:
    """A v0.3 sigstore bundle with a public-key hint and a DSSE envelope (cosign --key)."""
    envelope = dsse.sign("application/vnd.in-toto+json", payload, [key])
    return canonical(
        {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": key.public.keyid}, "tlogEntries": []},
            "dsseEnvelope": envelope.to_json(),
        }
    )


def key_bundle_message(subject: Digest, key: PrivateKey, manifest: bytes) -> bytes:
    """A v0.3 bundle with a message signature over the image manifest bytes."""
    return canonical(
        {
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": key.public.keyid}, "tlogEntries": []},
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(bytes.fromhex(subject.encoded)).decode(),
                },
                "signature": base64.b64encode(key.sign(manifest)).decode(),
            },
        }
    )


class CosignWriter:
    """Attach cosign-format content to an image digest through a sink."""

    def __init__(self, sink: OCISink) -> None:
        self.sink = sink
        self.written: dict[str, bytes] = {}
        """Manifests written by digest (for indexes that must state their sizes)."""

    def _manifest(self, raw: bytes, media_type: str, tag: str | None) -> str:
        digest = self.sink.put_manifest(raw, media_type, tag)
        self.written[digest] = raw
        return digest

    def _blob(
        self, data: bytes, media_type: str, annotations: dict[str, str] | None = None
    ) -> BlobRef:
        return BlobRef(media_type, self.sink.put_blob(data), len(data), annotations)

    def _append_to_tag(self, tag: str, layer: BlobRef) -> str:
        """Add `layer` to the manifest under `tag` (cosign appends signatures)."""
        layers: list[dict[str, Any]] = []
        existing = self.sink.get_manifest(tag)
        if existing is not None:
            layers = json.loads(existing)["layers"]
        layers.append(layer.descriptor())
        config = canonical(
            {
                "architecture": "",
                "config": {},
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            }
        )
        cfg = self._blob(config, mt.OCI_CONFIG)
        manifest = canonical(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": cfg.descriptor(),
                "layers": layers,
            }
        )
        return self._manifest(manifest, mt.OCI_MANIFEST, tag)

    @staticmethod
    def tag(subject: Digest, suffix: str) -> str:
        return f"{subject.algorithm}-{subject.encoded}{suffix}"

    def sign(
        self,
        subject: Digest,
        key: PrivateKey | None,
        *,
        payload: bytes | None = None,
        annotations: dict[str, str] | None = None,
    ) -> str:
        """A `.sig` layer: simple-signing payload, signature annotation (key-based unless
        `annotations` supply keyless certificate/bundle material)."""
        body = payload if payload is not None else simple_signing_payload(subject)
        notes = dict(annotations or {})
        if key is not None:
            notes[SIGNATURE] = base64.b64encode(key.sign(body)).decode()
        layer = self._blob(body, mt.COSIGN_SIMPLESIGNING, notes)
        return self._append_to_tag(self.tag(subject, ".sig"), layer)

    def attest(
        self,
        subject: Digest,
        key: PrivateKey,
        predicate_type: str,
        predicate: dict[str, Any],
        *,
        statement_bytes: bytes | None = None,
    ) -> str:
        """An `.att` layer: a DSSE envelope over an in-toto statement."""
        body = statement_bytes or statement(subject, predicate_type, predicate)
        envelope = dsse.sign("application/vnd.in-toto+json", body, [key])
        layer = self._blob(
            envelope.to_bytes(),
            mt.DSSE_ENVELOPE,
            {SIGNATURE: "", "predicateType": predicate_type},
        )
        return self._append_to_tag(self.tag(subject, ".att"), layer)

    def attach_envelope(
        self, subject: Digest, envelope: bytes, predicate_type: str, annotations: dict[str, str]
    ) -> str:
        """An `.att` layer with a ready envelope (keyless: certificate and Rekor bundle)."""
        notes = {SIGNATURE: "", "predicateType": predicate_type, **annotations}
        layer = self._blob(envelope, mt.DSSE_ENVELOPE, notes)
        return self._append_to_tag(self.tag(subject, ".att"), layer)

    def attach_sbom(self, subject: Digest, sbom: bytes, media_type: str = "text/spdx+json") -> str:
        """A `.sbom` attachment (unsigned, deprecated in cosign, still found in the wild)."""
        layer = self._blob(sbom, media_type)
        return self._append_to_tag(self.tag(subject, ".sbom"), layer)

    def attach_referrer(
        self,
        subject: Digest,
        subject_media_type: str,
        artifact_type: str,
        layers: list[tuple[bytes, str, dict[str, str] | None]],
        annotations: dict[str, str] | None = None,
    ) -> str:
        """An OCI 1.1 artifact manifest whose `subject` is the image."""
        empty = self._blob(EMPTY_CONFIG, mt.OCI_EMPTY)
        refs = [self._blob(data, media_type, notes) for data, media_type, notes in layers]
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": empty.descriptor(),
            "layers": [r.descriptor() for r in refs],
            "subject": {"mediaType": subject_media_type, "digest": str(subject), "size": 0},
        }
        if annotations:
            body["annotations"] = annotations
        return self._manifest(canonical(body), mt.OCI_MANIFEST, None)

    def attach_bundle(
        self,
        subject: Digest,
        subject_media_type: str,
        bundle: bytes,
        predicate_type: str | None = None,
    ) -> str:
        """A sigstore bundle as a referrer, as `cosign attest --new-bundle-format` does."""
        media_type = json.loads(bundle).get("mediaType", BUNDLE_V03)
        notes = {"dev.sigstore.bundle.content": "dsse-envelope"}
        if predicate_type:
            notes["dev.sigstore.bundle.predicateType"] = predicate_type
        return self.attach_referrer(
            subject, subject_media_type, media_type, [(bundle, media_type, None)], notes
        )

    def referrers_tag_index(self, subject: Digest, referrers: list[str]) -> str:
        """The referrers tag scheme fallback: index `sha256-<hex>` listing referrers."""
        entries = []
        for digest in referrers:
            raw = self.written[digest]
            body = json.loads(raw)
            entry = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(raw)}
            if "artifactType" in body:
                entry["artifactType"] = body["artifactType"]
            entries.append(entry)
        index = canonical({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
        return self.sink.put_manifest(index, mt.OCI_INDEX, self.tag(subject, ""))

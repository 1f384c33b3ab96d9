"""OCI artifacts that carry Zoll's attestations to the clients that check them.

Two forms of one signed envelope, because verifiers differ:

- An OCI 1.1 referrer (cosign's BUNDLE_SPEC): an image manifest with
  `artifactType: application/vnd.dev.sigstore.bundle.v0.3+json`, the empty config, one
  layer holding a sigstore bundle v0.3 (the DSSE envelope plus `publicKey.hint`), and
  `subject` = the image. cosign ≥ 2.4 (`verify-attestation --key`) finds it through the
  referrers API and verifies it with sigstore-go.
- The cosign tag form `sha256-<hex>.att`: an image manifest whose layers are DSSE
  envelopes (`application/vnd.dsse.envelope.v1+json`, annotated with `predicateType`).
  Kyverno, sigstore policy-controller (key authorities) and older cosign read only this.

The bundle names the key only by a hint (base64 SHA-256 of the SPKI, as cosign and
sigstore-go compute it) and has no transparency-log entries: Zoll's own log is not Rekor,
so verifiers pass `--insecure-ignore-tlog` / `ignoreTlog: true` and check Zoll's log
with `zoll log verify-inclusion` instead. See docs/attestations.md.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from attest.dsse import Envelope, pae
from attest.keys import PublicKey
from attest.signing import envelope_statement
from attest.tlog.entries import LogEntry
from registry.oci import mediatypes as mt
from registry.oci.descriptor import Descriptor
from registry.oci.digest import Digest
from registry.oci.manifest import ManifestError, parse_manifest

EMPTY_JSON: Final = b"{}"
COSIGN_SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
COSIGN_PREDICATE_ANNOTATION: Final = "predicateType"
BUNDLE_CONTENT_ANNOTATION: Final = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION: Final = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION: Final = "org.opencontainers.image.created"
ZOLL_KEYID_ANNOTATION: Final = "dev.zoll.attestation.keyid"
ZOLL_LOG_ORIGIN_ANNOTATION: Final = "dev.zoll.tlog.origin"
ZOLL_LOG_INDEX_ANNOTATION: Final = "dev.zoll.tlog.index"
ZOLL_LOG_PROOF_ANNOTATION: Final = "dev.zoll.tlog.proof"
"""A C2SP tlog proof (text) of the statement's log entry, to a checkpoint with the
cosignatures its witnesses had given: offline proof of the index, hence of which of a
signer's statements is the latest."""
MAX_COSIGN_LAYERS: Final = 1000
"""cosign refuses signature manifests with more layers than this."""
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


class ArtifactError(ValueError):
    """The attestation cannot be packaged (bad subject, full `.att` manifest, …)."""


@dataclass(frozen=True)
class Blob:
    descriptor: Descriptor
    data: bytes

    @classmethod
    def of(cls, media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> Blob:
        return cls(
            Descriptor(media_type, Digest.of(data), len(data), dict(annotations or {})), data
        )


@dataclass(frozen=True)
class PushManifest:
    """A manifest to push (by digest, and by `tag` if set) after its `blobs`."""

    raw: bytes
    blobs: tuple[Blob, ...]
    tag: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    media_type: str = mt.OCI_MANIFEST

    @property
    def digest(self) -> Digest:
        return Digest.of(self.raw)

    def descriptor(self) -> Descriptor:
        """As it appears in a referrers index or an OCI layout's index.json."""
        return Descriptor(
            self.media_type,
            self.digest,
            len(self.raw),
            dict(self.annotations or {}),
            self.artifact_type,
        )


@dataclass(frozen=True)
class AttestationArtifacts:
    referrer: PushManifest
    cosign: PushManifest
    bundle: bytes


def cosign_tag(subject: Digest, suffix: str = "att") -> str:
    """cosign's tag for things attached to `subject`: `sha256-<hex>.<suffix>`."""
    return f"{subject.algorithm}-{subject.encoded}.{suffix}"


def key_hint(public: PublicKey) -> str:
    """The publicKey hint cosign and sigstore-go write: base64 SHA-256 of the DER SPKI."""
    return base64.b64encode(bytes.fromhex(public.keyid)).decode()


def sigstore_bundle(envelope: Envelope, public: PublicKey) -> bytes:
    """A sigstore bundle v0.3 (protobuf JSON) around a key-signed DSSE envelope."""
    if not any(
        s.keyid in ("", public.keyid) and public.verify(s.sig, _pae(envelope))
        for s in envelope.signatures
    ):
        raise ArtifactError(f"the envelope is not signed by key {public.keyid}")
    bundle = {
        "mediaType": mt.SIGSTORE_BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": key_hint(public)}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(envelope.payload).decode(),
            "payloadType": envelope.payload_type,
            "signatures": [
                {"sig": base64.b64encode(s.sig).decode(), "keyid": s.keyid}
                for s in envelope.signatures
            ],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


def _pae(envelope: Envelope) -> bytes:
    return pae(envelope.payload_type, envelope.payload)


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _subject_descriptor(subject: Descriptor) -> dict[str, Any]:
    if subject.media_type not in mt.MANIFESTS:
        raise ArtifactError(f"attestations attach to manifests, not {subject.media_type}")
    return {"mediaType": subject.media_type, "digest": str(subject.digest), "size": subject.size}


def _created(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_subject(statement: dict[str, Any], subject: Descriptor) -> str:
    digests = [s.get("digest", {}).get(subject.digest.algorithm) for s in statement["subject"]]
    if subject.digest.encoded not in digests:
        raise ArtifactError(f"the statement's subjects do not include {subject.digest}")
    predicate_type: str = statement["predicateType"]
    return predicate_type


def referrer_manifest(
    bundle: bytes,
    subject: Descriptor,
    predicate_type: str,
    created: datetime,
    extra_annotations: dict[str, str],
) -> PushManifest:
    empty = Blob.of(mt.OCI_EMPTY, EMPTY_JSON)
    layer = Blob.of(mt.SIGSTORE_BUNDLE_V03, bundle)
    annotations = {
        CREATED_ANNOTATION: _created(created),
        BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
        BUNDLE_PREDICATE_ANNOTATION: predicate_type,
        **extra_annotations,
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": mt.SIGSTORE_BUNDLE_V03,
        "config": empty.descriptor.to_json(),
        "layers": [layer.descriptor.to_json()],
        "subject": _subject_descriptor(subject),
        "annotations": annotations,
    }
    return PushManifest(_dump(manifest), (empty, layer), None, mt.SIGSTORE_BUNDLE_V03, annotations)


def _existing_layers(existing: bytes | None) -> list[Descriptor]:
    if existing is None:
        return []
    try:
        manifest = parse_manifest(existing)
    except ManifestError as exc:
        raise ArtifactError(f"the existing .att manifest is invalid: {exc}") from exc
    if manifest.is_index:
        raise ArtifactError("the existing .att tag points at an index, not a manifest")
    return list(manifest.layers)


def cosign_attestation_manifest(
    envelope_json: bytes,
    subject: Descriptor,
    predicate_type: str,
    keyid: str,
    *,
    existing: bytes | None = None,
    replace: bool = False,
) -> PushManifest:
    """The `sha256-<hex>.att` manifest with this envelope added to what is already there.

    Layers already present stay (cosign appends); `replace` first drops this key's
    earlier layers of the same predicate type (like cosign attest --replace), never
    attestations others attached (other nodes' keys included). The same envelope twice
    is stored once.
    """
    layer = Blob.of(
        mt.DSSE_ENVELOPE,
        envelope_json,
        {
            COSIGN_SIGNATURE_ANNOTATION: "",
            COSIGN_PREDICATE_ANNOTATION: predicate_type,
            ZOLL_KEYID_ANNOTATION: keyid,
        },
    )
    layers = _existing_layers(existing)
    if replace:
        layers = [
            d
            for d in layers
            if d.annotations.get(COSIGN_PREDICATE_ANNOTATION) != predicate_type
            or d.annotations.get(ZOLL_KEYID_ANNOTATION) != keyid
        ]
    if all(d.digest != layer.descriptor.digest for d in layers):
        layers.append(layer.descriptor)
    return _cosign_manifest(layers, cosign_tag(subject.digest), (layer,))


def _cosign_manifest(
    layers: list[Descriptor], tag: str, new_blobs: tuple[Blob, ...] = ()
) -> PushManifest:
    """A cosign tag-scheme manifest of `layers`, with the config go-containerregistry
    writes for cosign's signature images."""
    if len(layers) > MAX_COSIGN_LAYERS:
        raise ArtifactError(f"the {tag} manifest would have more than {MAX_COSIGN_LAYERS} layers")
    config = {
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d in layers]},
        "config": {},
    }
    config_blob = Blob.of(mt.OCI_CONFIG, _dump(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_blob.descriptor.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    return PushManifest(_dump(manifest), (config_blob, *new_blobs), tag)


def attestation_artifacts(
    envelope: Envelope,
    subject: Descriptor,
    public: PublicKey,
    *,
    created: datetime | None = None,
    existing_att: bytes | None = None,
    replace: bool = False,
    log_entry: LogEntry | None = None,
    proof: str | None = None,
) -> AttestationArtifacts:
    """Everything to push so every common verifier finds the attestation on `subject`.

    `existing_att` is the current `sha256-<hex>.att` manifest, if the registry has one.
    `log_entry` (only once the attestation *is* logged) adds the log origin and index as
    annotations on the referrer, for auditors; verifiers never need them.
    """
    statement = envelope_statement(envelope)
    predicate_type = _check_subject(statement, subject)
    bundle = sigstore_bundle(envelope, public)
    extra = {ZOLL_KEYID_ANNOTATION: public.keyid}
    if log_entry is not None:
        extra[ZOLL_LOG_ORIGIN_ANNOTATION] = log_entry.origin
        extra[ZOLL_LOG_INDEX_ANNOTATION] = str(log_entry.index)
    if proof is not None:
        extra[ZOLL_LOG_PROOF_ANNOTATION] = proof
    referrer = referrer_manifest(
        bundle, subject, predicate_type, created or datetime.now(UTC), extra
    )
    cosign = cosign_attestation_manifest(
        envelope.to_bytes(),
        subject,
        predicate_type,
        public.keyid,
        existing=existing_att,
        replace=replace,
    )
    return AttestationArtifacts(referrer, cosign, bundle)


def merge_cosign_manifest(
    local: bytes | None, incoming: bytes, authoritative_keyids: set[str], tag: str
) -> PushManifest:
    """A cosign tag manifest (`.att`/`.sig`) holding both sides' layers: `incoming` (a
    peer's) is authoritative for the layers its own keys signed (older ones of those keys
    here are dropped, so only each node's latest statements stay), everything else from
    `local` stays, and a layer present on both sides is kept once. The config is rebuilt
    as cosign writes it. The layer blobs must already be present where this is pushed."""
    try:
        theirs = parse_manifest(incoming)
    except ManifestError as exc:
        raise ArtifactError(f"the peer's {tag} manifest is invalid: {exc}") from exc
    if theirs.is_index:
        raise ArtifactError(f"the peer's {tag} tag points at an index")
    mine = [
        d
        for d in _existing_layers(local)
        if d.annotations.get(ZOLL_KEYID_ANNOTATION) not in authoritative_keyids
    ]
    layers = list(mine)
    for desc in theirs.layers:
        if all(d.digest != desc.digest for d in layers):
            layers.append(desc)
    return _cosign_manifest(layers, tag)

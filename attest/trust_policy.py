"""Per-repository trust policies in YAML: who may sign, what must be attested.

A policy file holds named policies and rules choosing one per repository (first
matching glob wins, then `default`); a file with `signers`/`require` at the top level
is a single policy for every repository. Keys and in-toto material are referenced by
paths relative to the policy file and read when it is loaded, so a loaded policy is
self-contained and verification never touches the file system. See
docs/verification.md for the format.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attest.identity import IdentityError, KeylessIdentity, Signers, TrustedKey
from attest.keys import KeyLoadError, PublicKey
from attest.slsa import SlsaPolicy, SourceExpectation, TrustedBuilder
from attest.tlog.cosignature import CosignatureError, Cosigner
from attest.tlog.note import NoteError, NoteVerifier
from attest.verdicts import DurationError, parse_duration

MAX_POLICY_BYTES: Final = 1024 * 1024
DEFAULT_WHERE: Final[dict[str, dict[str, Any]]] = {
    "https://slsa.dev/verification_summary/v1": {"verificationResult": "PASSED"},
}
"""A verdict requirement without content tests asks for the verdict that admits: a VSA
that says FAILED is evidence against the image, never for it."""
MAX_LINK_FILES: Final = 256


class TrustPolicyError(ValueError):
    """A trust policy file is malformed; the message names the offending field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Keyless(_Model):
    issuer: str
    subject: str | None = None
    subject_regex: str | None = None
    claims: dict[str, str] = Field(default_factory=dict)


class _Signer(_Model):
    keyless: _Keyless | None = None
    key: str | None = None
    key_pem: str | None = None
    log_key: str | None = None
    """A Zoll node's log verifier key (vkey): its statements' tlog proofs are checked."""
    witness_key: str | None = None
    """A Zoll node's witness (cosigner) key (vkey): its cosignatures count."""

    @model_validator(mode="after")
    def _one_kind(self) -> _Signer:
        if sum(x is not None for x in (self.keyless, self.key, self.key_pem)) != 1:
            raise ValueError("a signer is exactly one of keyless, key, key_pem")
        return self


class _SignatureReq(_Model):
    signers: list[str] = Field(default_factory=list)


class _AttestationReq(_Model):
    predicate_type: str
    signers: list[str] = Field(default_factory=list)
    where: dict[str, Any] = Field(default_factory=dict)
    max_age: str | int | None = None


class _QuorumReq(_Model):
    k: int = Field(ge=1)
    nodes: list[str] = Field(min_length=1)
    says: Literal["passed", "reproduced"] = "passed"
    witnesses: int = Field(default=0, ge=0)
    max_age: str | int | None = None


class _Builder(_Model):
    id: str
    level: int = Field(default=1, ge=0, le=4)


class _Source(_Model):
    repository: str | None = None
    ref: str | None = None
    commit: str | None = None


class _SlsaReq(_Model):
    min_level: int = Field(default=1, ge=0, le=4)
    signers: list[str] = Field(default_factory=list)
    builders: list[_Builder] = Field(min_length=1)
    source: _Source | None = None


class _InTotoReq(_Model):
    layout: str
    layout_keys: list[str] = Field(min_length=1)
    links: str
    products: dict[str, str] = Field(default_factory=dict)
    image_product: str | None = None


class _Require(_Model):
    signature: _SignatureReq | bool | None = None
    attestations: list[_AttestationReq] = Field(default_factory=list)
    slsa: _SlsaReq | None = None
    in_toto: _InTotoReq | None = None
    quorum: _QuorumReq | None = None


class _Policy(_Model):
    description: str = ""
    signers: dict[str, _Signer] = Field(default_factory=dict)
    require: _Require


class _Rule(_Model):
    match: str
    policy: str


class _PolicyFile(_Model):
    version: int = 1
    policies: dict[str, _Policy] = Field(default_factory=dict)
    repositories: list[_Rule] = Field(default_factory=list)
    default: str | None = None


@dataclass(frozen=True)
class SignatureRequirement:
    signers: tuple[str, ...] = ()
    """Allowed signer names; empty means any signer of the policy."""


@dataclass(frozen=True)
class AttestationRequirement:
    predicate_type: str
    signers: tuple[str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)
    """Content tests on the predicate: {dotted path: value or list of values}."""
    max_age: timedelta | None = None
    """The statement's own time (e.g. a VSA's timeVerified) must be this recent."""


@dataclass(frozen=True)
class NodeKeys:
    """What a policy knows of a Zoll node beyond its attestation key."""

    log: NoteVerifier | None = None
    witness: Cosigner | None = None


@dataclass(frozen=True)
class QuorumRequirement:
    """At least `k` of `nodes` currently say `says` about the digest, each in a log
    checkpoint cosigned by at least `witnesses` of the other nodes' witnesses."""

    k: int
    nodes: tuple[str, ...]
    says: Literal["passed", "reproduced"] = "passed"
    witnesses: int = 0
    max_age: timedelta | None = None


@dataclass(frozen=True)
class SlsaRequirement:
    policy: SlsaPolicy
    signers: tuple[str, ...] = ()


@dataclass(frozen=True)
class InTotoRequirement:
    """A layout with its owner keys and links, read from disk at load time."""

    layout: bytes
    layout_keys: tuple[PublicKey, ...]
    links: dict[str, bytes]
    products: dict[str, str] = field(default_factory=dict)
    image_product: str | None = None
    """Name of the final product whose SHA-256 must equal the image's digest."""


@dataclass(frozen=True)
class TrustPolicy:
    """One repository's policy, ready to evaluate."""

    name: str
    source_sha256: str
    signers: Signers
    signature: SignatureRequirement | None = None
    attestations: tuple[AttestationRequirement, ...] = ()
    slsa: SlsaRequirement | None = None
    in_toto: InTotoRequirement | None = None
    description: str = ""
    quorum: QuorumRequirement | None = None
    nodes: dict[str, NodeKeys] = field(default_factory=dict)
    """Log and witness keys of signers that are Zoll nodes (for proofs and quorum)."""

    @property
    def label(self) -> str:
        """How results name the policy: name and a hash of the file it came from."""
        return f"{self.name}@sha256:{self.source_sha256[:16]}"

    @classmethod
    def from_yaml(
        cls, text: str | bytes, base: Path | None = None, name: str = "policy"
    ) -> TrustPolicy:
        """A single policy (top-level `signers`/`require`) from YAML text."""
        raw = text.encode() if isinstance(text, str) else text
        obj = _load_yaml(raw)
        try:
            model = _Policy.model_validate(obj)
        except ValidationError as exc:
            raise TrustPolicyError(_describe(exc)) from exc
        return _build(name, model, base or Path.cwd(), hashlib.sha256(raw).hexdigest())

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        return cls.from_yaml(_read(path), path.parent, path.stem)


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise TrustPolicyError(f"{path} is larger than {MAX_POLICY_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise TrustPolicyError(f"cannot read trust policy {path}: {exc}") from exc


def _load_yaml(raw: bytes) -> Any:
    if len(raw) > MAX_POLICY_BYTES:
        raise TrustPolicyError(f"trust policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        obj = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise TrustPolicyError(f"trust policy is not valid YAML: {exc}") from exc
    if not isinstance(obj, dict):
        raise TrustPolicyError("trust policy must be a YAML mapping")
    return obj


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    return "invalid trust policy: " + "; ".join(parts)


_READS: ContextVar[list[tuple[Path, bytes]] | None] = ContextVar("policy_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[list[tuple[Path, bytes]]]:
    """Collect every file a policy refers to as it is loaded (keys, layouts, links):
    `attest.policy_document` puts them into the document whose digest VSAs name."""
    reads: list[tuple[Path, bytes]] = []
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def _read_relative(base: Path, ref: str, what: str, limit: int = MAX_POLICY_BYTES) -> bytes:
    path = (base / ref) if not Path(ref).is_absolute() else Path(ref)
    try:
        if path.stat().st_size > limit:
            raise TrustPolicyError(f"{what} {path} is larger than {limit} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise TrustPolicyError(f"cannot read {what} {path}: {exc}") from exc
    reads = _READS.get()
    if reads is not None:
        reads.append((path, data))
    return data


def _key(base: Path, ref: str, what: str) -> PublicKey:
    try:
        return PublicKey.from_pem(_read_relative(base, ref, what))
    except KeyLoadError as exc:
        raise TrustPolicyError(f"{what} {ref}: {exc}") from exc


def _check_names(names: list[str], known: dict[str, Any], where: str) -> tuple[str, ...]:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TrustPolicyError(f"{where}: unknown signer(s) {', '.join(unknown)}")
    return tuple(names)


def _build(name: str, model: _Policy, base: Path, source_sha256: str) -> TrustPolicy:
    identities: list[KeylessIdentity] = []
    keys: list[TrustedKey] = []
    for signer_name, signer in model.signers.items():
        where = f"signers.{signer_name}"
        if signer.keyless is not None:
            k = signer.keyless
            try:
                identities.append(
                    KeylessIdentity(
                        k.issuer, k.subject, k.subject_regex, dict(k.claims), signer_name
                    )
                )
            except IdentityError as exc:
                raise TrustPolicyError(f"{where}.keyless: {exc}") from exc
        elif signer.key is not None:
            keys.append(TrustedKey(_key(base, signer.key, f"{where}.key"), signer_name))
        else:
            assert signer.key_pem is not None
            try:
                keys.append(TrustedKey(PublicKey.from_pem(signer.key_pem), signer_name))
            except KeyLoadError as exc:
                raise TrustPolicyError(f"{where}.key_pem: {exc}") from exc
    require = model.require
    signature = None
    if isinstance(require.signature, _SignatureReq):
        signature = SignatureRequirement(
            _check_names(require.signature.signers, model.signers, "require.signature")
        )
    elif require.signature is True:
        signature = SignatureRequirement()
    attestations = tuple(
        AttestationRequirement(
            a.predicate_type,
            _check_names(a.signers, model.signers, f"require.attestations[{i}]"),
            dict(a.where) or dict(DEFAULT_WHERE.get(a.predicate_type, {})),
            _duration(a.max_age, f"require.attestations[{i}].max_age"),
        )
        for i, a in enumerate(require.attestations)
    )
    nodes = _node_keys(model)
    quorum = None
    if require.quorum is not None:
        q = require.quorum
        members = _check_names(q.nodes, model.signers, "require.quorum.nodes")
        if q.k > len(set(members)):
            raise TrustPolicyError(f"require.quorum: k={q.k} of only {len(set(members))} nodes")
        if q.witnesses:
            unwitnessed = [n for n in members if n not in nodes or nodes[n].log is None]
            if unwitnessed:
                raise TrustPolicyError(
                    f"require.quorum.witnesses: nodes without log_key: {', '.join(unwitnessed)}"
                )
            witnesses = [n for n in members if nodes.get(n, NodeKeys()).witness is not None]
            if len(witnesses) < q.witnesses:
                raise TrustPolicyError(
                    f"require.quorum.witnesses: {q.witnesses} wanted, "
                    f"{len(witnesses)} nodes have a witness_key"
                )
        quorum = QuorumRequirement(
            q.k,
            tuple(dict.fromkeys(members)),
            q.says,
            q.witnesses,
            _duration(q.max_age, "require.quorum.max_age"),
        )
    slsa = None
    if require.slsa is not None:
        s = require.slsa
        source = (
            SourceExpectation(s.source.repository, s.source.ref, s.source.commit)
            if s.source is not None
            else None
        )
        slsa = SlsaRequirement(
            SlsaPolicy(
                s.min_level, tuple(TrustedBuilder(b.id, b.level) for b in s.builders), source
            ),
            _check_names(s.signers, model.signers, "require.slsa"),
        )
    in_toto = None
    if require.in_toto is not None:
        in_toto = _in_toto(base, require.in_toto)
    if (
        signature is None
        and not attestations
        and slsa is None
        and in_toto is None
        and quorum is None
    ):
        raise TrustPolicyError("require: the policy requires nothing, which would pass anything")
    binds_image = in_toto is not None and in_toto.image_product
    if (
        signature is None
        and not attestations
        and slsa is None
        and quorum is None
        and not binds_image
    ):
        raise TrustPolicyError(
            "require.in_toto: layout and links come from the policy's own files, so without "
            "image_product (the final product whose SHA-256 is the image digest) they say "
            "nothing about the image, and a policy requiring only them would pass any image"
        )
    if not model.signers and (
        signature is not None or attestations or slsa is not None or quorum is not None
    ):
        raise TrustPolicyError("signers: signatures are required but nobody may sign")
    return TrustPolicy(
        name=name,
        source_sha256=source_sha256,
        signers=Signers(tuple(identities), tuple(keys)),
        signature=signature,
        attestations=attestations,
        slsa=slsa,
        in_toto=in_toto,
        description=model.description,
        quorum=quorum,
        nodes=nodes,
    )


def _duration(value: str | int | None, where: str) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise TrustPolicyError(f"{where}: {exc}") from None


def _node_keys(model: _Policy) -> dict[str, NodeKeys]:
    nodes: dict[str, NodeKeys] = {}
    for name, signer in model.signers.items():
        if signer.log_key is None and signer.witness_key is None:
            continue
        if signer.keyless is not None:
            raise TrustPolicyError(f"signers.{name}: a Zoll node signs with a key, not keyless")
        try:
            log = NoteVerifier.from_vkey(signer.log_key) if signer.log_key else None
        except NoteError as exc:
            raise TrustPolicyError(f"signers.{name}.log_key: {exc}") from None
        try:
            witness = Cosigner.from_vkey(signer.witness_key) if signer.witness_key else None
        except CosignatureError as exc:
            raise TrustPolicyError(f"signers.{name}.witness_key: {exc}") from None
        nodes[name] = NodeKeys(log, witness)
    return nodes


def _in_toto(base: Path, req: _InTotoReq) -> InTotoRequirement:
    layout = _read_relative(base, req.layout, "require.in_toto.layout", 8 * MAX_POLICY_BYTES)
    keys = tuple(_key(base, k, "require.in_toto.layout_keys") for k in req.layout_keys)
    link_dir = base / req.links
    if not link_dir.is_dir():
        raise TrustPolicyError(f"require.in_toto.links: {link_dir} is not a directory")
    files = sorted(link_dir.glob("*.link"))
    if len(files) > MAX_LINK_FILES:
        raise TrustPolicyError(f"require.in_toto.links: more than {MAX_LINK_FILES} links")
    links = {f.name: _read_relative(link_dir, f.name, "link", 8 * MAX_POLICY_BYTES) for f in files}
    return InTotoRequirement(layout, keys, links, dict(req.products), req.image_product)


@dataclass(frozen=True)
class RepositoryRule:
    pattern: str
    policy: str


@dataclass(frozen=True)
class TrustPolicySet:
    """All policies of one file and the rules choosing one per repository."""

    policies: dict[str, TrustPolicy]
    rules: tuple[RepositoryRule, ...] = ()
    default: str | None = None

    @classmethod
    def from_yaml(cls, text: str | bytes, base: Path | None = None) -> TrustPolicySet:
        raw = text.encode() if isinstance(text, str) else text
        obj = _load_yaml(raw)
        if "policies" not in obj:
            single = TrustPolicy.from_yaml(raw, base, "default")
            return cls({"default": single}, (), "default")
        try:
            model = _PolicyFile.model_validate(obj)
        except ValidationError as exc:
            raise TrustPolicyError(_describe(exc)) from exc
        if model.version != 1:
            raise TrustPolicyError(f"version: unsupported policy file version {model.version}")
        digest = hashlib.sha256(raw).hexdigest()
        where = base or Path.cwd()
        policies: dict[str, TrustPolicy] = {}
        for name, policy in model.policies.items():
            try:
                policies[name] = _build(name, policy, where, digest)
            except TrustPolicyError as exc:
                raise TrustPolicyError(f"policies.{name}.{exc}") from exc
        for i, rule in enumerate(model.repositories):
            if rule.policy not in policies:
                raise TrustPolicyError(f"repositories[{i}].policy: no policy {rule.policy!r}")
        if model.default is not None and model.default not in policies:
            raise TrustPolicyError(f"default: no policy {model.default!r}")
        rules = tuple(RepositoryRule(r.match, r.policy) for r in model.repositories)
        return cls(policies, rules, model.default)

    @classmethod
    def load(cls, path: Path) -> TrustPolicySet:
        return cls.from_yaml(_read(path), path.parent)

    def for_repository(self, name: str) -> TrustPolicy | None:
        """The policy for repository `name` (first matching rule, else default), or None."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(name, rule.pattern):
                return self.policies[rule.policy]
        return self.policies[self.default] if self.default is not None else None

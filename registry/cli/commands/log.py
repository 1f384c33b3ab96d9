"""`zoll log …`: check Zoll's transparency log offline, from files an auditor keeps.

Nothing here talks to Zoll: a checkpoint, a proof and a trusted key are enough to show
that the log only grew (consistency) and that an attestation is in it (inclusion).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attest.keys import KeyLoadError, PublicKey
from attest.tlog.checkpoint import (
    CheckpointError,
    ForkDetected,
    SignedCheckpoint,
    verify_extension,
)
from attest.tlog.entries import EntryError, record_from_document
from attest.tlog.note import NoteError, NoteVerificationError, NoteVerifier, verify_note
from attest.tlog.proofs import (
    ConsistencyProof,
    InclusionProof,
    ProofError,
    ProofVerificationError,
    verify_inclusion,
)
from registry.cli.output import add_json_flag, console, emit_json

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class InputError(ValueError):
    """A file is missing or not what the command expects."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(_read(path, what))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the {what} {path} is not JSON: {exc}") from exc


def trusted_keys(paths: list[Path], origin: str) -> list[NoteVerifier]:
    """Note verifiers from key files: PEM public keys (named `origin`), `name+hash+key`
    lines, or the `/api/v1/keys` document (every key ever published)."""
    if not paths:
        raise InputError("give the log's public key with --key (PEM, verifier key or keys JSON)")
    out: list[NoteVerifier] = []
    for path in paths:
        text = _read(path, "key file").decode(errors="replace").strip()
        try:
            if text.startswith("-----BEGIN"):
                out.append(NoteVerifier.for_key(origin, PublicKey.from_pem(text)))
            elif text.startswith("{"):
                doc = json.loads(text)
                for key in doc.get("keys", []) if isinstance(doc, dict) else []:
                    if isinstance(key, dict) and isinstance(key.get("logVerifierKey"), str):
                        out.append(NoteVerifier.from_vkey(key["logVerifierKey"]))
                    elif isinstance(key, dict) and isinstance(key.get("publicKey"), str):
                        out.append(
                            NoteVerifier.for_key(origin, PublicKey.from_pem(key["publicKey"]))
                        )
            else:
                out.extend(NoteVerifier.from_vkey(line) for line in text.splitlines() if line)
        except (NoteError, KeyLoadError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} holds no usable key: {exc}") from exc
    if not out:
        raise InputError("the key files hold no keys")
    return out


def _proof_document(path: Path) -> tuple[Any, str | None]:
    """The proof in a file, and the signed checkpoint served with it, if any.

    Takes a bare proof (`{"logIndex", "treeSize", "hashes"}` or `{"oldSize", …}`) or what
    the API serves: `{"proof": …, "checkpoint": …}` from `/api/v1/log/proof/…` and each
    entry of `/api/v1/images/…/log`."""
    doc = _json(path, "proof")
    if isinstance(doc, dict) and isinstance(doc.get("proof"), dict):
        served = doc.get("checkpoint")
        return doc["proof"], served if isinstance(served, str) else None
    return doc, None


def _checkpoint(
    path: Path | None, keys: list[Path], origin: str | None, served: str | None = None
) -> tuple[SignedCheckpoint, list[NoteVerifier]]:
    """A checkpoint from its file or, without one, the one served with the proof; either
    way it counts only when a trusted key signed it."""
    if path is None and served is None:
        raise InputError("give the checkpoint with --checkpoint (the proof carries none)")
    where = str(path) if path is not None else "the checkpoint served with the proof"
    try:
        raw = _read(path, "checkpoint") if path is not None else (served or "").encode()
        signed = SignedCheckpoint.parse(raw)
    except CheckpointError as exc:
        raise InputError(f"{where}: {exc}") from exc
    if origin is not None and signed.checkpoint.origin != origin:
        raise NoteVerificationError(
            f"{where} is a checkpoint of {signed.checkpoint.origin!r}, not of {origin!r}"
        )
    trusted = trusted_keys(keys, signed.checkpoint.origin)
    return signed, verify_note(signed.note, trusted)


def _report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        emit_json(result)
    elif result["verified"]:
        console.print(f"[green]✓[/] {result['summary']}")
    else:
        console.print(f"[red]✗ {result['error']}[/]")
    if result["verified"]:
        return EXIT_OK
    return EXIT_BAD_INPUT if result.get("reason") == "input" else EXIT_FAILED


def _guarded(args: argparse.Namespace, check: Any) -> int:
    try:
        result = check()
    except (InputError, ProofError, EntryError, CheckpointError) as exc:
        result = {"verified": False, "reason": "input", "error": str(exc)}
    except (NoteVerificationError, ProofVerificationError) as exc:
        kind = "fork" if isinstance(exc, ForkDetected) else "verification"
        result = {"verified": False, "reason": kind, "error": str(exc)}
    return _report(args, result)


def verify_consistency_cmd(args: argparse.Namespace) -> int:
    def check() -> dict[str, Any]:
        old, signers = _checkpoint(args.checkpoint, args.key, args.origin)
        document, served = _proof_document(args.proof) if args.proof else (None, None)
        if args.newer is None and served is None:
            raise InputError("give the newer checkpoint with --newer (the proof carries none)")
        new, _ = _checkpoint(args.newer, args.key, args.origin, served)
        if document is None:
            if old.checkpoint.size != new.checkpoint.size:
                raise InputError("checkpoints of different sizes need --proof")
            proof = ConsistencyProof(old.checkpoint.size, new.checkpoint.size, ())
        else:
            proof = ConsistencyProof.from_json(document)
        verify_extension(old.checkpoint, new.checkpoint, proof)
        return {
            "verified": True,
            "origin": old.checkpoint.origin,
            "oldSize": old.checkpoint.size,
            "newSize": new.checkpoint.size,
            "signedBy": [s.name for s in signers],
            "summary": (
                f"{new.checkpoint.origin}: size {new.checkpoint.size} extends size "
                f"{old.checkpoint.size}; both checkpoints are signed by a trusted key"
            ),
        }

    return _guarded(args, check)


def verify_inclusion_cmd(args: argparse.Namespace) -> int:
    def check() -> dict[str, Any]:
        document, served = _proof_document(args.proof)
        signed, _ = _checkpoint(args.checkpoint, args.key, args.origin, served)
        entry = _json(args.entry, "entry")
        if isinstance(entry, dict) and isinstance(entry.get("entry"), dict):
            entry = entry["entry"]  # an entry of /api/v1/images/…/log
        record = record_from_document(entry)
        proof = InclusionProof.from_json(document)
        cp = signed.checkpoint
        if proof.tree_size != cp.size:
            raise InputError(
                f"the proof is for tree size {proof.tree_size}, the checkpoint is {cp.size}"
            )
        verify_inclusion(proof.index, cp.size, record.leaf_hash(), proof.hashes, cp.root)
        return {
            "verified": True,
            "origin": cp.origin,
            "logIndex": proof.index,
            "treeSize": cp.size,
            "kind": record.kind,
            "summary": f"the {record.kind} is entry {proof.index} of {cp.origin} at size {cp.size}",
        }

    return _guarded(args, check)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = subparsers.add_parser("log", help="verify Zoll's transparency log offline")
    sub = log.add_subparsers(dest="log_command", metavar="COMMAND", required=True)

    verify = sub.add_parser(
        "verify", help="check that a newer checkpoint extends an older one (consistency)"
    )
    verify.add_argument(
        "--checkpoint", type=Path, required=True, help="the older checkpoint you kept"
    )
    verify.add_argument(
        "--newer", type=Path, help="the newer checkpoint (default: the one served with --proof)"
    )
    verify.add_argument(
        "--proof",
        type=Path,
        help="consistency proof JSON between the two sizes, as /api/v1/log/proof/consistency "
        "serves it or bare",
    )
    verify.add_argument(
        "--key", type=Path, action="append", default=[], help="trusted log key file"
    )
    verify.add_argument("--origin", help="the log's origin line you expect")
    add_json_flag(verify)
    verify.set_defaults(handler=verify_consistency_cmd)

    inclusion = sub.add_parser(
        "verify-inclusion", help="check that an attestation or entry is in the log (inclusion)"
    )
    inclusion.add_argument(
        "--entry",
        type=Path,
        required=True,
        help="DSSE envelope, sigstore bundle, or log entry JSON (/api/v1/log/entries/N)",
    )
    inclusion.add_argument(
        "--proof",
        type=Path,
        required=True,
        help="inclusion proof JSON, as /api/v1/log/proof/inclusion serves it or bare",
    )
    inclusion.add_argument(
        "--checkpoint", type=Path, help="signed checkpoint (default: the one served with --proof)"
    )
    inclusion.add_argument(
        "--key", type=Path, action="append", default=[], help="trusted log key file"
    )
    inclusion.add_argument("--origin", help="the log's origin line you expect")
    add_json_flag(inclusion)
    inclusion.set_defaults(handler=verify_inclusion_cmd)

"""in-toto supply-chain layouts and link metadata, verified with the `in-toto` library.

This is `in_toto_verify` minus everything that would execute code from the layout:
inspections are never run (a verifier must not execute commands an upstream wrote),
and sublayouts are refused for the same reason, since in-toto verifies them with
inspections on. Instead of inspections, the final products are compared with digests
the caller knows (the product files, or the image's own digest).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from in_toto import exceptions as intoto_errors
from in_toto import verifylib
from in_toto.models.layout import Layout
from in_toto.models.link import FILENAME_FORMAT
from in_toto.models.metadata import Metadata
from securesystemslib.exceptions import FormatError
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

from attest.keys import PublicKey
from attest.results import Reason, VerificationFailure
from attest.safejson import loads_object

MAX_METADATA_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class LayoutOutcome:
    """A verified supply chain: its steps and the final products they vouch for."""

    steps: tuple[str, ...]
    layout_keyids: tuple[str, ...]
    products: dict[str, str]
    """Final products (last step) by name, with their SHA-256."""


def _metadata(raw: bytes, what: str) -> Any:
    obj = loads_object(raw, what, max_bytes=MAX_METADATA_BYTES)
    try:
        return Metadata.from_dict(obj)
    except (intoto_errors.InvalidMetadata, FormatError, KeyError, TypeError, ValueError) as exc:
        raise VerificationFailure(Reason.LAYOUT_INVALID, f"{what} is not in-toto metadata") from exc


def layout_key(key: PublicKey) -> dict[str, Any]:
    """An in-toto key dict for a layout owner's public key."""
    sslib = SSlibKey.from_crypto(key.key)
    out: dict[str, Any] = sslib.to_dict()
    out["keyid"] = sslib.keyid
    return out


def verify_layout(
    layout: bytes,
    layout_keys: list[PublicKey],
    links: dict[str, bytes],
    products: dict[str, str] | None = None,
) -> LayoutOutcome:
    """Verify a signed layout, its links (by file name `STEP.KEYID-PREFIX.link`) and
    that the final products named in `products` have the given SHA-256 hex digests."""
    if not layout_keys:
        raise VerificationFailure(Reason.NO_SIGNER_CONFIGURED, "no layout key configured")
    metadata = _metadata(layout, "layout")
    key_dict = {k["keyid"]: k for k in (layout_key(key) for key in layout_keys)}
    try:
        verifylib.verify_metadata_signatures(metadata, key_dict)
    except (intoto_errors.SignatureVerificationError, FormatError) as exc:
        raise VerificationFailure(
            Reason.LAYOUT_SIGNATURE_INVALID,
            f"layout is not signed by the layout key(s): {exc or type(exc).__name__}",
        ) from exc
    payload = metadata.get_payload()
    if not isinstance(payload, Layout):
        raise VerificationFailure(Reason.LAYOUT_INVALID, "metadata is not a layout")
    try:
        verifylib.verify_layout_expiration(payload)
    except intoto_errors.LayoutExpiredError as exc:
        raise VerificationFailure(Reason.LAYOUT_EXPIRED, "the layout has expired") from exc
    # Inspections execute commands: they are removed after the signature was checked.
    layout_obj = copy.deepcopy(payload)
    layout_obj.inspect = []

    steps_metadata: dict[str, dict[str, Any]] = {}
    for step in layout_obj.steps:
        found: dict[str, Any] = {}
        for keyid in step.pubkeys:
            name = FILENAME_FORMAT.format(step_name=step.name, keyid=keyid)
            if name in links:
                found[keyid] = _metadata(links[name], f"link {name}")
        if len(found) < step.threshold:
            raise VerificationFailure(
                Reason.LINK_MISSING,
                f"step {step.name!r} needs {step.threshold} link(s), found {len(found)}",
            )
        steps_metadata[step.name] = found
    try:
        verified = verifylib.verify_link_signature_thresholds(layout_obj, steps_metadata)
    except intoto_errors.ThresholdVerificationError as exc:
        raise VerificationFailure(Reason.LINK_THRESHOLD_NOT_MET, str(exc)) from exc
    chain: dict[str, dict[str, Any]] = {}
    for step_name, by_key in verified.items():
        chain[step_name] = {}
        for keyid, md in by_key.items():
            link = md.get_payload()
            if isinstance(link, Layout):
                raise VerificationFailure(
                    Reason.LAYOUT_INVALID, f"step {step_name!r} is a sublayout (not supported)"
                )
            chain[step_name][keyid] = link
    try:
        verifylib.verify_threshold_constraints(layout_obj, chain)
        reduced = verifylib.reduce_chain_links(chain)
        verifylib.verify_all_item_rules(layout_obj.steps, reduced)
    except intoto_errors.ThresholdVerificationError as exc:
        raise VerificationFailure(Reason.LINK_THRESHOLD_NOT_MET, str(exc)) from exc
    except intoto_errors.RuleVerificationError as exc:
        raise VerificationFailure(Reason.ARTIFACT_RULE_VIOLATED, str(exc)) from exc
    summary = verifylib.get_summary_link(layout_obj, reduced, "")
    final = {
        name: hashes.get("sha256", "")
        for name, hashes in (summary.products or {}).items()
        if isinstance(hashes, dict)
    }
    for name, digest in (products or {}).items():
        if final.get(name) != digest:
            raise VerificationFailure(
                Reason.PRODUCT_MISMATCH,
                f"product {name!r} has sha256 {digest[:16]}…, the supply chain recorded "
                f"{(final.get(name) or 'nothing')[:16]}",
            )
    return LayoutOutcome(tuple(s.name for s in layout_obj.steps), tuple(sorted(key_dict)), final)


def sha256_file_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()

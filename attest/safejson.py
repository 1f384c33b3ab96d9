"""Parse untrusted JSON (bundles, envelopes, statements) within size and depth limits.

Everything `attest` reads from a registry is attacker-controlled; a bundle nested ten
thousand levels deep or a 2 GiB "signature" must end in a clear `Reason`, not in a
RecursionError or an exhausted machine.
"""

from __future__ import annotations

import json
from typing import Any, Final

from attest.results import Reason, VerificationFailure
from registry.oci.jsonlimits import depth_exceeds

MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""Largest bundle, envelope or attestation layer read (DSSE's own limit)."""
MAX_DEPTH: Final = 64


class _Ambiguous(ValueError):
    pass


def _unambiguous(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys every JSON reader maps the same way: no duplicates (Python
    keeps the last, others the first) and no keys equal but for case (Go's encoding/json,
    which cosign uses, matches struct fields case-insensitively)."""
    seen: dict[str, str] = {}
    for key, _ in pairs:
        folded = key.casefold()
        if folded in seen:
            first = seen[folded]
            kind = "duplicate key" if first == key else "keys differing only in case"
            raise _Ambiguous(f"{kind} {first!r} and {key!r}")
        seen[folded] = key
    return dict(pairs)


def loads(
    raw: bytes,
    what: str,
    *,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
    signed: bool = False,
) -> Any:
    """Decode `raw` as JSON or raise `VerificationFailure` naming `what` was wrong.

    A `signed` payload must be unambiguous (`_unambiguous`): what Zoll reads from it is
    then what every other verifier reads."""
    if len(raw) > max_bytes:
        raise VerificationFailure(Reason.TOO_LARGE, f"{what} is larger than {max_bytes} bytes")
    try:
        obj = json.loads(raw, object_pairs_hook=_unambiguous if signed else None)
    except _Ambiguous as exc:
        raise VerificationFailure(Reason.AMBIGUOUS_PAYLOAD, f"{what} has {exc}") from exc
    except RecursionError as exc:
        raise VerificationFailure(Reason.TOO_DEEP, f"{what} is nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise VerificationFailure(Reason.MALFORMED, f"{what} is not valid JSON: {exc}") from exc
    if depth_exceeds(obj, max_depth):
        raise VerificationFailure(
            Reason.TOO_DEEP, f"{what} is nested deeper than {max_depth} levels"
        )
    return obj


def loads_object(
    raw: bytes, what: str, *, max_bytes: int = MAX_DOCUMENT_BYTES, signed: bool = False
) -> dict[str, Any]:
    """Like `loads`, and the top level must be an object."""
    obj = loads(raw, what, max_bytes=max_bytes, signed=signed)
    if not isinstance(obj, dict):
        raise VerificationFailure(Reason.MALFORMED, f"{what} must be a JSON object")
    return obj

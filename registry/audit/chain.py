"""The hash chain: how one audit event's hash is computed from its fields and its
predecessor's hash. Pure functions, so `zoll audit verify` and an offline auditor
compute exactly what the service wrote."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)
"""The `prev_hash` of the first event."""
DOMAIN = b"zoll-audit-v1\n"


class DetailError(ValueError):
    """An event detail that cannot be written as canonical JSON (NaN, non-string keys…)."""


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """The detail as stored and hashed: JSON with sorted keys and no spaces."""
    try:
        return json.dumps(
            dict(detail or {}),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise DetailError(f"audit detail is not plain JSON: {exc}") from exc


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    """One row of the audit log."""

    seq: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    repository: str | None
    target: str | None
    source: str | None
    request_id: str | None
    detail: str
    prev_hash: bytes
    hash: bytes

    def computed_hash(self) -> bytes:
        return event_hash(
            self.prev_hash,
            self.seq,
            self.at,
            self.actor,
            self.actor_kind,
            self.action,
            self.repository,
            self.target,
            self.source,
            self.request_id,
            self.detail,
        )

    def detail_json(self) -> dict[str, Any]:
        value = json.loads(self.detail)
        return value if isinstance(value, dict) else {"value": value}


def event_hash(
    prev_hash: bytes,
    seq: int,
    at: datetime,
    actor: str,
    actor_kind: str,
    action: str,
    repository: str | None,
    target: str | None,
    source: str | None,
    request_id: str | None,
    detail: str,
) -> bytes:
    """SHA-256 over the domain tag, the previous hash and the fields as a JSON array."""
    fields = [
        seq,
        timestamp(at),
        actor,
        actor_kind,
        action,
        repository,
        target,
        source,
        request_id,
        detail,
    ]
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(DOMAIN + prev_hash + payload).digest()

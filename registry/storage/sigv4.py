"""AWS Signature Version 4 for S3 (header-signed requests and presigned GET URLs).

Written out here (hmac + hashlib, ~80 lines) instead of borrowing botocore's signer,
which would pull botocore's imports into every worker for a function this size. The
unit tests check it against the examples in AWS's S3 SigV4 documentation; every S3
test checks it against a real SeaweedFS.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass
class Credentials:
    access_key: str
    secret_key: str
    _keys: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)

    def signing_key(self, day: str, region: str) -> bytes:
        """The day's derived key (cached: four HMACs saved per request)."""
        found = self._keys.get((day, region))
        if found is None:
            key = _hmac(f"AWS4{self.secret_key}".encode(), day)
            for part in (region, "s3", "aws4_request"):
                key = _hmac(key, part)
            self._keys = {(day, region): key}
            found = key
        return found


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def quote_path(path: str) -> str:
    """A key's path as S3 signs it: everything but unreserved characters and `/` encoded."""
    return quote(path, safe="/~")


def canonical_query(query: Mapping[str, str]) -> str:
    pairs = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _host(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _stamp(now: datetime | None) -> tuple[str, str]:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")


def _signature(
    credentials: Credentials,
    region: str,
    stamp: str,
    day: str,
    canonical_request: str,
) -> str:
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, stamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    return hmac.new(
        credentials.signing_key(day, region), to_sign.encode(), hashlib.sha256
    ).hexdigest()


def sign_headers(
    credentials: Credentials,
    region: str,
    method: str,
    endpoint: str,
    path: str,
    query: Mapping[str, str],
    headers: dict[str, str],
    *,
    content_length: int | None = None,
    payload_hash: str = UNSIGNED,
    now: datetime | None = None,
) -> dict[str, str]:
    """`headers` plus Host, the x-amz headers and Authorization. `path` is already
    encoded (`quote_path`); Content-Length, when given, is sent but not signed."""
    stamp, day = _stamp(now)
    signed = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    signed["host"] = _host(endpoint)
    signed["x-amz-date"] = stamp
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    signature = _signature(credentials, region, stamp, day, canonical)
    out = dict(signed)
    out["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{day}/{region}/s3/aws4_request,"
        f"SignedHeaders={';'.join(names)},Signature={signature}"
    )
    if content_length is not None:
        out["Content-Length"] = str(content_length)
    return out


def presign_url(
    credentials: Credentials,
    region: str,
    method: str,
    endpoint: str,
    path: str,
    expires: int,
    *,
    now: datetime | None = None,
) -> str:
    """A URL that allows `method` on `path` for `expires` seconds without credentials."""
    stamp, day = _stamp(now)
    query = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key}/{day}/{region}/s3/aws4_request",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    canonical = "\n".join(
        [method, path, canonical_query(query), f"host:{_host(endpoint)}\n", "host", UNSIGNED]
    )
    query["X-Amz-Signature"] = _signature(credentials, region, stamp, day, canonical)
    return f"{endpoint}{path}?{canonical_query(query)}"

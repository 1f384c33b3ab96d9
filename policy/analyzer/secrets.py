"""Credentials in layer files, environment variables, labels and build history.

Two kinds of evidence: patterns that identify a credential by its shape (PEM private
keys, cloud access keys, forge tokens), and `key = value` assignments whose key names a
secret and whose value has the entropy of a random token rather than a placeholder.
A hit is reported with a redacted preview and a fingerprint, never the secret itself.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Final

MAX_SCAN_BYTES: Final = 2 << 20
"""Files larger than this are not scanned for secrets (logs, data, archives)."""
MIN_ENTROPY: Final = 3.5
"""Shannon bits per character a generic assigned value needs to count as a secret."""

_SHAPES: Final = [
    ("private key", rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
    ("AWS access key", rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("AWS secret key", rb"(?i:aws_secret_access_key)\s*[=:]\s*[\"']?[A-Za-z0-9/+=]{40}"),
    ("GitHub token", rb"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    ("GitHub token", rb"\bgithub_pat_[A-Za-z0-9_]{60,}"),
    ("GitLab token", rb"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("Slack token", rb"\bxox[baprs]-[A-Za-z0-9\-]{10,}"),
    ("Stripe key", rb"\b[sr]k_live_[0-9A-Za-z]{24,}"),
    ("Google API key", rb"\bAIza[0-9A-Za-z_\-]{35}"),
    ("Azure storage key", rb"AccountKey=[A-Za-z0-9+/=]{86,88}"),
    ("npm token", rb"_authToken\s*=\s*[A-Za-z0-9_\-]{20,}"),
    ("registry auth", rb"\"auth\"\s*:\s*\"[A-Za-z0-9+/=]{12,}\""),
]
_SHAPE_RE: Final = re.compile(b"|".join(b"(" + p + b")" for _, p in _SHAPES))
_ASSIGN_RE: Final = re.compile(
    rb"(?i)(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    rb"client[_-]?secret|auth)[A-Za-z0-9_\-]*[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-+/=.~]{16,256})"
)
_ANCHORS: Final = (
    b"PRIVATE KEY",
    b"AKIA",
    b"ASIA",
    b"aws_secret_access_key",
    b"AWS_SECRET_ACCESS_KEY",
    b"ghp_",
    b"gho_",
    b"ghu_",
    b"ghs_",
    b"ghr_",
    b"github_pat_",
    b"glpat-",
    b"xox",
    b"k_live_",
    b"AIza",
    b"AccountKey=",
    b"_authToken",
    b'"auth"',
)
_KEYWORDS: Final = (
    b"password",
    b"passwd",
    b"secret",
    b"token",
    b"api_key",
    b"api-key",
    b"apikey",
    b"access_key",
    b"access-key",
    b"private_key",
    b"private-key",
    b"auth",
)
MAX_CANDIDATES: Final = 20_000
_URL_CREDS_RE: Final = re.compile(rb"[a-z][a-z0-9+.\-]*://[^\s:/@\"']+:([^\s@/\"']{8,})@")
_BINARY_MAGIC: Final = (
    b"\x7fELF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x28\xb5\x2f\xfd",
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"BZh",
    b"\xfd7zXZ",
    b"\xca\xfe\xba\xbe",
    b"\0asm",
    b"SQLite format 3",
)


@dataclass(frozen=True, slots=True)
class SecretHit:
    """One credential found; `preview` and `fingerprint` never reveal it."""

    kind: str
    preview: str
    fingerprint: str


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _hit(kind: str, secret: bytes) -> SecretHit:
    text = secret.decode("ascii", "replace")
    preview = f"{text[:4]}…({len(text)} chars)"
    return SecretHit(kind, preview, hashlib.sha256(secret).hexdigest()[:16])


def _placeholder(value: bytes) -> bool:
    lowered = value.lower()
    return any(
        word in lowered
        for word in (b"example", b"changeme", b"placeholder", b"xxxx", b"your", b"dummy")
    ) or lowered.startswith((b"$", b"%", b"{{", b"<"))


def looks_binary(head: bytes) -> bool:
    return head.startswith(_BINARY_MAGIC) or b"\0" in head[:1024]


def _candidates(data: bytes, lowered: bytes) -> list[tuple[re.Pattern[bytes], int, str]]:
    """Where the slower regexes must look: literal anchors found with `bytes.find` first."""
    spots: list[tuple[re.Pattern[bytes], int, str]] = []
    for keyword in _KEYWORDS:
        start = 0
        while len(spots) < MAX_CANDIDATES:
            at = lowered.find(keyword, start)
            if at < 0:
                break
            spots.append((_ASSIGN_RE, at, "high-entropy secret"))
            start = at + len(keyword)
    start = 0
    while len(spots) < MAX_CANDIDATES:
        at = data.find(b"://", start)
        if at < 0:
            break
        spots.append((_URL_CREDS_RE, max(0, at - 32), "URL password"))
        start = at + 3
    return spots


def scan(data: bytes, *, assignments: bool = True) -> list[SecretHit]:
    """Credentials in a text; `assignments` also checks `secret = <high entropy>`."""
    hits: list[SecretHit] = []
    seen: set[str] = set()

    def add(kind: str, secret: bytes) -> None:
        hit = _hit(kind, secret)
        if hit.fingerprint not in seen:
            seen.add(hit.fingerprint)
            hits.append(hit)

    if any(anchor in data for anchor in _ANCHORS):
        for match in _SHAPE_RE.finditer(data):
            add(_SHAPES[(match.lastindex or 1) - 1][0], match.group(0))
    if not assignments:
        return hits
    for pattern, at, kind in _candidates(data, data.lower()):
        found = pattern.search(data, at, at + 400)
        if found is None or found.start() > at + 32:
            continue
        value = found.group(1)
        if not _placeholder(value) and entropy(value) >= MIN_ENTROPY:
            add(kind, value)
    return hits


class StreamScanner:
    """Scan a file's chunks with an overlap, so a secret across a chunk edge is found."""

    OVERLAP: Final = 4096

    __slots__ = ("_tail", "hits")

    def __init__(self) -> None:
        self._tail = b""
        self.hits: list[SecretHit] = []

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        known = {h.fingerprint for h in self.hits}
        self.hits += [h for h in scan(data) if h.fingerprint not in known]
        self._tail = data[-self.OVERLAP :]

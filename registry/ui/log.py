"""The transparency log, browsable: the latest signed checkpoint with its cosignatures,
entries by index, and Zoll's attestations about a subject digest. Public like the log's
API (`/api/v1/log/…`)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from attest.tlog.entries import LogEntry
from attest.tlog.note import NoteVerifier
from attest.tlog.store import EntryNotFound
from registry.http.access import PUBLIC
from registry.oci.digest import Digest, DigestError
from registry.pipeline.services import services_of
from registry.ui.pages import page, render

PAGE = 50


def summary(entry: LogEntry) -> dict[str, Any]:
    """What an entry is about, read from its body (an attestation's statement or an
    admission decision)."""
    body = entry.body
    out: dict[str, Any] = {"index": entry.index, "kind": entry.kind, "at": entry.integrated_at}
    if entry.kind == "admission":
        subject = body.get("subject") or {}
        out |= {
            "repository": subject.get("repository"),
            "digest": subject.get("digest"),
            "what": body.get("decision"),
            "reasons": body.get("reasons") or [],
        }
        return out
    try:
        envelope = body.get("envelope") or {}
        statement = json.loads(base64.b64decode(envelope.get("payload", "")))
        first = (statement.get("subject") or [{}])[0]
        sha = (first.get("digest") or {}).get("sha256")
        out |= {
            "repository": first.get("name"),
            "digest": f"sha256:{sha}" if sha else None,
            "what": statement.get("predicateType"),
            "reasons": [],
        }
    except (ValueError, binascii.Error, AttributeError, TypeError, IndexError):
        out |= {"repository": None, "digest": None, "what": "unreadable statement", "reasons": []}
    return out


@page(PUBLIC)
async def log_page(request: web.Request) -> web.StreamResponse:
    svc = services_of(request)
    signed = await svc.log.checkpoint()
    size = signed.checkpoint.size
    own = {
        NoteVerifier.for_key(svc.log.origin, k.public_key()).key_hash
        for k in svc.keyring.public_keys()
    }
    signatures = [
        {"name": s.name, "key": f"{s.key_hash:08x}", "own": s.key_hash in own}
        for s in signed.note.signatures
    ]
    raw_subject = request.query.get("subject", "").strip()
    by_subject = None
    subject_error = None
    if raw_subject:
        try:
            digest = Digest.parse(raw_subject)
        except DigestError as exc:
            subject_error = str(exc)
        else:
            by_subject = await svc.ledger.for_subject(digest)
    before_raw = request.query.get("before", "")
    before = int(before_raw) if before_raw.isdigit() else size
    before = min(before, size)
    start = max(before - PAGE, 0)
    entries = [summary(e) for e in reversed(await svc.log.entries(start, before - start))]
    return await render(
        request,
        "log.html",
        title="Transparency log",
        checkpoint=signed.checkpoint,
        checkpoint_text=signed.to_text(),
        root_hex=signed.checkpoint.root.hex(),
        signatures=signatures,
        entries=entries,
        older=f"/ui/log?before={start}" if start > 0 else None,
        subject=raw_subject,
        subject_error=subject_error,
        by_subject=by_subject,
    )


@page(PUBLIC)
async def entry_page(request: web.Request) -> web.StreamResponse:
    index = int(request.match_info["index"])
    try:
        entry = await services_of(request).log.entry(index)
    except EntryNotFound:
        raise web.HTTPNotFound(text=f"The log has no entry {index}.") from None
    return await render(
        request,
        "log_entry.html",
        title=f"Log entry {index}",
        entry=summary(entry),
        leaf=base64.b64encode(entry.leaf_hash).decode(),
        body=json.dumps(entry.body, indent=2, sort_keys=True),
    )

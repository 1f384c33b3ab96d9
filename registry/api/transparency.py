"""Zoll's public keys and its transparency log: what anyone needs to check Zoll's word
without trusting Zoll's database."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from attest.tlog.checkpoint import SignedCheckpoint
from registry.api.router import API, ApiError, Param, limit_param, query_int
from registry.http.access import PUBLIC
from registry.pipeline.services import services_of

INDEX = Param("index", "path", "log index", {"type": "integer", "minimum": 0})
SIZE = Param("size", "query", "tree size (default: current)", {"type": "integer"})


class PublicKeyModel(BaseModel):
    keyid: str
    algorithm: str
    publicKey: str
    validFrom: str
    validUntil: str | None = None
    status: str
    logVerifierKey: str | None = None


class Keys(BaseModel):
    activeKeyid: str
    keys: list[PublicKeyModel]


class LogEntryModel(BaseModel):
    origin: str
    logIndex: int
    kind: str
    body: dict[str, Any]
    leafHash: str
    integratedTime: str | None = None


class LogEntries(BaseModel):
    entries: list[LogEntryModel]


class Proof(BaseModel):
    """What `zoll log verify` and `zoll log verify-inclusion` take as `--proof`, as is."""

    proof: dict[str, Any]
    checkpoint: str | None = None
    """A signed checkpoint for the proof's tree size: always for the current size, for an
    earlier size when the log signed one then."""


@API.operation(
    "GET",
    "/api/v1/keys",
    summary="Zoll's attestation and log public keys",
    tag="transparency",
    needs=PUBLIC,
    response=Keys,
)
async def keys(request: web.Request) -> Keys:
    """Every key Zoll ever signed with, with its validity period: the active one and the
    retired ones (attestations they signed stay verifiable). `logVerifierKey` verifies the
    log's checkpoints (C2SP signed-note verifier key)."""
    svc = services_of(request)
    return Keys.model_validate(svc.keyring.to_json(log_origin=svc.log.origin))


@API.operation(
    "GET",
    "/api/v1/log/checkpoint",
    summary="The log's latest signed checkpoint",
    tag="transparency",
    needs=PUBLIC,
    response=None,
    content_type="text/plain",
)
async def checkpoint(request: web.Request) -> web.Response:
    """A C2SP tlog-checkpoint signed note: origin, tree size and root hash, signed, with
    the cosignatures of the witnesses (peers) that have cosigned it so far."""
    svc = services_of(request)
    signed = await svc.log.checkpoint()
    if svc.federation is not None:
        signed = await svc.federation.cosigning.with_cosignatures(signed)
    return web.Response(text=signed.to_text(), content_type="text/plain")


@API.operation(
    "GET",
    "/api/v1/log/checkpoint/{size}",
    route="/api/v1/log/checkpoint/{size:\\d+}",
    summary="The checkpoint the log signed for a given size",
    tag="transparency",
    needs=PUBLIC,
    response=None,
    content_type="text/plain",
    params=(Param("size", "path", "tree size", {"type": "integer", "minimum": 0}),),
    errors={404: "The log never signed a checkpoint for that size"},
)
async def checkpoint_at(request: web.Request) -> web.Response:
    """An earlier signed checkpoint, to fetch the one a proof or an auditor refers to."""
    size = int(request.match_info["size"])
    signed = await services_of(request).log.checkpoint_at(size)
    if signed is None:
        raise ApiError(404, "No checkpoint for that size", f"no checkpoint signed for size {size}")
    return web.Response(text=signed.to_text(), content_type="text/plain")


@API.operation(
    "GET",
    "/api/v1/log/entries",
    summary="A page of log entries",
    tag="transparency",
    needs=PUBLIC,
    response=LogEntries,
    params=(
        Param("start", "query", "first log index (default 0)", {"type": "integer", "minimum": 0}),
        limit_param(1000),
    ),
)
async def entries(request: web.Request) -> LogEntries:
    """Entries in index order from `start`, at most `limit`: for mirrors and monitors that
    replay the whole log."""
    start = query_int(request, "start", 0, 0, 2**62)
    limit = query_int(request, "limit", 1000, 1, 1000)
    found = await services_of(request).log.entries(start, limit)
    return LogEntries(entries=[LogEntryModel.model_validate(e.to_json()) for e in found])


@API.operation(
    "GET",
    "/api/v1/log/entries/{index}",
    route="/api/v1/log/entries/{index:\\d+}",
    summary="One log entry",
    tag="transparency",
    needs=PUBLIC,
    response=LogEntryModel,
    params=(INDEX,),
    errors={404: "No entry with that index"},
)
async def entry(request: web.Request) -> LogEntryModel:
    """The entry's body (an attestation or an admission decision) and its leaf hash."""
    from attest.tlog.store import EntryNotFound

    index = int(request.match_info["index"])
    try:
        found = await services_of(request).log.entry(index)
    except EntryNotFound as exc:
        raise ApiError(404, "No such entry", str(exc)) from exc
    return LogEntryModel.model_validate(found.to_json())


async def _head(request: web.Request) -> SignedCheckpoint:
    """The current signed checkpoint: proofs up to its size come with it."""
    return await services_of(request).log.checkpoint()


async def _signed_at(request: web.Request, head: SignedCheckpoint, size: int) -> str | None:
    if size == head.checkpoint.size:
        return head.to_text()
    signed = await services_of(request).log.checkpoint_at(size)
    return None if signed is None else signed.to_text()


async def _inclusion(request: web.Request, raw_index: str | None) -> Proof:
    head = await _head(request)
    current = head.checkpoint.size
    if raw_index is None or current == 0:
        raise ApiError(400, "Invalid parameter", "index is required and the log must not be empty")
    if not raw_index.isdigit() or int(raw_index) >= current:
        raise ApiError(
            400, "Invalid parameter", f"index must be an integer from 0 to {current - 1}"
        )
    index = int(raw_index)
    size = query_int(request, "size", current, index + 1, current)
    proof = await services_of(request).log.inclusion_proof(index, size)
    return Proof(proof=proof.to_json(), checkpoint=await _signed_at(request, head, size))


@API.operation(
    "GET",
    "/api/v1/log/proof/inclusion",
    summary="Inclusion proof of an entry",
    tag="transparency",
    needs=PUBLIC,
    response=Proof,
    params=(
        Param("index", "query", "log index of the entry", {"type": "integer"}, required=True),
        SIZE,
    ),
)
async def inclusion(request: web.Request) -> Proof:
    """RFC 6962/9162 audit path from the entry's leaf to the root of a tree of `size`."""
    return await _inclusion(request, request.query.get("index"))


@API.operation(
    "GET",
    "/api/v1/log/proof/inclusion/{index}",
    route="/api/v1/log/proof/inclusion/{index:\\d+}",
    summary="Inclusion proof of an entry",
    tag="transparency",
    needs=PUBLIC,
    response=Proof,
    params=(INDEX, SIZE),
)
async def inclusion_of(request: web.Request) -> Proof:
    """The same as `/api/v1/log/proof/inclusion?index=`, with the index in the path."""
    return await _inclusion(request, request.match_info["index"])


@API.operation(
    "GET",
    "/api/v1/log/proof/consistency",
    summary="Consistency proof between two sizes",
    tag="transparency",
    needs=PUBLIC,
    response=Proof,
    params=(
        Param("old", "query", "older tree size", {"type": "integer"}, required=True),
        Param("new", "query", "newer tree size (default: current)", {"type": "integer"}),
    ),
)
async def consistency(request: web.Request) -> Proof:
    """Proof that the tree of `old` entries is a prefix of the tree of `new` entries (the
    log never rewrote history between two checkpoints an auditor saw)."""
    head = await _head(request)
    current = head.checkpoint.size
    old = query_int(request, "old", -1, 0, current)
    new = query_int(request, "new", current, max(old, 0), current)
    if old < 0:
        raise ApiError(400, "Invalid parameter", "old is required")
    proof = await services_of(request).log.consistency_proof(old, new)
    return Proof(proof=proof.to_json(), checkpoint=await _signed_at(request, head, new))

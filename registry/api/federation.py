"""`/api/v1/node`, `/api/v1/peers`, `/api/v1/federation/…` and the witness endpoint.

The node card and the fork evidence are public: they are signed by their makers and
anyone may check them. Listing peers and their follow state needs a registry-wide
auditor; pinning and unpinning a peer needs an administrator.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from registry.api.router import API, ApiError, Param, registry_wide_only
from registry.audit import record_now
from registry.federation import peers as peer_rows
from registry.federation.card import verify_card
from registry.federation.cosigning import WITNESS_PATH
from registry.federation.fetch import CardUnavailable, fetch_card
from registry.federation.service import Federation
from registry.federation.wakeups import wake
from registry.federation.witness import add_checkpoint
from registry.http.access import PUBLIC, registry_wide, requires
from registry.http.state import registry_of
from registry.pipeline.services import services_of

ADMIN = registry_wide("admin")
AUDIT = registry_wide("audit")
MAX_WITNESS_BODY = 64 * 1024


def federation_of(request: web.Request) -> Federation:
    federation = services_of(request).federation
    if federation is None:
        raise ApiError(503, "Federation is not running in this process")
    return federation


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class NodeCardModel(BaseModel):
    card: dict[str, Any]
    envelope: dict[str, Any] = Field(description="the card as a DSSE envelope, signed")
    fingerprints: dict[str, str]


@API.operation(
    "GET",
    "/api/v1/node",
    summary="This node's signed card: name, URL, log and witness keys, attestation keys",
    tag="federation",
    needs=PUBLIC,
    response=NodeCardModel,
)
async def node(request: web.Request) -> NodeCardModel:
    """What a peer pins: `zoll peers add URL` fetches this, checks the signature and shows
    the fingerprints to compare out of band."""
    import json

    raw = federation_of(request).identity.signed_card(_base_url(request))
    card = verify_card(raw)
    return NodeCardModel(
        card=card.to_json(), envelope=json.loads(raw), fingerprints=card.fingerprints()
    )


class FollowState(BaseModel):
    state: str
    entries_read: int
    verified_size: int
    peer_size: int
    lag_entries: int
    last_contact_at: datetime | None = None
    last_entry_at: datetime | None = None
    last_error: str | None = None


class PeerModel(BaseModel):
    name: str
    url: str
    logOrigin: str
    logKey: str
    witnessKey: str
    attestationKeyids: list[str]
    source: str
    follow: FollowState | None = None
    witnessing: dict[str, Any] | None = Field(
        None, description="how far this peer has cosigned our log, and its last error"
    )


class PeerList(BaseModel):
    node: str
    peers: list[PeerModel]
    forks: int = Field(description="misbehaviour evidence kept (GET /api/v1/federation/forks)")


async def _peer_models(federation: Federation) -> list[PeerModel]:
    pool = federation.pool
    follow = {r["peer"]: r for r in await pool.fetch("SELECT * FROM federation_follow")}
    log_id = await federation.log.log_id()
    witnessing = {
        r["witness"]: r
        for r in await pool.fetch("SELECT * FROM tlog_witnesses WHERE log_id = $1", log_id)
    }
    models = []
    for peer in await federation.peers():
        model = PeerModel.model_validate(peer.to_json())
        row = follow.get(peer.name)
        if row is not None:
            model.follow = FollowState(
                state=row["state"],
                entries_read=row["size"],
                verified_size=row["verified_size"],
                peer_size=row["peer_size"],
                lag_entries=max(row["peer_size"] - row["size"], 0),
                last_contact_at=row["last_contact_at"],
                last_entry_at=row["last_entry_at"],
                last_error=row["last_error"],
            )
        w = witnessing.get(peer.name)
        if w is not None:
            model.witnessing = {"cosignedSize": w["size"], "lastError": w["last_error"]}
        models.append(model)
    return models


@API.operation(
    "GET",
    "/api/v1/peers",
    summary="Pinned peers, how far this node follows each, and whether they witness for it",
    tag="federation",
    needs=AUDIT,
    response=PeerList,
)
async def list_peers(request: web.Request) -> PeerList:
    """What `zoll peers list` shows."""
    registry_wide_only(request, "peers follow repositories of every namespace")
    federation = federation_of(request)
    forks = await federation.pool.fetchval("SELECT count(*) FROM federation_forks")
    return PeerList(
        node=federation.identity.name, peers=await _peer_models(federation), forks=forks
    )


class AddPeer(BaseModel):
    url: str = Field(description="the peer's base URL; its card is fetched from /api/v1/node")
    fingerprints: dict[str, str] | None = Field(
        None, description="if given, the card's fingerprints must be exactly these"
    )
    insecure: bool = Field(False, description="allow plain HTTP (loopback tests only)")


class PinnedPeer(BaseModel):
    peer: PeerModel
    fingerprints: dict[str, str]


@API.operation(
    "POST",
    "/api/v1/peers",
    summary="Pin a peer: fetch its card, check it, store its keys",
    tag="federation",
    needs=ADMIN,
    response=PinnedPeer,
    body=AddPeer,
    errors={
        409: "The card is this node, clashes with a peer, or fingerprints differ",
        502: "The peer's card could not be fetched or is not valid",
    },
)
async def add_peer(request: web.Request) -> PinnedPeer:
    """Pins what the URL serves now. Give `fingerprints` (compared out of band) to make
    sure it is the node you mean."""
    federation = federation_of(request)
    try:
        wanted = AddPeer.model_validate_json(await request.read())
    except ValueError as exc:
        raise ApiError(400, "Invalid request", str(exc)) from None
    try:
        card = await fetch_card(federation.session, wanted.url, insecure=wanted.insecure)
    except CardUnavailable as exc:
        raise ApiError(502, "Peer card unavailable", str(exc)) from None
    if wanted.fingerprints is not None and wanted.fingerprints != card.fingerprints():
        raise ApiError(409, "Fingerprints differ", "the card's keys are not the ones expected")
    try:
        peer = await peer_rows.pin(
            federation.pool, federation.config, card, federation.log.origin, "api"
        )
    except peer_rows.PeerError as exc:
        raise ApiError(409, "Cannot pin this peer", str(exc)) from None
    await record_now(
        federation.pool, "peer.pin", target=card.name, detail={"fingerprints": card.fingerprints()}
    )
    # Now, not at the next interval: follow it, and hand it our checkpoint to witness.
    await wake(federation.pool, "follow")
    await wake(federation.pool, "publish")
    return PinnedPeer(
        peer=PeerModel.model_validate(peer.to_json()), fingerprints=card.fingerprints()
    )


class Unpinned(BaseModel):
    name: str
    removed: bool


@API.operation(
    "DELETE",
    "/api/v1/peers/{name}",
    summary="Unpin a peer (its statements stop counting; configured peers stay)",
    tag="federation",
    needs=ADMIN,
    response=Unpinned,
    params=(Param("name", "path", "peer name"),),
    errors={404: "No pinned peer of that name"},
)
async def remove_peer(request: web.Request) -> Unpinned:
    federation = federation_of(request)
    name = request.match_info["name"]
    if not await peer_rows.unpin(federation.pool, name):
        raise ApiError(404, "No such pinned peer", name)
    await record_now(federation.pool, "peer.unpin", target=name, detail={})
    return Unpinned(name=name, removed=True)


class Fork(BaseModel):
    id: int
    origin: str
    peer: str | None = None
    kind: str
    knownCheckpoint: str
    offendingCheckpoint: str
    detail: dict[str, Any]
    detectedAt: datetime


class ForkList(BaseModel):
    forks: list[Fork]


@API.operation(
    "GET",
    "/api/v1/federation/forks",
    summary="Evidence that a log misbehaved: pairs of checkpoints both signed by it",
    tag="federation",
    needs=PUBLIC,
    response=ForkList,
)
async def forks(request: web.Request) -> ForkList:
    """Each item holds two checkpoints signed by the same log that cannot both be true
    (or one whose root the log's own entries do not give): check them with the log's
    key, and `zoll log verify` shows that no consistency proof joins them."""
    rows = await registry_of(request).pool.fetch(
        "SELECT * FROM federation_forks ORDER BY id DESC LIMIT 1000"
    )
    return ForkList(
        forks=[
            Fork(
                id=r["id"],
                origin=r["origin"],
                peer=r["peer"],
                kind=r["kind"],
                knownCheckpoint=r["known_checkpoint"],
                offendingCheckpoint=r["offending_checkpoint"],
                detail=r["detail"],
                detectedAt=r["detected_at"],
            )
            for r in rows
        ]
    )


class TagView(BaseModel):
    repository: str
    tag: str
    here: str | None = Field(description="the digest this node's tag names, if it has it")
    nodes: dict[str, str] = Field(description="node → the digest its admission record named")
    agree: bool


class TagViews(BaseModel):
    tags: list[TagView]


@API.operation(
    "GET",
    "/api/v1/federation/tags",
    summary="Which digest each node says a tag names, and where they disagree",
    tag="federation",
    needs=AUDIT,
    response=TagViews,
    params=(
        Param("repository", "query", "only this repository"),
        Param("disagreements", "query", "true: only tags the nodes disagree about"),
    ),
)
async def tag_views(request: web.Request) -> TagViews:
    """Admission by quorum is always per digest; a tag is only a name, and nodes may point
    it at different digests. This shows them side by side, never resolves them."""
    registry_wide_only(request, "tags of every namespace")
    rows = await registry_of(request).pool.fetch(
        """SELECT f.repository, f.tag, f.node, f.digest, t.manifest_digest AS here
           FROM federation_tags f
           LEFT JOIN repositories r ON r.name = f.repository
           LEFT JOIN tags t ON t.repository_id = r.id AND t.name = f.tag
           WHERE $1::text IS NULL OR f.repository = $1
           ORDER BY f.repository, f.tag, f.node LIMIT 5000""",
        request.query.get("repository"),
    )
    views: dict[tuple[str, str], TagView] = {}
    for row in rows:
        key = (row["repository"], row["tag"])
        view = views.setdefault(
            key, TagView(repository=key[0], tag=key[1], here=row["here"], nodes={}, agree=True)
        )
        view.nodes[row["node"]] = row["digest"]
    for view in views.values():
        digests = set(view.nodes.values()) | ({view.here} if view.here else set())
        view.agree = len(digests) <= 1
    only = request.query.get("disagreements") == "true"
    return TagViews(tags=[v for v in views.values() if not (only and v.agree)])


@requires(PUBLIC)
async def witness_add_checkpoint(request: web.Request) -> web.StreamResponse:
    """c2sp.org/tlog-witness `add-checkpoint`: plain text in and out, as the spec says."""
    federation = federation_of(request)
    body = await request.content.read(MAX_WITNESS_BODY + 1)
    if len(body) > MAX_WITNESS_BODY:
        return web.Response(status=400, text=f"request larger than {MAX_WITNESS_BODY} bytes\n")
    answer = await add_checkpoint(
        federation.pool,
        await federation.peers(),
        federation.identity.witness.name,
        federation.identity.witness_key,
        body,
    )
    if answer.status == 200:  # the peer's log grew: if this node follows it, read on now
        await wake(federation.pool, "follow")
    return web.Response(
        status=answer.status, body=answer.body.encode(), content_type=answer.content_type
    )


def install_witness(app: web.Application) -> None:
    app.router.add_post(WITNESS_PATH, witness_add_checkpoint)

"""A node follows a peer's log and replicates what the peer admitted, then judges it
itself: content and attachments over /v2, the log as change feed, verified by
recomputing the peer's tree from its published tiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry.federation.worker import FederationWorker
from registry.pipeline.runner import PipelineRunner
from tests.federation.nodes import federation_of, nodes, pin
from tests.pipeline.conftest import Supplier, containerfile
from tests.pipeline.test_pipeline import api, pull_status, push, sign
from tests.support.buildah import Builder
from tests.support.pipeline import drain

pytestmark = pytest.mark.slow


def enforcing(supplier: Supplier) -> dict[str, Any]:
    """Node settings: the supplier's trust policy, opendesk/ admitted images only."""
    return {
        "attest": {"trust_policy": str(supplier.policy)},
        "namespaces": [{"prefix": "opendesk/", "admission": "enforce"}],
    }


async def test_a_follower_replicates_and_judges_what_its_peer_admitted(
    pg_admin_dsn: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    builder: Builder,
    supplier: Supplier,
) -> None:
    settings = enforcing(supplier)
    async with nodes(pg_admin_dsn, tmp_path, "zoll-a", **settings) as first:
        a = first["zoll-a"]
        follow = {"follow": [{"peer": "zoll-a", "repositories": ["opendesk/*"]}]}
        async with nodes(pg_admin_dsn, tmp_path, "zoll-b", federation=follow, **settings) as second:
            b = second["zoll-b"]
            await pin(http, a, b)
            await pin(http, b, a)
            digest = await push(a, builder, tmp_path, "opendesk/app", containerfile(marker="fed"))
            await sign(a, "opendesk/app", digest, supplier)
            await drain(PipelineRunner(a.services))
            assert (await api(http, a, f"/images/opendesk/app@{digest}/status"))[
                "state"
            ] == "admitted"

            await FederationWorker(a.services).witness_round()  # cosigned by b, tiles out
            async with http.get(f"{a.url}/tlog/checkpoint") as resp:
                assert resp.status == 200
                assert resp.headers["Cache-Control"] == "no-cache"
            await FederationWorker(b.services).follow_round()
            counts = await drain(PipelineRunner(b.services))
            assert counts["federation-replicate"].get("done") == 1, counts

            state = await api(http, b, f"/images/opendesk/app@{digest}/status")
            assert state["state"] == "admitted", state
            assert [e["stage"] for e in state["events"]][-4:] == [
                "verify",
                "scan",
                "attest",
                "admit",
            ]
            assert (await pull_status(http, b, "opendesk/app:1.0.0"))[0] == 200  # the tag came too
            peers = await api(http, b, "/peers")
            follow_state = peers["peers"][0]["follow"]
            size_a = await a.services.log.size()
            assert follow_state["verified_size"] == size_a and follow_state["lag_entries"] == 0
            # b holds a's statements and its own, both as referrers and in one .att
            async with http.get(f"{b.url}/v2/opendesk/app/referrers/{digest}") as r:
                referrers = (await r.json(content_type=None))["manifests"]
            keyids = {
                m["annotations"]["dev.zoll.attestation.keyid"]
                for m in referrers
                if "dev.zoll.attestation.keyid" in (m.get("annotations") or {})
            }
            key_a = federation_of(a).identity.keyring.signer.public.keyid
            key_b = federation_of(b).identity.keyring.signer.public.keyid
            assert keyids == {key_a, key_b}
            att = f"sha256-{digest.encoded}.att"
            async with http.get(f"{b.url}/v2/opendesk/app/manifests/{att}") as r:
                layers = (await r.json(content_type=None))["layers"]
            signers = {layer["annotations"].get("dev.zoll.attestation.keyid") for layer in layers}
            assert {key_a, key_b} <= signers


async def test_nodes_that_disagree_about_a_tag_keep_their_own_and_show_it(
    pg_admin_dsn: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    builder: Builder,
    supplier: Supplier,
) -> None:
    settings = enforcing(supplier)
    follow = {"follow": [{"peer": "zoll-a", "repositories": ["opendesk/*"]}]}
    async with (
        nodes(pg_admin_dsn, tmp_path, "zoll-a", **settings) as first,
        nodes(pg_admin_dsn, tmp_path, "zoll-b", federation=follow, **settings) as second,
    ):
        a, b = first["zoll-a"], second["zoll-b"]
        await pin(http, a, b)
        await pin(http, b, a)
        theirs = await push(a, builder, tmp_path / "a", "opendesk/app", containerfile(marker="A"))
        ours = await push(b, builder, tmp_path / "b", "opendesk/app", containerfile(marker="B"))
        await sign(a, "opendesk/app", theirs, supplier)
        await drain(PipelineRunner(a.services))
        await FederationWorker(a.services).witness_round()
        await FederationWorker(b.services).follow_round()
        await drain(PipelineRunner(b.services))

        async with http.get(f"{b.url}/api/v1/images/opendesk/app@{theirs}/status") as r:
            assert r.status == 200  # the digest came; the tag stays on ours ("here" below)
        async with http.get(
            f"{b.url}/api/v1/federation/tags", params={"disagreements": "true"}
        ) as r:
            views = (await r.json())["tags"]
        assert views == [
            {
                "repository": "opendesk/app",
                "tag": "1.0.0",
                "here": str(ours),
                "nodes": {"zoll-a": str(theirs)},
                "agree": False,
            }
        ]

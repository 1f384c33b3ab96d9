"""Three independently operated nodes on one machine (own databases, folders, ports and
keys): A mirrors an upstream and judges; B and C follow A, judge again and admit by a
witnessed 2-of-3 quorum. Then, one after another on the same nodes: a malicious C cannot
make a quorum alone, A revokes a verdict and the followers quarantine the image, A goes
down and comes back, and A rewrites its log and is caught."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from attest.keys import PrivateKey
from attest.tlog.entries import admission_record
from policy.vuln.store import import_osv
from registry.federation.worker import FederationWorker
from registry.mirror.jobs import queue_entry
from registry.mirror.sets import MirrorSet
from registry.mirror.store import apply_set
from registry.pipeline import stages, status
from registry.pipeline.runner import PipelineRunner
from tests.attest_verify.cosign_writer import CosignWriter, LayoutSink
from tests.federation.nodes import NodeKeys, make_keys, node_config, pin
from tests.pipeline.conftest import LABELS, containerfile
from tests.pipeline.test_pipeline import PROVENANCE, SBOM, api, pull_status, push, sign
from tests.rebuild.project import Project
from tests.rebuild.test_rebuild import APP
from tests.support.buildah import Builder
from tests.support.git_http import git_http
from tests.support.pipeline import drain
from tests.support.postgres import fresh_database
from tests.support.served import ZOLL
from tests.support.servers import LiveRegistry, live_registry

# the tests build on each other (one trio, one image): pyproject.toml runs a file on one
# xdist worker, in order
pytestmark = pytest.mark.slow
NAMES = ("zoll-a", "zoll-b", "zoll-c")
VSA = "https://slsa.dev/verification_summary/v1"
SUPPLIER_REQUIREMENTS = {
    "signature": {"signers": ["supplier"]},
    "attestations": [
        {"predicate_type": "https://cyclonedx.org/bom", "signers": ["supplier"]},
        {"predicate_type": "https://slsa.dev/provenance/v1", "signers": ["supplier"]},
    ],
}
FOLLOWS = {
    "zoll-a": [{"peer": "zoll-b", "repositories": ["tools/*"]}],
    "zoll-b": [
        {"peer": "zoll-a", "repositories": ["opendesk/*", "sovereign/*"]},
        {"peer": "zoll-c", "repositories": ["opendesk/*"]},
    ],
    "zoll-c": [
        {"peer": "zoll-a", "repositories": ["opendesk/*", "sovereign/*"]},
        {"peer": "zoll-b", "repositories": ["opendesk/*", "tools/*", "sovereign/*"]},
    ],
}
REBUILDS = {"zoll-a": "require", "zoll-b": "require", "zoll-c": "off"}
"""Who rebuilds sovereign/ images from source: a and b (rebuilderd's model); c only counts."""


def trust_policy(
    keys: dict[str, NodeKeys], supplier: PrivateKey, *, entry: bool = False
) -> dict[str, Any]:
    """Suppliers sign what enters; at the followers (and for a cluster's admission check)
    opendesk images also need A's latest verdict PASSED and a witnessed 2-of-3 quorum of
    the nodes. A, the entry node for opendesk, judges on the supplier's word alone."""
    signers: dict[str, Any] = {"supplier": {"key_pem": supplier.public.pem()}}
    signers.update({name: k.signer_entry() for name, k in keys.items()})
    followed = {
        **SUPPLIER_REQUIREMENTS,
        "attestations": [
            *SUPPLIER_REQUIREMENTS["attestations"],
            {"predicate_type": VSA, "signers": ["zoll-a"], "max_age": "1d"},
        ],
        "quorum": {"k": 2, "nodes": list(NAMES), "says": "passed", "witnesses": 1},
    }
    reproduced = {
        **SUPPLIER_REQUIREMENTS,
        "quorum": {"k": 2, "nodes": list(NAMES), "says": "reproduced", "witnesses": 1},
    }
    return {
        "version": 1,
        "policies": {
            "entry": {"signers": signers, "require": SUPPLIER_REQUIREMENTS},
            "federated": {"signers": signers, "require": followed},
            "reproduced": {"signers": signers, "require": reproduced},
        },
        "repositories": [
            {"match": "tools/*", "policy": "entry"},
            {"match": "opendesk/*", "policy": "entry" if entry else "federated"},
            {"match": "sovereign/*", "policy": "entry" if entry else "reproduced"},
        ],
    }


def vulnerable_containerfile(marker: str) -> str:
    """A hardened image (every criterion met) that lists an Alpine zlib package, so
    vulnerability data published later can make its node fail it."""
    labels = " ".join(f'{k}="{v}"' for k, v in LABELS.items())
    return (
        "FROM scratch\nCOPY rootfs/ /\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /etc /tmp /app /lib/apk/db && chmod 1777 /tmp && "
        "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:10001:10001::/app:/bin/sh\\n' > /etc/passwd"
        " && printf 'ID=alpine\\nVERSION_ID=3.19.1\\n' > /etc/os-release"
        " && printf 'P:zlib\\nV:1.2.11-r0\\nA:x86_64\\no:zlib\\nL:Zlib\\n\\n'"
        " > /lib/apk/db/installed"
        f" && echo '{marker}' > /app/marker\n"
        f'LABEL {labels}\nEXPOSE 8080\nUSER 10001\nCMD ["/app/run"]\n'
    )


@dataclass
class Trio:
    keys: dict[str, NodeKeys]
    supplier: PrivateKey
    policy: Path
    tmp: Path
    builder: Builder
    admin_dsn: str
    nodes: dict[str, LiveRegistry] = field(default_factory=dict)
    configs: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    stacks: dict[str, AsyncExitStack] = field(default_factory=dict)
    digest: str = ""

    async def start(self, name: str) -> LiveRegistry:
        stack = AsyncExitStack()
        node = await stack.enter_async_context(
            live_registry(self.configs[name], port=self.ports.get(name, 0))
        )
        self.ports[name] = int(node.url.rsplit(":", 1)[1])
        self.nodes[name], self.stacks[name] = node, stack
        return node

    async def stop(self, name: str) -> None:
        await self.stacks.pop(name).aclose()
        del self.nodes[name]

    async def drain(self, name: str) -> dict[str, dict[str, int]]:
        return await drain(PipelineRunner(self.nodes[name].services))

    async def witness(self, *names: str) -> None:
        for name in names:
            await FederationWorker(self.nodes[name].services).witness_round()

    async def follow(self, *names: str) -> None:
        for name in names:
            await FederationWorker(self.nodes[name].services).follow_round()

    async def settle(self) -> None:
        """Every node publishes, reads its peers and judges, twice (statements made in
        the first pass reach the others in the second)."""
        for _ in range(2):
            await self.witness(*self.nodes)
            await self.follow(*self.nodes)
            for name in list(self.nodes):
                await self.drain(name)


@pytest.fixture(scope="module")
async def trio(
    pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory, builder: Builder
) -> AsyncIterator[Trio]:
    tmp = tmp_path_factory.mktemp("trio")
    keys = make_keys(*NAMES)
    supplier = PrivateKey.generate()
    policy = tmp / "trust.yaml"
    policy.write_text(yaml.safe_dump(trust_policy(keys, supplier)))
    entry_policy = tmp / "entry.yaml"
    entry_policy.write_text(yaml.safe_dump(trust_policy(keys, supplier, entry=True)))
    trio = Trio(keys, supplier, policy, tmp, builder, pg_admin_dsn)
    for name in NAMES:
        key_file = keys[name].install(tmp / name)
        node_policy = entry_policy if name == "zoll-a" else policy
        trio.configs[name] = node_config(
            await fresh_database(pg_admin_dsn),
            tmp / name,
            name,
            attest={"trust_policy": str(node_policy), "key": {"file": str(key_file)}},
            namespaces=[
                {"prefix": "opendesk/", "admission": "enforce"},
                {"prefix": "tools/", "admission": "enforce"},
                {
                    "prefix": "sovereign/",
                    "admission": "enforce",
                    "fail_on": "critical",
                    "rebuild": REBUILDS[name],
                },
            ],
            federation={"follow": FOLLOWS[name], "witness_timeout": 3},
        )
        await trio.start(name)
    async with aiohttp.ClientSession() as http:
        for name, node in trio.nodes.items():
            await pin(http, node, *(n for other, n in trio.nodes.items() if other != name))
    try:
        yield trio
    finally:
        for name in list(trio.stacks):
            await trio.stop(name)


class _Supplier:
    def __init__(self, key: PrivateKey) -> None:
        self.key = key


async def verify_offline(trio: Trio, host: str, ref: str) -> tuple[int, Any]:
    """`zoll verify image` against `trio`'s policy, as a cluster's admission check would
    run it: the exit code and the JSON document."""
    proc = await asyncio.create_subprocess_exec(
        ZOLL,
        "verify",
        "image",
        f"docker://{host}/{ref}",
        "--policy",
        str(trio.policy),
        "--tls-verify=false",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode in (0, 1), err.decode()
    return proc.returncode or 0, json.loads(out)


async def requirement(http: aiohttp.ClientSession, node: LiveRegistry, ref: str, rid: str) -> Any:
    verification = (await api(http, node, f"/images/{ref}/verification"))["document"]
    return next(r for r in verification["requirements"] if r["id"] == rid)


async def test_b_and_c_follow_a_and_admit_by_a_witnessed_quorum(
    trio: Trio, http: aiohttp.ClientSession
) -> None:
    a, b, c = (trio.nodes[n] for n in NAMES)
    digest = await push(
        a, trio.builder, trio.tmp / "v1", "opendesk/office", vulnerable_containerfile("v1")
    )
    await sign(a, "opendesk/office", digest, _Supplier(trio.supplier))  # type: ignore[arg-type]
    await trio.drain("zoll-a")
    assert (await api(http, a, f"/images/opendesk/office@{digest}/status"))["state"] == "admitted"
    await trio.settle()
    ref = f"opendesk/office@{digest}"
    for node in (b, c):
        state = await api(http, node, f"/images/{ref}/status")
        assert state["state"] == "admitted", state["reasons"]
        assert (await pull_status(http, node, "opendesk/office:1.0.0"))[0] == 200
    # b counted a's witnessed PASSED (and its own verdict, at admission)
    quorum = await requirement(http, b, ref, "quorum")
    assert "zoll-a" in quorum["nodes"]
    trio.digest = str(digest)
    # a cluster checks the same offline, from what is attached to the image at b: a's and
    # b's VSAs, each with a tlog proof cosigned by another node's witness
    code, document = await verify_offline(trio, b.host, ref)
    assert code == 0 and document["passed"], document
    offline = next(r for r in document["requirements"] if r["id"] == "quorum")
    assert {"zoll-a", "zoll-b"} <= set(offline["nodes"])


async def test_a_mirrors_a_and_b_rebuild_and_c_admits_by_two_reproductions(
    trio: Trio, http: aiohttp.ClientSession
) -> None:
    """rebuilderd's repro-threshold for container images: a mirrors a vendor's signed
    image and rebuilds it from the mirror set's recipe; b follows a and rebuilds it too,
    from the vendor's signed SLSA provenance (a replicated image has no mirror set); c
    rebuilds nothing and admits because two of the three nodes reproduced it."""
    a, b, c = (trio.nodes[n] for n in NAMES)
    project = Project(trio.tmp / "sovereign-project", trio.builder)
    commit = project.commit(APP)
    layout = trio.tmp / "sovereign-upstream"
    async with git_http(project.repo) as source:
        digest = project.build_upstream(layout, timestamp=1700000000)
        vendor = CosignWriter(LayoutSink(layout))
        vendor.sign(digest, trio.supplier)
        vendor.attest(digest, trio.supplier, SBOM, {"bomFormat": "CycloneDX"})
        vendor.attest(digest, trio.supplier, PROVENANCE, buildkit_provenance(source, commit))
        mirror_set = MirrorSet.model_validate(
            {
                "version": 1,
                "name": "vendor",
                "mirrors": [
                    {
                        "name": "app",
                        "source": f"oci:{layout}",
                        "target": "sovereign/app",
                        "tags": ["v1"],
                        "rebuild": {"source": {"git": source, "ref": "main"}},
                    }
                ],
            }
        )
        await apply_set(a.registry.pool, mirror_set, "test")
        await queue_entry(a.services, "vendor", "app")
        await drain(PipelineRunner(a.services), timeout=600)
        ref = f"sovereign/app@{digest}"
        assert (await api(http, a, f"/images/{ref}/status"))["state"] == "admitted"
        await trio.settle()
    rebuilt: dict[str, Any] = {}
    for name, node in (("zoll-b", b), ("zoll-c", c)):
        state = await api(http, node, f"/images/{ref}/status")
        why = await requirement(http, node, ref, "quorum")
        assert state["state"] == "admitted", json.dumps([name, state["reasons"], why])
        rebuilt[name] = await node.registry.pool.fetchval(
            "SELECT rebuild FROM image_status WHERE digest = $1", str(digest)
        )
    # b reproduced it from the vendor's provenance; c did not rebuild at all
    result = rebuilt["zoll-b"]["result"]
    assert result["outcome"] == "reproduced", result
    assert result["recipe"]["origins"]["source"] == "provenance"
    assert result["source"]["digest"] == {"gitCommit": commit}
    assert rebuilt["zoll-c"] is None
    # c counted a's and b's signed, witnessed rebuild statements
    quorum = await requirement(http, c, ref, "quorum")
    assert quorum["passed"] and set(quorum["nodes"]) == {"zoll-a", "zoll-b"}, quorum
    # and a cluster pulling from c checks the same offline, from the rebuild statements
    # attached to the image at c (a's and b's, each with its witnessed tlog proof)
    code, document = await verify_offline(trio, c.host, ref)
    assert code == 0 and document["passed"], document
    offline = next(r for r in document["requirements"] if r["id"] == "quorum")
    assert set(offline["nodes"]) == {"zoll-a", "zoll-b"}


def buildkit_provenance(source: str, commit: str) -> dict[str, Any]:
    """What BuildKit records for a build of `source` at `commit` (SLSA v1)."""
    return {
        "buildDefinition": {
            "buildType": "https://mobyproject.org/buildkit@v1",
            "externalParameters": {
                "configSource": {
                    "uri": f"{source}#main",
                    "digest": {"sha1": commit},
                    "path": "Containerfile",
                },
                "request": {"args": {}},
            },
        },
        "runDetails": {"builder": {"id": "https://ci.vendor.example/buildkit"}},
    }


async def test_a_malicious_node_cannot_make_a_quorum_alone(
    trio: Trio, http: aiohttp.ClientSession
) -> None:
    """c signs PASSED for a tampered image (no supplier signature) and logs that it
    admitted it; b replicates it from c, judges it itself, and refuses it."""
    b, c = trio.nodes["zoll-b"], trio.nodes["zoll-c"]
    digest = await push(
        c, trio.builder, trio.tmp / "evil", "opendesk/office", vulnerable_containerfile("evil")
    )
    svc = c.services
    await trio.drain("zoll-c")  # c's own pipeline quarantines it; c's operator overrides:
    await status.update(svc.registry.pool, "opendesk/office", str(digest), state="admitted")
    row = await status.get(svc.registry.pool, "opendesk/office", str(digest))
    await stages._publish_verdict(svc, "opendesk/office", str(digest), row, True)
    await svc.log.append(
        [
            admission_record(
                subject_digest=str(digest),
                repository="opendesk/office",
                decision="admitted",
                reasons=[],
                decided_at=datetime.now(UTC),
                tags=["evil"],
            )
        ]
    )
    await trio.settle()
    state = await api(http, b, f"/images/opendesk/office@{digest}/status")
    assert state["state"] == "quarantined"
    assert any("quorum not met" in r for r in state["reasons"]), state["reasons"]
    async with http.get(f"{b.url}/v2/opendesk/office/manifests/{digest}") as resp:
        assert resp.status == 403  # quarantined: not served from an enforcing namespace
    quorum = await requirement(http, b, f"opendesk/office@{digest}", "quorum")
    assert quorum["nodes"] == ["zoll-c"]  # the only yes, and not enough
    # a cluster pulling it from c (whose operator keeps serving it) checks the quorum
    # itself, and refuses
    await status.update(svc.registry.pool, "opendesk/office", str(digest), state="admitted")
    code, document = await verify_offline(trio, c.host, f"opendesk/office@{digest}")
    assert code == 1 and not document["passed"]


async def test_a_revokes_its_verdict_and_the_followers_quarantine_by_policy(
    trio: Trio, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """New vulnerability data at a: a fails the image it admitted and publishes FAILED;
    b and c see a's latest statement and, by policy (a's verdict must be PASSED),
    quarantine it; the earlier PASSED no longer counts anywhere."""
    a, b, c = (trio.nodes[n] for n in NAMES)
    ref = f"opendesk/office@{trio.digest}"
    osv = tmp_path / "zlib.json"
    osv.write_text(
        json.dumps(
            {
                "schema_version": "1.6.0",
                "id": "ALPINE-CVE-2022-37434",
                "modified": "2024-05-01T10:00:00Z",
                "aliases": ["CVE-2022-37434"],
                "summary": "zlib inflate heap overflow",
                "severity": [
                    {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
                ],
                "affected": [
                    {
                        "package": {"ecosystem": "Alpine:v3.19", "name": "zlib"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": "1.2.12-r2"}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    await import_osv(a.registry.pool, osv)
    assert await PipelineRunner(a.services).reevaluate() >= 1
    await trio.drain("zoll-a")
    state_a = await api(http, a, f"/images/{ref}/status")
    assert state_a["state"] == "quarantined", state_a
    await trio.settle()
    for node in (b, c):
        state = await api(http, node, f"/images/{ref}/status")
        assert state["state"] == "quarantined", state
        vsa = await requirement(http, node, ref, f"attestation:{VSA}")
        assert not vsa["passed"]
        assert "zoll-a's latest: verificationResult is 'FAILED'" in json.dumps(vsa["problems"])
        assert (await pull_status(http, node, "opendesk/office:1.0.0"))[0] == 403
    # b published its own FAILED too: followers of b see the revocation from b as well
    statements = await b.registry.pool.fetch(
        "SELECT verdict FROM federation_statements WHERE peer = 'zoll-a' AND kind = 'vsa' "
        "AND subject = $1 AND verified ORDER BY log_index",
        trio.digest,
    )
    assert [r["verdict"] for r in statements] == ["PASSED", "FAILED"]


async def test_a_goes_down_b_serves_c_follows_b_and_a_catches_up(
    trio: Trio, http: aiohttp.ClientSession
) -> None:
    await trio.stop("zoll-a")
    b, c = trio.nodes["zoll-b"], trio.nodes["zoll-c"]
    # b is an entry node for tools/: it admits an image while a is away
    digest = await push(
        b, trio.builder, trio.tmp / "tools", "tools/cli", containerfile(marker="tools")
    )
    await sign(b, "tools/cli", digest, _Supplier(trio.supplier))  # type: ignore[arg-type]
    await trio.settle()
    at_c = await api(http, c, f"/images/tools/cli@{digest}/status")
    assert at_c["state"] == "admitted", at_c["reasons"]
    peers = {p["name"]: p for p in (await api(http, b, "/peers"))["peers"]}
    assert peers["zoll-a"]["witnessing"]["lastError"]  # a did not cosign: it is down
    assert peers["zoll-c"]["witnessing"]["lastError"] is None
    size_before = peers["zoll-a"]["witnessing"]["cosignedSize"]

    a = await trio.start("zoll-a")  # same port, database and keys
    await trio.settle()
    peers = {p["name"]: p for p in (await api(http, b, "/peers"))["peers"]}
    assert peers["zoll-a"]["witnessing"]["lastError"] is None
    assert peers["zoll-a"]["witnessing"]["cosignedSize"] > size_before  # proven, not reset
    assert (await api(http, a, f"/images/tools/cli@{digest}/status"))["state"] == "admitted"
    follow = {p["name"]: p["follow"] for p in (await api(http, a, "/peers"))["peers"]}
    assert follow["zoll-b"]["lag_entries"] == 0


async def test_a_rewrites_its_log_and_b_and_c_refuse_keep_evidence_and_stop(
    trio: Trio, http: aiohttp.ClientSession
) -> None:
    a, b, c = (trio.nodes[n] for n in NAMES)
    size = await a.services.log.size()
    async with a.registry.pool.acquire() as conn, conn.transaction():
        for table in ("tlog_cosignatures", "tlog_checkpoints", "tlog_nodes", "tlog_tiles"):
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute(
            "UPDATE attestations SET status = 'signed', log_id = NULL, log_index = NULL"
        )
        await conn.execute("DELETE FROM tlog_leaves")
        await conn.execute("UPDATE tlog_logs SET size = 0, root = sha256(''::bytea)")
    await a.services.log.repair()  # re-logs what was signed, in another order: another tree
    extra = [
        admission_record(
            subject_digest=trio.digest,
            repository="opendesk/office",
            decision="admitted",
            reasons=[],
            decided_at=datetime.now(UTC),
        )
    ]
    while await a.services.log.size() <= size:
        await a.services.log.append(extra)
    await trio.witness("zoll-a")
    await trio.follow("zoll-b", "zoll-c")
    for node in (b, c):
        async with http.get(f"{node.url}/api/v1/federation/forks") as resp:
            forks = [f for f in (await resp.json())["forks"] if f["peer"] == "zoll-a"]
        assert forks, "the evidence is kept"
        follow = {p["name"]: p["follow"] for p in (await api(http, node, "/peers"))["peers"]}
        assert follow["zoll-a"]["state"] == "forked"
        async with http.get(f"{node.url}/metrics") as resp:
            assert 'zoll_federation_forks_total{peer="zoll-a"}' in await resp.text()
    # a's checkpoint carries no cosignature from b or c any more
    async with http.get(f"{a.url}/api/v1/log/checkpoint") as resp:
        assert (await resp.text()).count("\u2014") == 1

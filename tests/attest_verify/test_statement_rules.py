"""What statements say, and which count: only each signer's latest statement, content
tests and age, and k-of-n quorums of nodes — for VSAs (`passed`) and for rebuild results
(`reproduced`). The verification around it (signatures, proofs) has its own tests; here
the verified statements are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from attest.evidence import Checked
from attest.intoto import Statement, Subject
from attest.keys import PrivateKey
from attest.results import Evidence, Reason, Signer
from attest.statement_rules import Found, attestation_requirement, quorum_requirement
from attest.trust_policy import TrustPolicy

VSA = "https://slsa.dev/verification_summary/v1"
REBUILD = "https://zoll.dev/attestations/rebuild/v1"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NODES = ("zoll-a", "zoll-b", "zoll-c")


def policy(require: dict[str, Any]) -> TrustPolicy:
    signers = {n: {"key_pem": PrivateKey.generate().public.pem()} for n in NODES}
    return TrustPolicy.from_yaml(yaml.safe_dump({"signers": signers, "require": require}))


def said(node: str, predicate_type: str, predicate: dict[str, Any], n: int) -> Found:
    statement = Statement(
        "https://in-toto.io/Statement/v1",
        (Subject("opendesk/app", {"sha256": "ab" * 32}),),
        predicate_type,
        predicate,
    )
    evidence = Evidence(
        f"referrers:{node}/{n}",
        "attestation",
        "sigstore-bundle-v0.3",
        True,
        signer=Signer(kind="key", keyid=node, matched=(node,)),
        predicate_type=predicate_type,
    )
    return Found(Checked(evidence, statement), {}, b"")


def vsa(node: str, result: str, hours_ago: float, n: int = 0) -> Found:
    when = (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return said(node, VSA, {"verificationResult": result, "timeVerified": when}, n)


def rebuild(node: str, outcome: str, hours_ago: float, n: int = 0) -> Found:
    when = (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return said(node, REBUILD, {"outcome": outcome, "timeFinished": when}, n)


def test_a_later_failed_revokes_an_earlier_passed_whatever_the_order_attached() -> None:
    p = policy({"attestations": [{"predicate_type": VSA, "signers": ["zoll-a"]}]})
    [req] = p.attestations
    assert req.where == {"verificationResult": "PASSED"}  # the default of a VSA requirement
    passed = attestation_requirement(p, req, [vsa("zoll-a", "PASSED", 5)], NOW)
    assert passed.passed
    for found in ([vsa("zoll-a", "PASSED", 5), vsa("zoll-a", "FAILED", 1, 1)],
                  [vsa("zoll-a", "FAILED", 1, 1), vsa("zoll-a", "PASSED", 5)]):  # fmt: skip
        result = attestation_requirement(p, req, found, NOW)
        assert not result.passed
        assert result.problems[0].reason is Reason.CONTENT_MISMATCH
        assert "zoll-a's latest: verificationResult is 'FAILED'" in result.problems[0].message


def test_max_age_refuses_a_stale_verdict() -> None:
    p = policy({"attestations": [{"predicate_type": VSA, "signers": ["zoll-a"], "max_age": "1d"}]})
    [req] = p.attestations
    assert attestation_requirement(p, req, [vsa("zoll-a", "PASSED", 20)], NOW).passed
    old = attestation_requirement(p, req, [vsa("zoll-a", "PASSED", 30)], NOW)
    assert not old.passed and old.problems[0].reason is Reason.STATEMENT_TOO_OLD


def test_a_quorum_counts_each_nodes_latest_word() -> None:
    p = policy({"quorum": {"k": 2, "nodes": list(NODES), "says": "passed"}})
    assert p.quorum is not None
    met = quorum_requirement(
        p, p.quorum, [vsa("zoll-a", "PASSED", 2), vsa("zoll-c", "PASSED", 1)], NOW
    )
    assert met.passed and set(met.nodes) == {"zoll-a", "zoll-c"}
    # c changed its mind later: one node alone is no quorum
    revoked = quorum_requirement(
        p,
        p.quorum,
        [vsa("zoll-a", "PASSED", 2), vsa("zoll-c", "PASSED", 3), vsa("zoll-c", "FAILED", 1, 1)],
        NOW,
    )
    assert not revoked.passed and revoked.nodes == ("zoll-a",)
    assert revoked.problems[-1].reason is Reason.QUORUM_NOT_MET


def test_a_reproduced_quorum_counts_rebuilders_that_reproduced_it() -> None:
    p = policy({"quorum": {"k": 2, "nodes": list(NODES), "says": "reproduced"}})
    assert p.quorum is not None
    two = quorum_requirement(
        p,
        p.quorum,
        [
            rebuild("zoll-a", "reproduced", 2),
            rebuild("zoll-b", "reproduced", 1),
            rebuild("zoll-c", "differs", 1),
            vsa("zoll-c", "PASSED", 1, 1),
        ],
        NOW,
    )
    assert two.passed and set(two.nodes) == {"zoll-a", "zoll-b"}
    one = quorum_requirement(
        p,
        p.quorum,
        [
            rebuild("zoll-a", "reproduced", 2),
            rebuild("zoll-b", "differs", 1),
            vsa("zoll-b", "PASSED", 1, 1),
            vsa("zoll-c", "PASSED", 1, 2),
        ],
        NOW,
    )
    assert not one.passed and one.nodes == ("zoll-a",)  # a PASSED VSA is not a reproduction

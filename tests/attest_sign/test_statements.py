"""Statement builders: valid in-toto v1, predicates that match their published schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from attest import statements as st
from attest.keys import PrivateKey
from attest.signing import (
    IN_TOTO_PAYLOAD_TYPE,
    StatementError,
    envelope_statement,
    sign_statement,
)
from registry.oci.digest import Digest
from tests.support.paths import REPO

DIGEST = Digest.of(b"an image manifest")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NODE = st.Verifier("https://zoll.example/node/1", {"zoll": "0.1.0"})


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "docs" / "schemas" / name).read_text())
    return loaded


def test_vsa_is_a_slsa_v1_summary_bound_to_the_digest() -> None:
    statement = st.vsa(
        image="registry.zoll.example/app",
        digest=DIGEST,
        verifier=NODE,
        time_verified=NOW,
        policy=st.ResourceRef("https://zoll.example/policy", {"sha256": "ab" * 32}),
        result="PASSED",
        verified_levels=["SLSA_BUILD_LEVEL_3"],
        input_attestations=[st.ResourceRef("oci://up/app@sha256:" + "cd" * 32)],
        dependency_levels={"SLSA_BUILD_LEVEL_3": 2},
    )
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert statement["subject"] == [
        {"name": "registry.zoll.example/app", "digest": {"sha256": DIGEST.encoded}}
    ]
    predicate = statement["predicate"]
    assert predicate["timeVerified"] == "2025-03-01T12:00:00Z"
    assert predicate["resourceUri"] == f"oci://registry.zoll.example/app@{DIGEST}"
    assert predicate["verifiedLevels"] == ["SLSA_BUILD_LEVEL_3"]
    assert predicate["dependencyLevels"] == {"SLSA_BUILD_LEVEL_3": 2}


def test_vsa_refuses_contradictions() -> None:
    common: dict[str, Any] = {
        "image": "r/app",
        "digest": DIGEST,
        "verifier": NODE,
        "time_verified": NOW,
        "policy": st.ResourceRef("p"),
    }
    with pytest.raises(StatementError, match="cannot claim"):
        st.vsa(**common, result="FAILED", verified_levels=["SLSA_BUILD_LEVEL_2"])
    with pytest.raises(StatementError, match="unknown SLSA levels"):
        st.vsa(**common, result="PASSED", verified_levels=["SLSA_LEVEL_9000"])
    with pytest.raises(StatementError, match="timezone"):
        st.vsa(
            **{**common, "time_verified": datetime(2025, 1, 1)}, result="PASSED", verified_levels=[]
        )


def test_hardening_verdict_is_computed_and_matches_the_schema() -> None:
    def build(*outcomes: st.CriterionOutcome, required: list[str] | None = None) -> dict[str, Any]:
        return st.hardening_result(
            image="r/app",
            digest=DIGEST,
            evaluator=NODE,
            time_evaluated=NOW,
            catalog=st.ResourceRef("https://zoll.example/criteria", {"sha256": "ef" * 32}),
            catalog_version="2025.1",
            criteria=list(outcomes),
            required=required,
        )

    passing = build(
        st.CriterionOutcome("HC-18", "passed", "Runs as non-root", "high", sources=["CIS-4.1"]),
        st.CriterionOutcome("HC-25", "not_applicable"),
        st.CriterionOutcome("HC-12", "waived", message="VEX not_affected", evidence={"cves": 1}),
    )
    failing = build(
        st.CriterionOutcome("HC-18", "failed", message="config.User is empty"),
        st.CriterionOutcome("HC-25", "passed"),
    )
    lenient = build(
        st.CriterionOutcome("HC-18", "passed"),
        st.CriterionOutcome("HC-28", "failed"),
        required=["HC-18"],
    )
    assert [s["predicate"]["result"] for s in (passing, failing, lenient)] == [
        "PASSED",
        "FAILED",
        "PASSED",
    ]
    assert passing["predicate"]["summary"] == {
        "passed": 1,
        "failed": 0,
        "notApplicable": 1,
        "waived": 1,
        "error": 0,
    }
    validator = jsonschema.Draft202012Validator(schema("hardening-result-v1.schema.json"))
    for statement in (passing, failing, lenient):
        assert statement["predicateType"] == st.HARDENING_V1
        validator.validate(statement["predicate"])
    with pytest.raises(StatementError, match="without a result"):
        build(st.CriterionOutcome("HC-18", "passed"), required=["HC-01"])
    with pytest.raises(StatementError, match="unique"):
        build(st.CriterionOutcome("HC-18", "passed"), st.CriterionOutcome("HC-18", "failed"))
    broken = dict(passing["predicate"], result="MAYBE")
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_rebuild_outcome_follows_from_the_digests_and_matches_the_schema() -> None:
    def build(rebuilt: Digest | None, error: str | None = None) -> dict[str, Any]:
        return st.rebuild_result(
            image="r/app",
            digest=DIGEST,
            rebuilder=NODE,
            started=NOW,
            finished=NOW + timedelta(minutes=4),
            source=st.ResourceRef("git+https://code.example/app@v1", {"gitCommit": "a1" * 20}),
            build_type="https://zoll.dev/rebuild/buildah/v1",
            rebuilt_digest=rebuilt,
            layers=[st.LayerComparison(0, DIGEST, rebuilt, rebuilt == DIGEST)],
            error=error,
        )

    validator = jsonschema.Draft202012Validator(schema("rebuild-result-v1.schema.json"))
    same, other, failed = (
        build(DIGEST),
        build(Digest.of(b"different")),
        build(None, "buildah exited with 125"),
    )
    assert [s["predicate"]["outcome"] for s in (same, other, failed)] == [
        "reproduced",
        "differs",
        "failed",
    ]
    for statement in (same, other, failed):
        validator.validate(statement["predicate"])
    with pytest.raises(StatementError, match="error message"):
        build(None)
    no_error = dict(failed["predicate"])
    del no_error["error"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(no_error)


def test_signed_statement_round_trips_and_bad_statements_are_refused() -> None:
    key = PrivateKey.generate()
    statement = st.vsa(
        image="r/app",
        digest=DIGEST,
        verifier=NODE,
        time_verified=NOW,
        policy=st.ResourceRef("p"),
        result="PASSED",
        verified_levels=[],
    )
    envelope = sign_statement(statement, key)
    assert envelope.payload_type == IN_TOTO_PAYLOAD_TYPE
    assert envelope.verified_keyids([key.public]) == [key.public.keyid]
    assert envelope_statement(envelope) == statement
    for bad, reason in (
        ({**statement, "_type": "https://in-toto.io/Statement/v0.1"}, "_type"),
        ({**statement, "subject": []}, "subject"),
        ({**statement, "subject": [{"name": "x", "digest": {}}]}, "digest"),
        ({**statement, "predicateType": ""}, "predicateType"),
        ({**statement, "predicate": {"n": 2**64}}, "canonicalised"),
    ):
        with pytest.raises(StatementError, match=reason):
            sign_statement(bad, key)

"""Malformed statements and predicates end in a reason, never in an exception: the parsers
are fuzzed with hypothesis (any JSON, and real provenance with any part replaced), and a
malformed provenance beside a good one leaves the good one counted."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.cosign import check_simple_signing
from attest.intoto import Statement
from attest.keys import PrivateKey
from attest.results import Reason, VerificationFailure
from attest.slsa import (
    PROVENANCE_V02,
    PROVENANCE_V1,
    SlsaPolicy,
    SourceExpectation,
    TrustedBuilder,
    evaluate,
    parse_provenance,
)
from attest.trust_policy import TrustPolicy
from attest.trustroot import TrustMaterial
from attest.verify import verify_image
from registry.oci.digest import Digest
from tests.attest_verify.conftest import SignedImage
from tests.attest_verify.test_statements_slsa import (
    COMMIT,
    GITLAB_BUILDER,
    statement_v01,
)
from tests.attest_verify.test_statements_slsa import (
    PROVENANCE_V02 as GOOD_V02,
)

IMAGE = Digest.of(b"image manifest")
GOOD_V1: dict[str, Any] = {
    "buildDefinition": {
        "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
        "externalParameters": {
            "workflow": {
                "ref": "refs/tags/v1.0.0",
                "repository": "https://github.com/example/app",
                "path": ".github/workflows/release.yml",
            }
        },
        "resolvedDependencies": [
            {
                "uri": "git+https://github.com/example/app@refs/tags/v1.0.0",
                "digest": {"gitCommit": COMMIT},
            }
        ],
    },
    "runDetails": {"builder": {"id": "https://github.com/actions/runner"}, "metadata": {}},
}
POLICY = SlsaPolicy(
    1,
    (TrustedBuilder("https://*", 1),),
    SourceExpectation("github.com/example/app", "refs/tags/*", COMMIT),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _replaced(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _judge(predicate_type: str, predicate: Any) -> None:
    """Parse and evaluate like the verifier does; only VerificationFailure may escape."""
    try:
        statement = Statement.parse(statement_v01(predicate_type, predicate))
        evaluate(parse_provenance(statement), POLICY)
    except VerificationFailure as exc:
        assert isinstance(exc.reason, Reason) and exc.message


def test_the_reported_case_a_v02_invocation_that_is_not_an_object() -> None:
    for invocation in ("refs/heads/main", ["x"], 7, None):
        broken = {**GOOD_V02, "invocation": invocation}
        _judge(PROVENANCE_V02, broken)
    broken = {**GOOD_V02, "invocation": {"configSource": "git+https://example.org/x"}}
    _judge(PROVENANCE_V02, broken)


PARTS_V02 = _paths(GOOD_V02)
PARTS_V1 = _paths(GOOD_V1)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARTS_V02), json_values)
def test_v02_provenance_with_any_part_replaced(path: tuple[Any, ...], value: Any) -> None:
    _judge(PROVENANCE_V02, _replaced(GOOD_V02, path, value))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PARTS_V1), json_values)
def test_v1_provenance_with_any_part_replaced(path: tuple[Any, ...], value: Any) -> None:
    _judge(PROVENANCE_V1, _replaced(GOOD_V1, path, value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([PROVENANCE_V02, PROVENANCE_V1]), json_values)
def test_any_json_as_a_predicate(predicate_type: str, predicate: Any) -> None:
    _judge(predicate_type, predicate)


STATEMENT = json.loads(statement_v01(PROVENANCE_V1, GOOD_V1))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_paths(STATEMENT)), json_values)
def test_statements_with_any_part_replaced(path: tuple[Any, ...], value: Any) -> None:
    with contextlib.suppress(VerificationFailure):
        statement = Statement.parse(json.dumps(_replaced(STATEMENT, path, value)).encode())
        statement.require_subject(IMAGE)
        evaluate(parse_provenance(statement), POLICY)


SIMPLE = {
    "critical": {
        "identity": {"docker-reference": "registry.example/app"},
        "image": {"docker-manifest-digest": str(IMAGE)},
        "type": "cosign container image signature",
    },
    "optional": None,
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_paths(SIMPLE)), json_values)
def test_simple_signing_payloads_with_any_part_replaced(path: tuple[Any, ...], value: Any) -> None:
    with contextlib.suppress(VerificationFailure):
        check_simple_signing(json.dumps(_replaced(SIMPLE, path, value)).encode(), IMAGE)


async def test_a_malformed_provenance_is_a_reason_and_the_good_one_still_counts(
    image: SignedImage,
    keys: dict[str, PrivateKey],
    key_files: dict[str, Path],
    public_good: TrustMaterial,
) -> None:
    key = keys["ed25519"]
    policy = TrustPolicy.from_yaml(
        f"""
signers: {{ci: {{key: {key_files["ed25519"]}}}}}
require:
  slsa:
    builders: [{{id: '{GITLAB_BUILDER}', level: 2}}]
    source: {{repository: gitlab.opencode.de/bmi/opendesk/nextcloud}}
"""
    )
    broken = {**GOOD_V02, "invocation": "refs/heads/main", "materials": "none"}
    for predicate in (broken, GOOD_V02):
        body = statement_v01(PROVENANCE_V02, predicate, subject=image.digest)
        image.writer.attest(image.digest, key, PROVENANCE_V02, {}, statement_bytes=body)
        result = await verify_image(image.reader(), image.digest, policy, public_good)
        slsa = result.requirement("slsa")
        if predicate is broken:  # a reason, not a traceback
            assert not result.passed
            assert [p.reason for p in slsa.problems] == [Reason.SOURCE_MISMATCH]
        else:  # the good one beside it still counts
            assert result.passed, result.to_json()
            assert len(slsa.satisfied_by) == 1

"""Rebuild results as JSON and as Zoll's rebuild predicate, checked against its schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from attest.rebuild import FailureReason, RebuildResult, compare_images
from attest.rebuild.recipe import GitSource, RecipeSpec, combine
from attest.signing import StatementError
from attest.statements import Verifier
from registry.oci.digest import Digest
from registry.oci.reader import OCILayoutReader
from tests.rebuild.layouts import Entry, tar_of, write_image
from tests.support.paths import REPO

NODE = Verifier("https://zoll.example/node/1", {"zoll": "0.1.0"})
T0 = datetime(2025, 1, 1, tzinfo=UTC)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RECIPE = combine(
    [RecipeSpec(origin="explicit", source=GitSource("https://git.example/app.git", "v1", COMMIT))]
)


def predicate_of(result: RebuildResult) -> dict[str, Any]:
    statement = result.statement(image="example/app", rebuilder=NODE, max_lines=3)
    schema = json.loads((REPO / "docs/schemas/rebuild-result-v1.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(statement["predicate"])
    assert statement["subject"][0]["name"] == "example/app"
    predicate: dict[str, Any] = statement["predicate"]
    return predicate


def result(**kwargs: Any) -> RebuildResult:
    base: dict[str, Any] = {
        "outcome": "failed",
        "upstream": Digest.parse("sha256:" + "a" * 64),
        "started": T0,
        "finished": T0 + timedelta(seconds=42),
        "builder": "buildah",
        "build_type": "https://zoll.dev/rebuild/buildah/v1",
        "builder_version": "1.28.2",
        "recipe": RECIPE,
        "source_uri": RECIPE.source.uri(),
        "source_digest": {"gitCommit": COMMIT},
    }
    return RebuildResult(**{**base, **kwargs})


async def test_a_differing_rebuild_attests_layers_config_and_the_cap(tmp_path: Path) -> None:
    original = [Entry(f"f{i}", b"a") for i in range(10)]
    rebuilt = [Entry(f"f{i}", b"b") for i in range(10)]
    a = write_image(tmp_path / "a", [tar_of(original)])
    b = write_image(tmp_path / "b", [tar_of(rebuilt)], config={"created": "2025-01-01T00:00:00Z"})
    diff = await compare_images(
        OCILayoutReader(tmp_path / "a"), a, OCILayoutReader(tmp_path / "b"), b
    )
    predicate = predicate_of(result(outcome="differs", upstream=a, rebuilt=b, diff=diff))
    assert predicate["outcome"] == "differs"
    assert predicate["original"] == {"digest": {"sha256": a.encoded}}
    assert predicate["rebuilt"] == {"digest": {"sha256": b.encoded}}
    assert predicate["source"] == {
        "uri": "git+https://git.example/app.git@v1",
        "digest": {"gitCommit": COMMIT},
    }
    assert predicate["rebuilder"]["version"] == {"zoll": "0.1.0", "buildah": "1.28.2"}
    assert predicate["layers"][0]["differences"] == [
        "modified /f0 (content)",
        "modified /f1 (content)",
        "modified /f2 (content)",
        "… 7 more differing paths not listed",
    ]
    assert predicate["config"]["differences"] == [
        "created: 1970-01-01T00:00:00Z → 2025-01-01T00:00:00Z"
    ]
    assert predicate["externalParameters"]["recipe"]["source"]["commit"] == COMMIT
    assert "error" not in predicate


def test_a_failed_rebuild_attests_its_reason() -> None:
    failed = result(reason=FailureReason.TIMEOUT, message="buildah bud exceeded the 60 s limit")
    predicate = predicate_of(failed)
    assert predicate["outcome"] == "failed"
    assert predicate["error"] == "timeout: buildah bud exceeded the 60 s limit"
    assert "rebuilt" not in predicate
    document = failed.to_json()
    assert document["reason"] == "timeout" and document["outcome"] == "failed"
    assert json.loads(json.dumps(document)) == document


def test_nothing_is_attested_about_an_image_that_could_not_be_read() -> None:
    unreadable = result(upstream=None, recipe=None, reason=FailureReason.UPSTREAM_UNREADABLE)
    with pytest.raises(StatementError, match="cannot be attested"):
        unreadable.statement(image="example/app", rebuilder=NODE)
